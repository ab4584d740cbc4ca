"""
Managers worth following: direction goals, end-to-end instructions, influence
============================================================================

A manager is only useful if its subordinates act on what it says. Trained with the team reward alone, motors learn
to ignore their manager: nothing rewards them for following and no gradient reaches the manager through them (its
*influence*, how much its subordinates' actions move when its own action changes, stays at 0.02-0.04 in our
benchmarks). This tutorial builds the two remedies torchrl-rn ships, neither of which uses task knowledge, from
plain TorchRL pieces:

1. **Direction goals** (``vertex_reward="direction:4"``, FuN's intrinsic reward): the manager's block for a motor is
   a direction in a fixed random projection ``z = P o`` of that motor's observation, and the motor is rewarded for
   moving ``z`` that way over the manager's decision window; checked by hand on a rollout.
2. **End-to-end instructions** (vertex attribute ``learn="gradient"``): the manager's instruction is the tanh of its
   actor's mean, and the motors' PPO losses train it by back-propagation through the instruction they read; checked
   on the gradients.
3. **Influence**, measured on each: what ``rn show`` reports and every benchmark run stores beside its score.

Whether either beats MAPPO and IPPO is the question of the declared experiments E1 and E2
(``benchmarks/experiments/``), whose verdicts ``docs/results.md`` gives; one seed here proves nothing.

Run it with ``python tutorials/06_managers_worth_following.py`` (two runs of 60k frames on VMAS simple_spread:
about 5 minutes on 2 CPU cores), or with ``RN_TUTORIAL_QUICK=1`` for a smoke run on the mock task. Figures go to
``RN_TUTORIAL_OUT`` (default ``tutorials/out``).
"""
# %%
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.nn import functional as F
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn import DirectionReward, GraphComposer, LevelEnv, RNGraph, RNLoss
from torchrl_rn.envs import MockMultiAgentEnv, make_env
from torchrl_rn.modules.influence import group_influence
from torchrl_rn.train import RNTrainer, TrainConfig

QUICK = os.environ.get("RN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("RN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)


def wrap(graph: RNGraph) -> TransformedEnv:
    base = (MockMultiAgentEnv(4, num_envs=2, obs_dim=6, max_steps=20, seed=0) if QUICK
            else make_env("vmas/simple_spread", num_envs=2, n_agents=4, max_steps=100, seed=0))
    # make_env's VMAS env is already a TransformedEnv (its time limit): append to it rather than nesting a second one
    return base.append_transform(LevelEnv(graph)) if isinstance(base, TransformedEnv) else TransformedEnv(
        base, LevelEnv(graph))


# %%
# 1. Direction goals
# ------------------
# One manager over 4 motors, deciding every 5 steps, each motor reading its own 4-entry block (``addressed``).
# ``LevelEnv`` writes each motor's reward as ``("next", "agents", "vertex_reward")`` and carries the projected
# observation at the manager's last decision, the window's origin ``z_0``, as a state entry ``goal_origin``.
PERIOD, DIRECTION = 5, DirectionReward(dim=4)
graph = RNGraph.tree(4, [4], periods=[1, PERIOD], vertex_reward=DIRECTION, vertex_attrs={"instruct": "addressed"})
env = wrap(graph)
composer = GraphComposer(graph, env, num_cells=32)
with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):  # as a collector does
    data = env.rollout(PERIOD, composer.policy)  # one window

# By hand: r_t = cos(z_{t+1} - z_0, g) - cos(z_t - z_0, g), so a window's rewards sum to cos(z_end - z_0, g).
P = DIRECTION.projection(data["agents", "observation"].shape[-1])  # fixed by its seed, names no entry
z, z_next = data["agents", "observation"] @ P.T, data["next", "agents", "observation"] @ P.T
z_end = z_next[:, -1]
g = data["agents", "instruction"][:, 0]  # addressed: each motor's instruction is its own block, its direction
whole = F.cosine_similarity(z_end - z[:, 0], g, dim=-1)
torch.testing.assert_close(data["next", "agents", "vertex_reward"].sum(1)[..., 0], whole)
print("direction reward of motor 0 over one window:", data["next", "agents", "vertex_reward"][0, :, 0, 0])

# %%
# 2. End-to-end instructions
# --------------------------
# ``learn="gradient"``: the manager samples nothing and has no loss of its own. ``RNLoss`` recomputes its
# instruction with gradients (``composer.end_to_end``) before the motors' losses read it.
e2e_graph = RNGraph.tree(4, [4], defaults={"learn": "gradient", "instruct": "addressed"})
e2e_env = wrap(e2e_graph)
e2e = GraphComposer(e2e_graph, e2e_env, num_cells=32)
loss = RNLoss(e2e, gamma=0.99, lmbda=0.95)
with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
    batch = e2e_env.rollout(8, e2e.policy)
out = loss(batch)
print("groups with a loss of their own:", list(loss.group_losses), "| trained by gradient:", loss.gradient_groups)
out["loss"].backward()
manager = e2e.vertex_groups["level1"]
reached = sum(float(p.grad.abs().sum()) for p in manager.actor.parameters() if p.grad is not None)
print(f"gradient reaching the manager's actor through the motors: {reached:.4f}")
assert reached > 0 and all(p.grad is None for p in manager.value_head.parameters())

# %%
# 3. Influence, before and after a little training
# ------------------------------------------------
# ``group_influence`` replaces a manager's action by another sample of its policy and measures how far its
# subordinates' deterministic actions move. The trainer logs it at every evaluation (``level1/influence``).
base_cfg = TrainConfig(task="vmas/simple_spread", n_agents=4, frames=60_000, eval_every=5, normalize_advantage=True,
                       value_norm=True, entropy_coeff=0.01, seed=0, logger="", graph="tree:4", instruct="addressed")
if QUICK:
    base_cfg = dataclasses.replace(base_cfg, task="mock", frames=300, frames_per_batch=100, max_steps=10,
                                   minibatch_size=50, epochs=1, num_cells=16, eval_every=1, eval_envs=4)
methods = {
    "direction goals": dict(periods=f"1,{PERIOD}", vertex_reward="direction:4", goal_warmup=base_cfg.frames // 5),
    "end-to-end instructions": dict(learn="gradient"),
}
with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
    states = env.rollout(10, composer.policy).exclude("next").reshape(-1)
    print("influence of an untrained direction manager:", group_influence(composer, states))
curves = {}
for label, fields in methods.items():
    config = dataclasses.replace(base_cfg, **fields, out=str(OUT / "06_runs" / label.replace(" ", "-")))
    history = RNTrainer(config, progress=False, force=True).train()  # force: a rerun replaces the tutorial's runs
    curves[label] = [(r["frames"], r["eval_return"], r.get("level1/influence")) for r in history
                     if "eval_return" in r]
    print(f"{label:25s} final eval return {curves[label][-1][1]:9.2f}, influence {curves[label][-1][2]:.3f}")

(OUT / "06_following.json").write_text(json.dumps(
    {"task": base_cfg.task, "frames": base_cfg.frames, "seed": base_cfg.seed,
     "curves": {k: [{"frames": f, "eval_return": v, "influence": i} for f, v, i in pts] for k, pts in curves.items()}},
    indent=1))
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for label, points in curves.items():
    frames, returns, influence = zip(*points)
    left.plot(frames, returns, "o-", label=label)
    right.plot(frames, influence, "o-", label=label)
left.set(xlabel="frames", ylabel="deterministic eval return", title=f"{base_cfg.task}: one seed")
right.set(xlabel="frames", ylabel="manager influence", title="how much the motors follow")
left.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_following.png", dpi=100)
