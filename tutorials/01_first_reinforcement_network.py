"""
Your first Reinforcement Network
================================

A Reinforcement Network (RN) is a team of agents wired as a directed acyclic graph. Each vertex observes the
*messages* of its subordinates and the *instructions* (actions) of its superiors, and acts by instructing its
subordinates; only the sinks, the *motors*, act in the environment.

In this tutorial we

1. describe a 2-level graph with networkx: 4 motors, 2 managers,
2. turn VMAS *balance* into the environment of that graph with :class:`~torchrl_rn.LevelEnv`,
3. compose one policy for the whole graph with :class:`~torchrl_rn.GraphComposer`,
4. train it with a stock TorchRL :class:`~torchrl.collectors.Collector` and replay buffer, and
   :class:`~torchrl_rn.RNLoss` (one PPO loss per level, with the graph-aware advantage
   :class:`~torchrl_rn.GraphGAE`),
5. plot the learning curve and draw the graph.

If you know TorchRL's multi-agent PPO tutorial, every step will look familiar: only the graph is new.

Run it with ``python tutorials/01_first_reinforcement_network.py`` (a few minutes on 2 CPU cores), or with
``RN_TUTORIAL_QUICK=1`` for a smoke run of a few seconds. Figures go to ``RN_TUTORIAL_OUT`` (default
``tutorials/out``).
"""
# %%
# Hyperparameters
# ---------------
# One dataclass, as in TorchRL's tutorials (6000 frames per batch of 60 vectorised envs of 100 steps, PPO with
# 10 epochs of minibatches of 400).
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type

from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss
from torchrl_rn.envs import make_env

QUICK = os.environ.get("RN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("RN_TUTORIAL_OUT", "tutorials/out"))


@dataclass
class Config:
    n_agents: int = 4
    max_steps: int = 100
    frames_per_batch: int = 6_000
    total_frames: int = 120_000
    epochs: int = 10
    minibatch_size: int = 400
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    gamma: float = 0.99
    lmbda: float = 0.9
    beta: float = 0.5  # how much of its neighbours' advantage a vertex is credited with
    entropy_coeff: float = 1e-4
    num_cells: int = 256  # motors' MLP width
    manager_cells: int = 64  # managers see few inputs: a narrow MLP keeps the graph cheap
    eval_every: int = 4
    seed: int = 0


cfg = Config()
if QUICK:
    cfg = Config(max_steps=20, frames_per_batch=400, total_frames=800, epochs=1, minibatch_size=200, num_cells=16,
                 manager_cells=8, eval_every=1)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(cfg.seed)

# %%
# The graph
# ---------
# An edge goes from a superior to a subordinate. The sinks are motors: one per VMAS agent, bound in the order of
# the env's agents (or explicitly with the vertex attribute ``agent``). The order in which edges are added fixes
# the order in which a manager concatenates its subordinates' messages.
g = nx.DiGraph()
g.add_edges_from([("left", "motor_0"), ("left", "motor_1"), ("right", "motor_2"), ("right", "motor_3")])
graph = RNGraph(g, n_agents=cfg.n_agents)
print(graph, graph.groups)

# %%
# The environment of the graph
# ----------------------------
# ``LevelEnv`` is a plain TorchRL transform. It gives every vertex group a reward (a manager's reward is the sum,
# ``psi="sum"``, of its motors' rewards), per-group ``done`` flags, and carries each step's instructions into the
# ``"next"`` data so that critics can be evaluated there. The motors' group is VMAS's own ``"agents"``.
num_envs = cfg.frames_per_batch // cfg.max_steps
# make_env returns a TransformedEnv already (its time limit): append LevelEnv to it rather than nesting a second one
env = make_env("vmas/balance", n_agents=cfg.n_agents, num_envs=num_envs, max_steps=cfg.max_steps,
               seed=cfg.seed).append_transform(LevelEnv(graph))
eval_env = make_env("vmas/balance", n_agents=cfg.n_agents, num_envs=16, max_steps=cfg.max_steps,
                    seed=cfg.seed + 1).append_transform(LevelEnv(graph))
check_env_specs(env)

# %%
# One policy for the whole graph
# ------------------------------
# The composer evaluates every level in one batched ``MultiAgentMLP`` call: bottom-up the managers gather their
# motors' messages (identity messages: the motors' observations), top-down they act, and the motors read their
# manager's action as an instruction before acting in the env. ``composer.policy`` is a ``TensorDictSequential``.
composer = GraphComposer(graph, env, num_cells=cfg.num_cells, manager_cells=cfg.manager_cells, critic="group")
td = composer.policy(env.reset())
print("manager actions", td["level1", "action"].shape, "-> motor instructions", td["agents", "instruction"].shape)

# %%
# Loss and advantage
# ------------------
# ``RNLoss`` holds one ``ClipPPOLoss`` per level and sums them; its value estimator is ``GraphGAE``: per-vertex
# GAE, then each vertex's advantage mixed with its neighbours' (``beta``).
loss = RNLoss(composer, gamma=cfg.gamma, lmbda=cfg.lmbda, beta=cfg.beta, entropy_coeff=cfg.entropy_coeff)
optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
# auto_register_policy_transforms=False: the policy is not recurrent, so TorchRL has no InitTracker to add (and
# no FutureWarning to print about it)
collector = Collector(env, composer.policy, frames_per_batch=cfg.frames_per_batch, total_frames=cfg.total_frames,
                      auto_register_policy_transforms=False)
buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch), sampler=SamplerWithoutReplacement(),
                      batch_size=cfg.minibatch_size)


@torch.no_grad()
def evaluate() -> float:
    """Mean return of one deterministic episode per eval env (team reward, averaged over agents)."""
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = eval_env.rollout(cfg.max_steps, composer.policy, break_when_any_done=False)
    reward = rollout["next", "agents", "reward"].mean(-2).squeeze(-1)
    done = rollout["next", "done"].squeeze(-1).int()
    alive = (done.cumsum(-1) - done) == 0  # count rewards up to each env's first done
    return (reward * alive).sum(-1).mean().item()


# %%
# Training: TorchRL's PPO loop
# ----------------------------
curve = [(0, evaluate())]
print(f"frames 0: eval return {curve[0][1]:.2f}")
frames = 0
for i, data in enumerate(collector, start=1):
    with torch.no_grad():
        loss.value_estimator(data)  # every vertex's advantage, mixed along the graph
    buffer.extend(data.reshape(-1))
    for _ in range(cfg.epochs):
        for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
            loss_value = loss(buffer.sample())["loss"]
            loss_value.backward()
            torch.nn.utils.clip_grad_norm_(loss.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
    collector.update_policy_weights_()
    frames += data.numel()
    if i % cfg.eval_every == 0 or frames >= cfg.total_frames:
        curve.append((frames, evaluate()))
        print(f"frames {frames}: eval return {curve[-1][1]:.2f}")
collector.shutdown()
print(f"first eval {curve[0][1]:.2f}, last eval {curve[-1][1]:.2f}")

# %%
# The curve
# ---------
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(*zip(*curve), "o-")
ax.set_xlabel("frames")
ax.set_ylabel("deterministic eval return")
ax.set_title("RN (2 levels) on VMAS balance")
fig.tight_layout()
fig.savefig(OUT / "01_curve.png", dpi=100)

# %%
# The graph, coloured by level
# ----------------------------
# ``graph.level(v)`` is a vertex's height above the motors: one row per level, superiors on top, each row in its
# group's order (the order of the group's batched call).
fig, ax = plt.subplots(figsize=(5, 3.5))
pos = {v: ((i + 1) / (len(members) + 1), graph.level(v)) for members in graph.groups.values()
       for i, v in enumerate(members)}
level_colours = ["tab:orange", "tab:blue", "tab:green", "tab:purple"]  # level 0 (motors), 1, 2, ...
colours = [level_colours[graph.level(v) % len(level_colours)] for v in graph.nx.nodes]
nx.draw_networkx(graph.nx, pos, ax=ax, node_color=colours, node_size=900, font_size=8, arrows=True)
for level in range(graph.depth + 1):
    ax.scatter([], [], color=level_colours[level % len(level_colours)], s=80,
               label="level 0: motors (act in the env)" if level == 0 else f"level {level}: managers")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
ax.set_title("an edge points from a superior to its subordinate")
ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "01_graph.png", dpi=100)
