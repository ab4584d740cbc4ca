"""TorchRL's multi-agent PPO tutorial pipeline, stock against the same pipeline with RN's pieces dropped in.

The stock side is TorchRL's tutorial (``tutorials/sphinx-tutorials/multiagent_ppo.py``): VMAS navigation, a
``MultiAgentMLP`` policy (``ProbabilisticActor``, ``TanhNormal``) and centralised critic, ``ClipPPOLoss`` with GAE,
a ``Collector``, a ``ReplayBuffer`` sampled without replacement, Adam and gradient clipping. Both sides leave out of
the buffer what their loss does not read once the advantages are in (the ``"next"`` step, the collector's trajectory
ids, the policy's distribution parameters and RN's bottom-up outputs, which the losses recompute). The RN side
changes only what a user would change: the env is wrapped in :class:`~torchrl_rn.LevelEnv`, the policy and critic
come from :class:`~torchrl_rn.GraphComposer` (the policy run as :class:`~torchrl_rn.modules.FusedPolicy`), the loss
is :class:`~torchrl_rn.RNLoss` (its :class:`~torchrl_rn.GraphGAE` computes the advantages). Each measured
iteration is one batch collected plus all its epochs of updates plus the weight update; the two pipelines alternate
in one process and the median over ``reps`` iterations (after one warm-up) gives the training frames/s and the ratio
RN / stock (``rn_over_stock_paired``: the median of the ratios within each round).

Writes ``<out>/tutorial_pipeline.json`` and ``<out>/tutorial_pipeline.png``:

    python benchmarks/tutorial_pipeline.py --preset tutorial --threads 1 --out benchmarks/results   # the tutorial's sizes
    python benchmarks/tutorial_pipeline.py --preset small                                          # a few minutes
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import speed_cli  # this script runs from benchmarks/
import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss
from torchrl_rn.modules import FusedPolicy


@dataclass(frozen=True)
class Preset:
    scenario: str = "navigation"
    n_agents: int = 3
    rn_graph: str = "tree:2"
    frames_per_batch: int = 6_000
    max_steps: int = 100
    epochs: int = 30
    minibatch_size: int = 400
    num_cells: int = 256
    manager_cells: int = 64
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    clip_epsilon: float = 0.2
    gamma: float = 0.99
    lmbda: float = 0.9
    entropy_coeff: float = 1e-4
    reps: int = 5


PRESETS = {
    "tutorial": Preset(),
    "small": Preset(frames_per_batch=2_000, epochs=5),
    "tiny": Preset(frames_per_batch=100, max_steps=10, epochs=1, minibatch_size=50, num_cells=16, manager_cells=8,
                   reps=1),
}


def _env(p: Preset, seed: int) -> VmasEnv:
    env = VmasEnv(scenario=p.scenario, num_envs=p.frames_per_batch // p.max_steps, continuous_actions=True,
                  max_steps=p.max_steps, n_agents=p.n_agents, seed=seed)
    return env


class Pipeline:
    """One pipeline of the tutorial: env, policy, loss, collector, buffer, optimiser; ``iteration()`` runs one."""

    def __init__(self, p: Preset, *, rn: bool, seed: int = 0) -> None:
        self.p, self.rn = p, rn
        torch.manual_seed(seed)
        base = _env(p, seed)
        if rn:
            graph = RNGraph.from_spec(p.rn_graph, p.n_agents)
            env = TransformedEnv(base, LevelEnv(graph))
        else:
            env = TransformedEnv(base)
        env.append_transform(RewardSum(in_keys=[("agents", "reward")], out_keys=[("agents", "episode_reward")]))
        if rn:
            composer = GraphComposer(graph, env, num_cells=p.num_cells, manager_cells=p.manager_cells, critic="group")
            policy = FusedPolicy(composer.policy)  # the composed policy's step on tensors: the same actions
            self.loss = RNLoss(composer, clip_epsilon=p.clip_epsilon, entropy_coeff=p.entropy_coeff,
                               gamma=p.gamma, lmbda=p.lmbda)
            actors = [composer.actor(g) for g in graph.groups]
            recomputed = composer.messages.out_keys  # the loss re-runs the bottom-up pass with gradients
        else:
            policy, self.loss = self._stock(env)
            actors, recomputed = [policy], []
        # what the loss does not read once the advantages are in: the "next" step, the collector's trajectory ids and
        # the distribution parameters (the loss re-runs the actor heads), left out of the buffer on both sides
        self.unread = list(dict.fromkeys(["next", ("collector", "traj_ids"),
                                          *(k for a in actors for k in a.module[0].out_keys), *recomputed]))
        self.collector = Collector(env, policy, frames_per_batch=p.frames_per_batch, total_frames=-1,
                                   auto_register_policy_transforms=False)
        self.batches = iter(self.collector)
        self.buffer = ReplayBuffer(storage=LazyTensorStorage(p.frames_per_batch), sampler=SamplerWithoutReplacement(),
                                   batch_size=p.minibatch_size)
        self.optim = torch.optim.Adam(self.loss.parameters(), p.lr)

    def _stock(self, env):
        p = self.p
        obs = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
        act = env.full_action_spec_unbatched["agents", "action"]
        policy_net = nn.Sequential(
            MultiAgentMLP(n_agent_inputs=obs, n_agent_outputs=2 * act.shape[-1], n_agents=p.n_agents,
                          centralized=False, share_params=True, depth=2, num_cells=p.num_cells,
                          activation_class=nn.Tanh),
            NormalParamExtractor())
        policy = ProbabilisticActor(
            TensorDictModule(policy_net, in_keys=[("agents", "observation")], out_keys=[("agents", "loc"),
                                                                                          ("agents", "scale")]),
            in_keys=[("agents", "loc"), ("agents", "scale")], out_keys=[("agents", "action")],
            distribution_class=TanhNormal, distribution_kwargs={"low": act.space.low, "high": act.space.high},
            return_log_prob=True)
        critic_net = MultiAgentMLP(n_agent_inputs=obs, n_agent_outputs=1, n_agents=p.n_agents, centralized=True,
                                   share_params=True, depth=2, num_cells=p.num_cells, activation_class=nn.Tanh)
        critic = TensorDictModule(critic_net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])
        loss = ClipPPOLoss(actor_network=policy, critic_network=critic, clip_epsilon=p.clip_epsilon,
                           entropy_coeff=p.entropy_coeff, normalize_advantage=False)
        loss.set_keys(reward=("agents", "reward"), action=("agents", "action"), value=("agents", "state_value"),
                      sample_log_prob=("agents", "action_log_prob"), done=("agents", "done"),
                      terminated=("agents", "terminated"))
        loss.make_value_estimator(ValueEstimators.GAE, gamma=p.gamma, lmbda=p.lmbda)
        return policy, loss

    def _advantage(self, data) -> None:
        if self.rn:
            self.loss.value_estimator(data)
            return
        for key in ("done", "terminated"):  # the tutorial's expansion of the root flags to the agents
            data.set(("next", "agents", key), data.get(("next", key)).unsqueeze(-1).expand(
                data.get_item_shape(("next", "agents", "reward"))))
        self.loss.value_estimator(data, params=self.loss.critic_network_params,
                                  target_params=self.loss.target_critic_network_params)

    def iteration(self) -> int:
        p = self.p
        data = next(self.batches)
        with torch.no_grad():
            self._advantage(data)
        self.buffer.extend(data.exclude(*self.unread).reshape(-1))
        for _ in range(p.epochs):
            for _ in range(p.frames_per_batch // p.minibatch_size):
                out = self.loss(self.buffer.sample())
                loss = out["loss"] if "loss" in out else out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.loss.parameters(), p.max_grad_norm)
                self.optim.step()
                self.optim.zero_grad()
        self.collector.update_policy_weights_()
        return data.numel()


def measure(p: Preset) -> dict:
    pipelines = {"stock": Pipeline(p, rn=False), "rn": Pipeline(p, rn=True)}
    samples: dict[str, list[float]] = {name: [] for name in pipelines}
    for rep in range(p.reps + 1):  # the first round warms up
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            frames = pipeline.iteration()
            if rep:
                samples[name].append(frames / (time.perf_counter() - start))
    for pipeline in pipelines.values():
        pipeline.collector.shutdown()
    medians = {name: statistics.median(s) for name, s in samples.items()}
    paired = statistics.median(r / s for r, s in zip(samples["rn"], samples["stock"]))  # within each round
    return {"frames_per_second": medians, "samples": samples, "rn_over_stock": medians["rn"] / medians["stock"],
            "rn_over_stock_paired": paired}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rates, samples = result["frames_per_second"], result["samples"]
    names = ["stock", "rn"]
    bars = ax.bar(["TorchRL tutorial\n(MAPPO)", f"+ LevelEnv, GraphComposer,\nRNLoss ({result['preset']['rn_graph']})"],
                  [rates[n] for n in names])
    ax.bar_label(bars, fmt="%.0f")
    for i, n in enumerate(names):
        ax.plot([i] * len(samples[n]), samples[n], "k.", alpha=0.5)
    ax.set_ylabel("training frames / s")
    ax.set_title(f"vmas/{result['preset']['scenario']}, {result['preset_name']} preset: RN/stock = "
                 f"{result['rn_over_stock']:.2f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args, p, out = speed_cli.parse(__doc__, PRESETS, "tutorial", "torchrl-rn-tutorial-pipeline", argv)
    result = {"preset": dataclasses.asdict(p), "preset_name": args.preset, "threads": torch.get_num_threads(),
              **measure(p)}
    print(f"training frames/s: stock {result['frames_per_second']['stock']:.0f}, RN {result['frames_per_second']['rn']:.0f}, "
          f"ratio RN/stock {result['rn_over_stock']:.2f} (paired by round {result['rn_over_stock_paired']:.2f})", flush=True)
    (out / "tutorial_pipeline.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "tutorial_pipeline.png")


if __name__ == "__main__":
    main()
