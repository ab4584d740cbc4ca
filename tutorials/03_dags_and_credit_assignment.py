"""
DAGs, learned messages and credit assignment
============================================

Three things a tree cannot show:

1. **a shared subordinate**: a motor with two superiors reads both instructions, concatenated in the order of its
   superiors (``I+``), and gives each superior half its reward (``share="split"``);
2. **learned messages**: with ``phi="learned"`` a vertex encodes what it sends up; trained end to end, a superior's
   loss reaches its subordinates' encoders, and ``detach_messages=True`` (TAG's decentralised training) stops it;
3. **credit assignment**: :class:`~torchrl_rn.GraphGAE` mixes each vertex's advantage with its neighbours'
   (``beta``); we sweep ``beta`` on a small task.

``RN_TUTORIAL_QUICK=1`` runs it in seconds; outputs go to ``RN_TUTORIAL_OUT`` (default ``tutorials/out``).
"""
# %%
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import torch
from torchrl.envs import TransformedEnv

from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss, RNTrainer, TrainConfig
from torchrl_rn.envs import MockMultiAgentEnv

QUICK = os.environ.get("RN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("RN_TUTORIAL_OUT", "tutorials/out"))


@dataclass
class Config:
    task: str = "vmas/balance"
    betas: tuple[float, ...] = (0.0, 0.25, 0.5)
    frames: int = 60_000
    frames_per_batch: int = 6_000
    max_steps: int = 100
    epochs: int = 10
    minibatch_size: int = 400
    num_cells: int = 256
    eval_every: int = 2
    seed: int = 0


cfg = Config()
if QUICK:
    cfg = Config(task="mock", betas=(0.0, 0.5), frames=400, frames_per_batch=200, max_steps=5, epochs=1,
                 minibatch_size=100, num_cells=16, eval_every=1)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(cfg.seed)

# %%
# 1. A shared subordinate
# -----------------------
# ``m1`` has two superiors, ``a`` then ``b``: its instruction is ``[action of a, action of b]``. ``m0`` has only
# ``a``; it shares ``m1``'s group (one batched call), so its instruction is zero-padded to the same width.
g = nx.DiGraph()
g.add_edges_from([("a", "m0"), ("a", "m1"), ("b", "m1"), ("b", "m2")])
graph = RNGraph(g, n_agents=3)
env = TransformedEnv(MockMultiAgentEnv(3, num_envs=2, seed=0), LevelEnv(graph))
composer = GraphComposer(graph, env, num_cells=16)
td = composer.policy(env.reset())
a, b = td["level1", "action"][:, 0], td["level1", "action"][:, 1]
assert torch.equal(td["agents", "instruction"][:, 1], torch.cat([a, b], -1))
assert torch.equal(td["agents", "instruction"][:, 0], torch.cat([a, torch.zeros_like(a)], -1))
print("m1 reads", graph.superiors("m1"), "-> instruction of size", td["agents", "instruction"].shape[-1])

# In the mock env agent k earns k + 1 when it plays its target. a's reward: m0's 1 + half of m1's 2 = 2;
# b's: half of m1's 2 + m2's 3 = 4.
td["agents", "action"] = td["agents", "observation"][..., :2]
rewards = env.step(td)["next", "level1", "reward"][0, :, 0]
print("managers' rewards (split):", rewards.tolist())

# %%
# 2. Learned messages, end to end or detached
# -------------------------------------------
# On a 3-level tree with ``phi="learned"``, only level 2's loss is kept: any gradient on the level-1 and motor
# encoders then comes through the messages they sent up.
def encoder_gradients(detach: bool) -> dict[str, float]:
    graph = RNGraph.tree(4, [2, 2], defaults={"phi": "learned", "message_dim": 8})
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=4, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=32, detach_messages=detach)
    loss = RNLoss(composer, group_coeffs={"agents": 0.0, "level1": 0.0, "level2": 1.0})
    with torch.no_grad():
        data = env.rollout(5, composer.policy)
        loss.value_estimator(data)
    loss(data)["loss"].backward()
    norms = {}
    for group in ("agents", "level1"):
        grads = [p.grad for p in composer.vertex_groups[group].encoder.parameters() if p.grad is not None]
        norms[group] = float(sum(gr.norm() ** 2 for gr in grads) ** 0.5) if grads else 0.0
    return norms


end_to_end, detached = encoder_gradients(False), encoder_gradients(True)
print("encoder gradient norms from level 2's loss, end to end:", end_to_end)
print("                                     detach_messages=True:", detached)
assert all(v > 0 for v in end_to_end.values()) and all(v == 0 for v in detached.values())

# %%
# 3. A sweep of beta
# ------------------
# ``beta = 0`` is plain per-vertex GAE; larger values credit each vertex with part of its superiors' and
# subordinates' advantages. The ready-made :class:`~torchrl_rn.RNTrainer` runs TorchRL's PPO recipe for each.
sweep = {}
for beta in cfg.betas:
    config = TrainConfig(task=cfg.task, graph="tree:2", beta=beta, frames=cfg.frames,
                         frames_per_batch=cfg.frames_per_batch, max_steps=cfg.max_steps, epochs=cfg.epochs,
                         minibatch_size=cfg.minibatch_size, num_cells=cfg.num_cells, eval_every=cfg.eval_every,
                         seed=cfg.seed, logger="", out=str(OUT / "03_runs" / f"beta{beta}"))
    history = RNTrainer(config, progress=False, force=True).train()  # force: rerunning replaces these runs
    sweep[beta] = [(r["frames"], r["eval_return"]) for r in history if "eval_return" in r]
    print(f"beta={beta}: final eval return {sweep[beta][-1][1]:.2f}")

(OUT / "03_beta_sweep.json").write_text(json.dumps(
    {"task": cfg.task, "frames": cfg.frames, "seed": cfg.seed,
     "curves": {str(beta): [{"frames": f, "eval_return": v} for f, v in points] for beta, points in sweep.items()}},
    indent=1))
fig, ax = plt.subplots(figsize=(6, 4))
for beta, points in sweep.items():
    ax.plot(*zip(*points), "o-", label=f"beta = {beta}")
ax.set_xlabel("frames")
ax.set_ylabel("deterministic eval return")
ax.set_title(f"GraphGAE mixing on {cfg.task} (2-level tree, one seed)")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "03_beta_sweep.png", dpi=100)
