"""
LevelEnv in your own TorchRL code
=================================

You already have a TorchRL multi-agent PPO pipeline. This tutorial shows that

1. going RN changes *the env* (wrap it in :class:`~torchrl_rn.LevelEnv`) and *the value estimator*
   (:class:`~torchrl_rn.GraphGAE`): a two-line diff for a flat graph;
2. a real hierarchy adds *the modules* (:class:`~torchrl_rn.GraphComposer`) and *the loss*
   (:class:`~torchrl_rn.RNLoss`), and nothing else;
3. TAG's view stacks: two ``LevelEnv`` views make a 3-level hierarchy in which the top level is trained by a
   **stock** ``ClipPPOLoss`` on what looks like an ordinary TorchRL env.

``RN_TUTORIAL_QUICK=1`` runs it in seconds; figures go to ``RN_TUTORIAL_OUT`` (default ``tutorials/out``).
"""
# %%
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs.utils import check_env_specs
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from torchrl_rn import GraphComposer, GraphGAE, LevelEnv, LevelView, RNGraph, RNLoss
from torchrl_rn.envs import make_env

QUICK = os.environ.get("RN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("RN_TUTORIAL_OUT", "tutorials/out"))


@dataclass
class Config:
    n_agents: int = 4
    max_steps: int = 100
    frames_per_batch: int = 6_000
    iterations: int = 5  # per pipeline
    epochs: int = 10
    minibatch_size: int = 400
    lr: float = 3e-4
    gamma: float = 0.99
    lmbda: float = 0.9
    num_cells: int = 256


cfg = Config()
if QUICK:
    cfg = Config(max_steps=20, frames_per_batch=400, iterations=2, epochs=1, minibatch_size=200, num_cells=16)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
num_envs = cfg.frames_per_batch // cfg.max_steps


def base_env():
    return make_env("vmas/balance", n_agents=cfg.n_agents, num_envs=num_envs, max_steps=cfg.max_steps, seed=0)


# %%
# The PPO loop we will reuse unchanged
# ------------------------------------
# This is TorchRL's multi-agent PPO recipe: collect, compute advantages once per batch, then epochs of minibatches.
# It knows nothing about graphs: it takes an env, a policy, a loss (any sum of ``loss_*`` terms, or a ``"loss"``
# entry) and a value estimator.
def ppo(env, policy, loss_module, estimator, reward_key) -> list[float]:
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch), sampler=SamplerWithoutReplacement(),
                          batch_size=cfg.minibatch_size)
    collector = Collector(env, policy, frames_per_batch=cfg.frames_per_batch,  # not recurrent: no InitTracker
                          total_frames=cfg.iterations * cfg.frames_per_batch, auto_register_policy_transforms=False)
    mean_rewards = []
    for data in collector:
        with torch.no_grad():
            estimator(data)
        buffer.extend(data.reshape(-1))
        for _ in range(cfg.epochs):
            for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
                out = loss_module(buffer.sample())
                total = out["loss"] if "loss" in out.keys() else sum(v for k, v in out.items() if k.startswith("loss_"))
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
        collector.update_policy_weights_()
        mean_rewards.append(data.get(("next", *reward_key)).mean().item())
    collector.shutdown()
    return mean_rewards


# %%
# 1. A stock TorchRL pipeline
# ---------------------------
# A shared-parameter ``MultiAgentMLP`` policy and critic over VMAS's ``"agents"`` group, ``ClipPPOLoss`` and
# ``GAE`` with the group's keys, exactly as in TorchRL's multi-agent PPO tutorial.
env = base_env()
obs_dim = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
action_spec = env.full_action_spec_unbatched["agents", "action"]


def stock_modules():
    head = TensorDictModule(
        nn.Sequential(MultiAgentMLP(obs_dim, 2 * action_spec.shape[-1], cfg.n_agents, centralized=False,
                                    share_params=True, depth=2, num_cells=cfg.num_cells, activation_class=nn.Tanh),
                      NormalParamExtractor()),
        [("agents", "observation")], [("agents", "loc"), ("agents", "scale")])
    policy = ProbabilisticActor(head, in_keys=[("agents", "loc"), ("agents", "scale")],
                                out_keys=[("agents", "action")], distribution_class=TanhNormal,
                                distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
                                return_log_prob=True)
    critic = TensorDictModule(MultiAgentMLP(obs_dim, 1, cfg.n_agents, centralized=True, share_params=True, depth=2,
                                            num_cells=cfg.num_cells, activation_class=nn.Tanh),
                              [("agents", "observation")], [("agents", "state_value")])
    return policy, critic


def stock_loss(policy, critic, group="agents"):
    loss_module = ClipPPOLoss(policy, critic, entropy_coeff=1e-4, normalize_advantage=False)
    loss_module.set_keys(action=(group, "action"), sample_log_prob=(group, "action_log_prob"),
                         value=(group, "state_value"), reward=(group, "reward"), done=(group, "done"),
                         terminated=(group, "terminated"), advantage=(group, "advantage"),
                         value_target=(group, "value_target"))
    return loss_module


policy, critic = stock_modules()
loss_module = stock_loss(policy, critic)
estimator = GAE(gamma=cfg.gamma, lmbda=cfg.lmbda, value_network=critic)
estimator.set_keys(**{k: getattr(loss_module.tensor_keys, k) for k in
                      ("value", "reward", "done", "terminated", "advantage", "value_target")})


def expand_done(data):  # VMAS writes done at the root; the stock pipeline broadcasts it to the group itself
    for key in ("done", "terminated"):
        flag = data["next", key]
        data["next", "agents", key] = flag.unsqueeze(-2).expand(*flag.shape[:-1], cfg.n_agents, 1)
    return estimator(data)


stock = ppo(env, policy, loss_module, expand_done, ("agents", "reward"))
print("stock pipeline, mean reward per batch:", [f"{r:.3f}" for r in stock])

# %%
# 2. The same pipeline, RN: the diff
# ----------------------------------
# For a flat graph (motors only), two lines change: the env is wrapped in ``LevelEnv`` (which also writes the
# per-group dones the stock pipeline expanded by hand), and the estimator is ``GraphGAE``::
#
#     - env = base_env()
#     + env = base_env().append_transform(LevelEnv(graph))
#     - estimator = GAE(gamma, lmbda, value_network=critic)
#     + estimator = GraphGAE(graph, gamma=gamma, lmbda=lmbda, value_network=critic, beta=0.5)
graph = RNGraph.flat(cfg.n_agents)
env = base_env().append_transform(LevelEnv(graph))  # base_env() is a TransformedEnv already: one more transform
policy, critic = stock_modules()
loss_module = stock_loss(policy, critic)
estimator = GraphGAE(graph, gamma=cfg.gamma, lmbda=cfg.lmbda, value_network=critic, beta=0.5)
flat = ppo(env, policy, loss_module, estimator, ("agents", "reward"))
print("flat RN, mean reward per batch:", [f"{r:.3f}" for r in flat])

# %%
# A hierarchy adds the graph's modules and one loss per level; the loop stays as it is::
#
#     + graph = RNGraph.tree(4, branching=[2])
#     + composer = GraphComposer(graph, env)
#     - policy, loss_module = stock policy, ClipPPOLoss(...)
#     + policy, loss_module = composer.policy, RNLoss(composer, beta=0.5)
#     + estimator = loss_module.value_estimator
graph = RNGraph.tree(cfg.n_agents, branching=[2])
env = base_env().append_transform(LevelEnv(graph))
composer = GraphComposer(graph, env, num_cells=cfg.num_cells, manager_cells=64, critic="group")
loss_module = RNLoss(composer, beta=0.5, gamma=cfg.gamma, lmbda=cfg.lmbda, entropy_coeff=1e-4)
tree = ppo(env, composer.policy, loss_module, loss_module.value_estimator, ("agents", "reward"))
print("2-level RN, mean reward per batch:", [f"{r:.3f}" for r in tree])

# %%
# 3. TAG: stack two LevelEnv views, train the top level with a stock loss
# -----------------------------------------------------------------------
# ``LevelView(graph, level=l, lower_policy=composer)`` embeds level ``l - 1`` in the env: its action is level
# ``l``'s instruction, its observation the messages from below, its reward ``psi`` of the rewards below. The
# level-2 view over the level-1 view over VMAS is an ordinary TorchRL env whose only agent group is ``"level2"``.
graph = RNGraph.tree(cfg.n_agents, branching=[2, 2])
composer = GraphComposer(graph, base_env().append_transform(LevelEnv(graph)), num_cells=cfg.num_cells,
                         manager_cells=64)
view2 = (base_env().append_transform(LevelView(graph, level=1, lower_policy=composer))
         .append_transform(LevelView(graph, level=2, lower_policy=composer)))
check_env_specs(view2)
print("top-level env actions:", list(view2.full_action_spec.keys(True, True)))

# %%
# (The views are appended in order to one env: the level-2 view reads what the level-1 view writes, as stacked
# envs would, without TorchRL's nested-env warning.) The top group has no superior, so it has no ``instruction``:
# its actor and value head read ``("level2", "observation")`` alone, exactly like a flat MAPPO group. Level 1, below
# it, is instructed by level 2's action inside the env.
assert ("level2", "instruction") not in view2.full_observation_spec.keys(True, True)
assert composer.actor("level2").in_keys == [("level2", "observation")]

top_loss = stock_loss(composer.actor("level2"), composer.value_head("level2"), group="level2")
top_estimator = GAE(gamma=cfg.gamma, lmbda=cfg.lmbda, value_network=composer.value_head("level2"))
top_estimator.set_keys(**{k: getattr(top_loss.tensor_keys, k) for k in
                          ("value", "reward", "done", "terminated", "advantage", "value_target")})
top = ppo(view2, composer.actor("level2"), top_loss, top_estimator, ("level2", "reward"))
print("TAG top level (lower levels fixed), mean reward per batch:", [f"{r:.3f}" for r in top])

# %%
# The four curves
# ---------------
# The level-2 vertex's reward is the sum (``psi="sum"``) of all four motors' rewards: divided by the motor count,
# it reads on the same per-agent scale as the other curves.
fig, ax = plt.subplots(figsize=(6, 4))
for name, rewards in (("stock MAPPO-style", stock), ("flat RN", flat), ("2-level RN", tree),
                      ("TAG top of 3 levels (level-2 reward / motors)", [r / cfg.n_agents for r in top])):
    ax.plot(range(1, len(rewards) + 1), rewards, "o-", label=name)
ax.set_xticks(range(1, cfg.iterations + 1))
ax.set_xlabel("iteration")
ax.set_ylabel("mean reward per step")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "02_curves.png", dpi=100)
