"""``RNTrainer`` and the ``rn`` command line: train an RN graph, or TorchRL's MAPPO/IPPO, with one pipeline.

The pipeline is TorchRL's multi-agent PPO recipe (its MAPPO tutorial): a :class:`~torchrl.collectors.Collector`, a
:class:`~torchrl.data.ReplayBuffer` sampled without replacement, a PPO loss, Adam and gradient clipping. Only the
policy, critic, loss and value estimator change with ``algo``:

* ``rn``: the graph from ``--graph`` composed by :class:`GraphComposer`, env wrapped in :class:`LevelEnv`,
  :class:`RNLoss` with :class:`GraphGAE`;
* ``mappo`` / ``ippo``: ``MultiAgentMLP`` actor and critic (centralised for MAPPO), TorchRL's
  :class:`~torchrl.objectives.multiagent.MAPPOLoss` / :class:`~torchrl.objectives.multiagent.IPPOLoss`.

A run writes ``config.json``, ``metrics.csv`` (one row per iteration), ``curve.png`` and ``checkpoint.pt``
(written atomically before the first iteration and after every one; ``--resume`` continues from it) into its output
folder, and logs through TorchRL's loggers (``csv`` by default).

No run is lost: a folder that holds a run (any of its files) is refused unless ``force=True`` (``--force``), which
removes that run's files, and only once training starts; a run without ``out`` goes to
``results/<task>_<method>_seed<seed>``, or, when that folder is taken, to the same name with a timestamp.
A resumed run writes into the folder of its checkpoint.

Runs resume exactly: every iteration starts from a state that depends only on the checkpointed state, whether or
not the process was restarted in between. Before each batch, the envs are reseeded from ``(seed, iteration)`` and
reset, and the replay buffer is emptied; every random generator (python, numpy, torch CPU and CUDA) is saved in the
checkpoint; evaluation reseeds its envs and leaves the generators as it found them. So a run killed at any point and
resumed gives the same metrics as one never interrupted.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.checkpoint import GlobalRNGState
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import EnvBase, RewardSum, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP
from torchrl.objectives.multiagent import IPPOLoss, MAPPOLoss
from torchrl.record.loggers import get_logger
from tqdm.auto import tqdm

from torchrl_rn.composer import GraphComposer
from torchrl_rn.envs import make_env
from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.level_env import LevelEnv
from torchrl_rn.loss import RNLoss
from torchrl_rn.train.checkpoint import CHECKPOINT, FORMAT, CheckpointError, atomic_save, load_checkpoint
from torchrl_rn.train.config import TrainConfig
from torchrl_rn.train.plots import plot_curves
from torchrl_rn.vertex import actor_head

__all__ = ["RNTrainer", "RESUMABLE"]

#: the files of a run in its folder (``--force`` removes exactly these before a new run starts there)
RUN_FILES = (CHECKPOINT, "config.json", "metrics.csv", "curve.png", "logs")
#: settings ``--resume`` can change; any other given setting must equal the checkpoint's
RESUMABLE = ("frames",)


class RNTrainer:
    """Trains one run of :class:`TrainConfig` with stock TorchRL pieces.

    Args:
        config (TrainConfig): the run.

    Keyword Args:
        env_fn (callable, optional): ``env_fn(num_envs, seed) -> EnvBase`` replacing the task factory (for custom or
            mock envs); the env's agents must be in the group ``"agents"``.
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

    def __init__(self, config: TrainConfig, *, env_fn: Callable[[int, int], EnvBase] | None = None,
                 progress: bool = True, force: bool = False, _resuming: bool = False) -> None:
        if config.out is None:  # never another run's folder: the plain name if free, else a timestamped one
            config = dataclasses.replace(config, out=str(_free_folder(config.run_dir)))
        elif not (force or _resuming):
            _refuse_existing_run(config.run_dir)
        self.config = cfg = config
        self.progress = progress
        self._force = force and not _resuming  # remove the old run's files when training starts, not before
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        self._env_fn = env_fn or (lambda n, seed: make_env(cfg.task, n_agents=cfg.n_agents, num_envs=n,
                                                           max_steps=cfg.max_steps, device=cfg.device, seed=seed))
        base = self._env_fn(cfg.num_envs, cfg.seed)
        self.n_agents = base.full_action_spec_unbatched["agents", "action"].shape[0]
        self.graph: RNGraph | None = None
        if cfg.algo == "rn":
            try:
                self.graph = RNGraph.from_spec(cfg.graph, self.n_agents, defaults={"phi": cfg.phi},
                                               periods=cfg.period_list)
            except GraphError as err:
                raise GraphError(f"--graph {cfg.graph!r} with {self.n_agents} agents: {err}") from None
        self.env = self._wrap(base)
        self.eval_env = self._wrap(self._env_fn(cfg.eval_envs, cfg.seed + 1))
        self.policy, self.loss = self._build_models(self.env)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=cfg.lr)
        self._buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch, device=self.device),
                                    sampler=SamplerWithoutReplacement(), batch_size=cfg.minibatch_size)
        self.iteration = 0
        self.frames = 0
        self.history: list[dict[str, float]] = []
        # every random generator at the start of the next iteration: what a checkpoint saves
        self._rng: dict[str, Any] = GlobalRNGState().state_dict()

    # ------------------------------------------------------------------ construction
    def _wrap(self, env: EnvBase) -> TransformedEnv:
        if not isinstance(env, TransformedEnv):  # appended, not nested: TorchRL warns when it unwraps nested ones
            env = TransformedEnv(env)
        if self.graph is not None:
            env.append_transform(LevelEnv(self.graph))
        env.append_transform(RewardSum(in_keys=[("agents", "reward")], out_keys=[("agents", "episode_reward")]))
        return env

    def _build_models(self, env: EnvBase) -> tuple[nn.Module, nn.Module]:
        cfg = self.config
        if cfg.algo == "rn":
            self.composer = GraphComposer(
                self.graph, env, num_cells=cfg.num_cells, manager_cells=cfg.manager_cells,
                share_params=cfg.share_params, critic=cfg.critic,
                detach_messages=cfg.detach_messages, observe_clock=cfg.observe_clock, device=self.device,
            )
            loss = RNLoss(
                self.composer, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                normalize_advantage=cfg.normalize_advantage, gamma=cfg.gamma, lmbda=cfg.lmbda, beta=cfg.beta,
                neighbourhood=cfg.neighbourhood,
            )
            return self.composer.policy, loss
        # TorchRL's own MAPPO / IPPO, as in its multi-agent PPO tutorial; the actor head is VertexGroup's
        obs = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
        n = self.n_agents

        def mlp(n_out: int, centralized: bool) -> MultiAgentMLP:
            return MultiAgentMLP(obs, n_out, n_agents=n, centralized=centralized, share_params=cfg.share_params,
                                 depth=2, num_cells=cfg.num_cells, activation_class=nn.Tanh, device=self.device)

        policy = actor_head(env.full_action_spec_unbatched["agents", "action"],
                            lambda n_out, *head: nn.Sequential(mlp(n_out, False), *head),
                            [("agents", "observation")], "agents", device=self.device)
        critic = TensorDictModule(mlp(1, cfg.algo == "mappo"), [("agents", "observation")], [("agents", "state_value")])
        loss_cls = MAPPOLoss if cfg.algo == "mappo" else IPPOLoss
        loss = loss_cls(policy, critic, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                        normalize_advantage=cfg.normalize_advantage)
        # per-agent done flags where the env has them (PettingZoo), else the team's: MultiAgentGAE broadcasts those
        done_keys = {key: ("agents", key) if ("agents", key) in env.done_keys else key
                     for key in ("done", "terminated")}
        loss.set_keys(reward=("agents", "reward"), action=("agents", "action"),
                      sample_log_prob=("agents", "action_log_prob"), value=("agents", "state_value"), **done_keys)
        loss.make_value_estimator(gamma=cfg.gamma, lmbda=cfg.lmbda)
        return policy, loss

    # ------------------------------------------------------------------ training
    def _advantage(self, data: TensorDictBase) -> None:
        if self.config.algo != "rn":
            self.loss.value_estimator(data, params=self.loss.critic_network_params,
                                      target_params=self.loss.target_critic_network_params)
        else:
            self.loss.value_estimator(data)

    def _loss_value(self, batch: TensorDictBase) -> torch.Tensor:
        out = self.loss(batch)
        if "loss" in out.keys():
            return out["loss"]
        return sum(v for k, v in out.items() if k.startswith("loss_"))

    def make_collector(self, total_frames: int = -1) -> Collector:
        """A stock :class:`~torchrl.collectors.Collector` of this run's env and policy."""
        # our policies are not recurrent: no InitTracker/primer for torchrl to add (and no FutureWarning about it)
        return Collector(self.env, self.policy, frames_per_batch=self.config.frames_per_batch,
                         total_frames=total_frames, device=self.device, auto_register_policy_transforms=False)

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

    def _start_iteration(self, collector: Collector) -> None:
        """Envs reseeded from ``(seed, iteration)`` and reset, buffer emptied: the same start in a fresh or resumed run.

        The global generators are left as they were, so the policy's sampling continues the checkpointed stream.
        """
        seed = int(np.random.SeedSequence([self.config.seed, self.iteration]).generate_state(1)[0])
        with _isolated_rng():
            collector.set_seed(seed)
            collector.reset()
        self._buffer.empty()

    def _prepare_folder(self, run_dir: Path) -> None:
        """Creates the run folder (``force``: first removes the old run's files) and writes ``config.json``."""
        if self._force:
            for name in RUN_FILES:
                path = run_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
            self._force = False
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "config.json.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self.config), indent=2, default=str))
        os.replace(tmp, run_dir / "config.json")

    def train(self) -> list[dict[str, float]]:
        """Runs until ``config.frames`` frames have been collected; returns the per-iteration metrics.

        On ``KeyboardInterrupt`` the checkpoint of the last finished iteration stays on disk, the curves are plotted,
        and the interrupt propagates (``rn train`` turns it into one line with the resume command).
        """
        cfg = self.config
        run_dir = cfg.run_dir
        self._prepare_folder(run_dir)
        remaining = cfg.frames - self.frames
        if remaining <= 0:
            return self.history
        self.save(run_dir / CHECKPOINT)  # resumable from the first iteration on, even if killed during it
        logger = None
        if cfg.logger:
            logger = get_logger(cfg.logger, logger_name=str(run_dir / "logs"), experiment_name="run")
        collector = self.make_collector(-(-remaining // cfg.frames_per_batch) * cfg.frames_per_batch)
        GlobalRNGState().load_state_dict(self._rng)  # building the collector may have drawn random numbers
        bar = tqdm(total=cfg.frames, initial=self.frames, unit="frames", disable=not self.progress,
                   desc=f"{cfg.task} {cfg.algo}")
        start = time.perf_counter()
        try:
            self._start_iteration(collector)
            for data in collector:
                t0 = time.perf_counter()
                loss = self.update(data)
                collector.update_policy_weights_()
                self.iteration += 1
                self.frames += data.numel()
                row = {"iteration": self.iteration, "frames": self.frames, "train_return": _episode_return(data),
                       "loss": loss, "train_seconds": time.perf_counter() - t0,
                       "wall_seconds": time.perf_counter() - start}
                if self.iteration % cfg.eval_every == 0 or self.frames >= cfg.frames:
                    row["eval_return"] = self.evaluate()
                self.history.append(row)
                self._rng = GlobalRNGState().state_dict()
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
                self._start_iteration(collector)
        finally:
            bar.close()
            collector.shutdown()
            if self.history:
                plot_curves(self.history, run_dir / "curve.png", title=f"{cfg.task} {cfg.algo}")
        return self.history

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean return of one deterministic episode per eval env (reward summed until the first done).

        The eval envs are reseeded each time (the same episodes at every evaluation), and the random generators are
        left as they were: evaluating does not change the course of training.
        """
        with _isolated_rng(), set_exploration_type(ExplorationType.DETERMINISTIC):
            self.eval_env.set_seed(self.config.seed + 1)
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
        """Everything a run needs to continue exactly, as tensors and plain containers (``weights_only`` loadable)."""
        return {"format": FORMAT, "config": dataclasses.asdict(self.config), "iteration": self.iteration,
                "frames": self.frames, "loss": self.loss.state_dict(), "optimizer": self.optimizer.state_dict(),
                "history": self.history, "rng": self._rng}

    def save(self, path: str | Path) -> None:
        """Writes a checkpoint atomically: a crash mid-write leaves the previous one intact."""
        atomic_save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Restores parameters, optimiser, counters, history and random state from a checkpoint of the same config."""
        state = load_checkpoint(path)
        try:
            self.loss.load_state_dict(state["loss"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.iteration, self.frames, self.history = state["iteration"], state["frames"], state["history"]
            self._rng = state["rng"]
            GlobalRNGState().load_state_dict(self._rng)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{str(path)!r} does not fit its own configuration ({type(err).__name__}).") from None

    @classmethod
    def resume(cls, path: str | Path, *, frames: int | None = None, settings: dict[str, Any] | None = None,
               **kwargs) -> RNTrainer:
        """A trainer rebuilt from a checkpoint's config and state, writing into the checkpoint's folder.

        Args:
            path: a checkpoint file or a run folder.

        Keyword Args:
            frames (int, optional): a new frame budget (the only setting a resumed run may change).
            settings (dict, optional): other settings given with the resume (e.g. from the command line); each must
                equal the checkpoint's, otherwise a :class:`ValueError` names it.
            **kwargs: :class:`RNTrainer`'s keyword arguments (``env_fn``, ``progress``).
        """
        state = load_checkpoint(path)
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        config = dict(state["config"])
        for name, value in (settings or {}).items():
            if name == "out":
                if Path(value).resolve() != folder.resolve():
                    raise ValueError(f"--out {value!r} with --resume: a resumed run writes into its own folder "
                                     f"{str(folder)!r}.")
            elif name in RESUMABLE:
                frames = value if frames is None else frames
            elif name not in config:
                raise ValueError(f"--{name.replace('_', '-')} cannot be given with --resume.")
            elif value != config[name]:
                flag, changeable = "--" + name.replace("_", "-"), ", ".join("--" + r for r in RESUMABLE)
                raise ValueError(f"{flag} {value!r} differs from the checkpoint's {config[name]!r}: --resume "
                                 f"continues a run as configured (only {changeable} can change).")
        if frames is not None:
            config["frames"] = frames
        config["out"] = str(folder)  # where the run lives now, even if it was copied or started without --out
        try:
            config = TrainConfig(**config)
        except TypeError as err:
            raise CheckpointError(f"{str(path)!r} holds a configuration this torchrl-rn cannot read ({err}).") from None
        trainer = cls(config, _resuming=True, **kwargs)
        trainer.load(path)
        return trainer


@contextlib.contextmanager
def _isolated_rng() -> Iterator[None]:
    """Runs a block without changing any global random generator (python, numpy, torch CPU and CUDA)."""
    state = GlobalRNGState().state_dict()
    try:
        yield
    finally:
        GlobalRNGState().load_state_dict(state)


def _holds_run(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()] if folder.is_dir() else []


def _refuse_existing_run(folder: Path) -> None:
    if found := _holds_run(folder):
        raise ValueError(f"--out {str(folder)!r} already holds a run ({', '.join(found)}); continue it with "
                         f"'rn train --resume {folder}', or pass --force to replace it.")


def _free_folder(folder: Path) -> Path:
    """``folder`` if it holds no run, else ``folder`` with a timestamp (and a counter if that is taken too)."""
    if not _holds_run(folder):
        return folder
    stamped = folder.with_name(f"{folder.name}_{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, k = stamped, 1
    while candidate.exists():
        k += 1
        candidate = stamped.with_name(f"{stamped.name}-{k}")
    return candidate


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
