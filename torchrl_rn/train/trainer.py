"""``RNTrainer`` and the ``rn`` command line: train an RN graph, or TorchRL's MAPPO/IPPO, with one pipeline.

The pipeline is TorchRL's multi-agent PPO recipe (its MAPPO tutorial): a :class:`~torchrl.collectors.Collector`, a
:class:`~torchrl.data.ReplayBuffer` sampled without replacement, a PPO loss, Adam and gradient clipping. Only the
policy, critic, loss and value estimator change with ``algo``:

* ``rn``: the graph from ``--graph`` composed by :class:`GraphComposer`, env wrapped in :class:`LevelEnv`,
  :class:`RNLoss` with :class:`GraphGAE`;
* ``mappo`` / ``ippo``: ``MultiAgentMLP`` actor and critic (centralised for MAPPO), TorchRL's
  :class:`~torchrl.objectives.multiagent.MAPPOLoss` / :class:`~torchrl.objectives.multiagent.IPPOLoss`.

A run writes ``config.json``, ``metrics.csv`` (one row per iteration), ``curve.png`` and ``checkpoint.pt``
(written atomically after every iteration; ``--resume`` continues from it) into its output folder, and logs
through TorchRL's loggers (``csv`` by default).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import BaseCollector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives.multiagent import IPPOLoss, MAPPOLoss
from torchrl.record.loggers import get_logger
from tqdm.auto import tqdm

from torchrl_rn.composer import GraphComposer
from torchrl_rn.graph import RNGraph
from torchrl_rn.loss import RNLoss
from torchrl_rn.train.checkpoint import CHECKPOINT, load_checkpoint
from torchrl_rn.train.collection import make_collector, task_env_fn, wrap_env
from torchrl_rn.train.config import TrainConfig
from torchrl_rn.train.plots import plot_curves

__all__ = ["RNTrainer"]


class RNTrainer:
    """Trains one run of :class:`TrainConfig` with stock TorchRL pieces.

    Args:
        config (TrainConfig): the run.

    Keyword Args:
        env_fn (callable, optional): ``env_fn(num_envs, seed) -> EnvBase`` replacing the task factory (for custom or
            mock envs); the env's agents must be in the group ``"agents"``; picklable (no lambda) with ``workers > 1`` or
            ``ray``.
        progress (bool): show a progress bar. Defaults to ``True``.

    Examples:
        >>> from torchrl_rn import RNTrainer
        >>> from torchrl_rn.train import TrainConfig
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> import tempfile
        >>> cfg = TrainConfig(task="mock", frames=200, frames_per_batch=100, max_steps=5, minibatch_size=50,
        ...                   epochs=1, num_cells=16, out=tempfile.mkdtemp())
        >>> trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(3, num_envs=n, seed=seed),
        ...                     progress=False)
        >>> metrics = trainer.train()
        >>> trainer.frames
        200
    """

    def __init__(self, config: TrainConfig, *, env_fn=None, progress: bool = True) -> None:
        self.config = cfg = config
        self.progress = progress
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        # picklable: worker processes and Ray actors (``workers``, ``ray``) build their envs with it
        self._env_fn = env_fn or task_env_fn(cfg.task, n_agents=cfg.n_agents, max_steps=cfg.max_steps,
                                             device=cfg.device)
        base = self._env_fn(cfg.num_envs, cfg.seed)
        self.n_agents = base.full_action_spec_unbatched["agents", "action"].shape[0]
        self.graph: RNGraph | None = None
        if cfg.algo == "rn":
            self.graph = RNGraph.from_spec(cfg.graph, self.n_agents, defaults={"phi": cfg.phi})
        self.env = self._wrap(base)
        self.eval_env = self._wrap(self._env_fn(cfg.eval_envs, cfg.seed + 1))
        self.policy, self.loss = self._build_models(self.env)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=cfg.lr)
        self._buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch, device=self.device),
                                    sampler=SamplerWithoutReplacement(), batch_size=cfg.minibatch_size)
        self.iteration = 0
        self.frames = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ construction
    def _wrap(self, env: EnvBase) -> TransformedEnv:
        return wrap_env(env, self.graph)

    def _build_models(self, env: EnvBase) -> tuple[nn.Module, nn.Module]:
        cfg = self.config
        if cfg.algo == "rn":
            self.composer = GraphComposer(
                self.graph, env, num_cells=cfg.num_cells, manager_cells=cfg.manager_cells, share_params=cfg.share_params, critic=cfg.critic,
                detach_messages=cfg.detach_messages, device=self.device,
            )
            loss = RNLoss(
                self.composer, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                normalize_advantage=cfg.normalize_advantage, gamma=cfg.gamma, lmbda=cfg.lmbda, beta=cfg.beta,
                neighbourhood=cfg.neighbourhood,
            )
            return self.composer.policy, loss
        # TorchRL's own MAPPO / IPPO, as in its multi-agent PPO tutorial
        obs = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
        act_spec = env.full_action_spec_unbatched["agents", "action"]
        n = self.n_agents

        def mlp(n_out: int, centralized: bool) -> MultiAgentMLP:
            return MultiAgentMLP(obs, n_out, n_agents=n, centralized=centralized, share_params=cfg.share_params,
                                 depth=2, num_cells=cfg.num_cells, activation_class=nn.Tanh, device=self.device)

        head = TensorDictModule(nn.Sequential(mlp(2 * act_spec.shape[-1], False), NormalParamExtractor()),
                                [("agents", "observation")], [("agents", "loc"), ("agents", "scale")])
        policy = ProbabilisticActor(
            head, in_keys=[("agents", "loc"), ("agents", "scale")], out_keys=[("agents", "action")],
            distribution_class=TanhNormal,
            distribution_kwargs={"low": act_spec.space.low.to(self.device), "high": act_spec.space.high.to(self.device)},
            return_log_prob=True,
        )
        critic = TensorDictModule(mlp(1, cfg.algo == "mappo"), [("agents", "observation")], [("agents", "state_value")])
        loss_cls = MAPPOLoss if cfg.algo == "mappo" else IPPOLoss
        loss = loss_cls(policy, critic, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                        normalize_advantage=cfg.normalize_advantage)
        loss.set_keys(reward=("agents", "reward"), action=("agents", "action"),
                      sample_log_prob=("agents", "action_log_prob"), value=("agents", "state_value"),
                      done=("agents", "done"), terminated=("agents", "terminated"))
        loss.make_value_estimator(gamma=cfg.gamma, lmbda=cfg.lmbda)
        return policy, loss

    # ------------------------------------------------------------------ training
    def _advantage(self, data: TensorDictBase) -> None:
        if self.config.algo != "rn":
            # TorchRL's convention: VMAS writes done at the root; the multi-agent GAE wants it per agent
            for key in ("done", "terminated"):
                flag = data.get(("next", key))
                data.set(("next", "agents", key), flag.unsqueeze(-2).expand(*flag.shape[:-1], self.n_agents, 1))
            self.loss.value_estimator(data, params=self.loss.critic_network_params,
                                      target_params=self.loss.target_critic_network_params)
        else:
            self.loss.value_estimator(data)

    def _loss_value(self, batch: TensorDictBase) -> torch.Tensor:
        out = self.loss(batch)
        if "loss" in out.keys():
            return out["loss"]
        return sum(v for k, v in out.items() if k.startswith("loss_"))

    def make_collector(self, total_frames: int = -1) -> BaseCollector:
        """The run's TorchRL collector (:func:`~torchrl_rn.train.collection.make_collector`): a
        :class:`~torchrl.collectors.Collector` in this process, :class:`~torchrl.collectors.MultiSyncCollector` with
        ``config.workers`` processes, or TorchRL's ``RayCollector`` with ``config.ray``; its batches have the same
        ``[num_envs, max_steps]`` shape either way."""
        cfg = self.config
        return make_collector(self._env_fn, self.policy, graph=self.graph, num_envs=cfg.num_envs,
                              frames_per_batch=cfg.frames_per_batch, total_frames=total_frames, workers=cfg.workers,
                              ray=cfg.ray, seed=cfg.seed, device=self.device, env=self.env)

    def update(self, data: TensorDictBase) -> float:
        """One PPO update on a collected batch: advantages, then ``epochs`` passes of minibatches.

        Returns the last minibatch's loss.
        """
        cfg = self.config
        with torch.no_grad():
            self._advantage(data)
        self._buffer.extend(data.reshape(-1))
        for _ in range(cfg.epochs):
            for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
                loss = self._loss_value(self._buffer.sample())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.loss.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
        return float(loss.detach())

    def train(self) -> list[dict[str, float]]:
        """Runs until ``config.frames`` frames have been collected; returns the per-iteration metrics."""
        cfg = self.config
        run_dir = cfg.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        remaining = cfg.frames - self.frames
        if remaining <= 0:
            return self.history
        logger = get_logger(cfg.logger, logger_name=str(run_dir / "logs"), experiment_name="run") if cfg.logger else None
        collector = self.make_collector(-(-remaining // cfg.frames_per_batch) * cfg.frames_per_batch)
        bar = tqdm(total=cfg.frames, initial=self.frames, unit="frames", disable=not self.progress,
                   desc=f"{cfg.task} {cfg.algo}")
        start = time.perf_counter()
        for data in collector:
            t0 = time.perf_counter()
            loss = self.update(data)
            collector.update_policy_weights_()
            self.iteration += 1
            self.frames += data.numel()
            row = {"iteration": self.iteration, "frames": self.frames, "train_return": _episode_return(data),
                   "loss": loss, "train_seconds": time.perf_counter() - t0, "wall_seconds": time.perf_counter() - start}
            if self.iteration % cfg.eval_every == 0 or self.frames >= cfg.frames:
                row["eval_return"] = self.evaluate()
            self.history.append(row)
            self.save(run_dir / CHECKPOINT)
            self._write_metrics(run_dir)
            if logger is not None:
                for key, value in row.items():
                    if key not in ("iteration", "frames"):
                        logger.log_scalar(key, value, step=self.frames)
            bar.update(data.numel())
            bar.set_postfix(ret=f"{row['train_return']:.2f}")
            if self.frames >= cfg.frames:
                break
        bar.close()
        collector.shutdown()
        plot_curves(self.history, run_dir / "curve.png", title=f"{cfg.task} {cfg.algo}")
        return self.history

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean return of one deterministic episode per eval env (reward summed until the first done)."""
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            td = self.eval_env.rollout(self.config.max_steps, self.policy, break_when_any_done=False)
        return _first_episode_return(td)

    # ------------------------------------------------------------------ persistence
    def _write_metrics(self, run_dir: Path) -> None:
        # rewritten whole from the history the checkpoint holds, so a resumed run never duplicates a row
        fields = ["iteration", "frames", "train_return", "eval_return", "loss", "train_seconds", "wall_seconds"]
        path = run_dir / "metrics.csv"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in fields} for row in self.history)
        os.replace(tmp, path)

    def state_dict(self) -> dict[str, Any]:
        return {"format": "torchrl-rn/1", "config": dataclasses.asdict(self.config), "iteration": self.iteration,
                "frames": self.frames, "loss": self.loss.state_dict(), "optimizer": self.optimizer.state_dict(),
                "history": self.history, "rng": torch.get_rng_state()}

    def save(self, path: str | Path) -> None:
        """Writes a checkpoint atomically: a crash mid-write leaves the previous one intact."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | Path) -> None:
        """Restores parameters, optimiser, counters and history from a checkpoint of the same config."""
        state = load_checkpoint(path)
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.frames, self.history = state["iteration"], state["frames"], state["history"]
        torch.set_rng_state(state["rng"])

    @classmethod
    def resume(cls, path: str | Path, *, frames: int | None = None, **kwargs) -> RNTrainer:
        """A trainer rebuilt from a checkpoint's config (optionally with a new frame budget) and state."""
        state = load_checkpoint(path)
        config = dict(state["config"])
        if frames is not None:
            config["frames"] = frames
        config["out"] = config["out"] or str(Path(path).parent)
        trainer = cls(TrainConfig(**config), **kwargs)
        trainer.load(path)
        return trainer


def _episode_return(data: TensorDictBase) -> float:
    """Mean (over agents) return of the episodes that ended in this batch; NaN if none did."""
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return float("nan")
    returns = data.get(("next", "agents", "episode_reward")).mean(-2).squeeze(-1)
    return returns[done].mean().item()


def _first_episode_return(td: TensorDictBase) -> float:
    reward = td.get(("next", "agents", "reward")).mean(-2).squeeze(-1)  # [E, T]
    done = td.get(("next", "done")).squeeze(-1).int()
    alive = (done.cumsum(-1) - done) == 0  # up to and including the first done
    return (reward * alive).sum(-1).mean().item()
