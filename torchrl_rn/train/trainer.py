"""``RNTrainer`` and the ``rn`` command line: train an RN graph, or TorchRL's MAPPO/IPPO, with one pipeline.

The pipeline is TorchRL's multi-agent PPO recipe (its MAPPO tutorial): a :class:`~torchrl.collectors.Collector`, a
:class:`~torchrl.data.ReplayBuffer` sampled without replacement, a PPO loss, Adam and gradient clipping. Only the
policy, critic, loss and value estimator change with ``algo``:

* ``rn``: the graph from ``--graph`` composed by :class:`GraphComposer`, env wrapped in :class:`LevelEnv`,
  :class:`RNLoss` with :class:`GraphGAE`;
* ``mappo`` / ``ippo``: ``MultiAgentMLP`` actor and critic (centralised for MAPPO), TorchRL's
  :class:`~torchrl.objectives.multiagent.MAPPOLoss` / :class:`~torchrl.objectives.multiagent.IPPOLoss`.

A run writes ``config.yaml`` (and the same as ``config.json``), ``metrics.csv`` (one row per iteration: returns,
loss and the PPO diagnostics of every group, see :mod:`~torchrl_rn.train.diagnostics`), ``curve.png`` and
``checkpoint.pt`` (written atomically before the first iteration and after every one; ``--resume`` continues from it)
into its output folder. ``metrics.csv`` is the run's one CSV, rewritten from the checkpoint's history so a resumed
run never duplicates a row; ``logger`` adds one of TorchRL's loggers (``tensorboard``, ``wandb``, ...; none by
default) that receives the same scalars under the same names.

No run is lost: a folder that holds a run (any of its files) is refused unless ``force=True`` (``--force``), which
removes that run's files, and only once training starts; a run without ``out`` goes to
``results/<task>_<method>_seed<seed>``, or, when that folder is taken, to the same name with a timestamp.
A resumed run writes into the folder of its checkpoint.

Runs resume exactly: every iteration starts from a state that depends only on the checkpointed state, whether or
not the process was restarted in between. Before each batch, the envs are reseeded from ``(seed, iteration)`` and
reset, and the replay buffer is emptied; every random generator (python, numpy, torch CPU and CUDA) is saved in the
checkpoint; evaluation reseeds its envs and leaves the generators as it found them. So a run killed at any point and
resumed gives the same metrics as one never interrupted. (An episode still running when a batch ends is cut there;
GAE bootstraps it from the value of its last observation, as for a truncation.)
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.checkpoint import GlobalRNGState
from torchrl.collectors import BaseCollector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP, PopArtValueNorm
from torchrl.objectives.multiagent import IPPOLoss, MAPPOLoss
from torchrl.record.loggers import get_logger
from tqdm.auto import tqdm

from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.modules import DirectModule, GraphComposer, actor_head
from torchrl_rn.objectives import RNLoss
from torchrl_rn.train.checkpoint import CHECKPOINT, FORMAT, CheckpointError, atomic_save, load_checkpoint
from torchrl_rn.train.collection import make_collector, task_env_fn, wrap_env
from torchrl_rn.train.config import TrainConfig, _check_writable, device_problem
from torchrl_rn.train.diagnostics import MeanOver, loss_scalars
from torchrl_rn.train.plots import plot_curves
from torchrl_rn.value_norm import Denormalize

__all__ = ["RNTrainer", "RESUMABLE", "NonFiniteError"]

#: the files of a run in its folder (``--force`` removes exactly these before a new run starts there)
RUN_FILES = (CHECKPOINT, "config.json", "config.yaml", "metrics.csv", "curve.png", "logs")
#: settings ``--resume`` can change; any other given setting must equal the checkpoint's
RESUMABLE = ("frames",)


class DeviceFallbackWarning(UserWarning):
    """A read-only trainer (``rn eval``, ``rn show``) runs on the CPU because this machine lacks the run's device."""


class NonFiniteError(RuntimeError):
    """A NaN or inf in a batch's rewards or observations, or in a loss: the run stops before the optimiser step, and
    its folder keeps the checkpoint of the last good iteration."""


class RNTrainer:
    """Trains one run of :class:`TrainConfig` with stock TorchRL pieces.

    Args:
        config (TrainConfig): the run.

    Keyword Args:
        env_fn (callable, optional): ``env_fn(num_envs, seed) -> EnvBase`` replacing the task factory (for custom or
            mock envs); the env's agents must be in the group ``"agents"``; picklable (no lambda) with ``workers > 1`` or
            ``ray``.
        progress (bool): show a progress bar. Defaults to ``True``.
        force (bool): start even if ``config.out`` holds a run, whose files are then removed when training starts.
            Defaults to ``False``: such a folder is refused with a :class:`ValueError`.

    Raises:
        ValueError: ``config.out`` holds a run and ``force`` is not set; or the task, graph or env is bad
            (:class:`~torchrl_rn.graph.GraphError` for the graph).

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
        if not _resuming:
            _check_writable(config.run_dir)
        self.config = cfg = config
        self.progress = progress
        self._force = force and not _resuming  # remove the old run's files when training starts, not before
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        # picklable: worker processes and Ray actors (``workers``, ``ray``) build their envs with it
        self._env_fn = env_fn or task_env_fn(cfg.task, n_agents=cfg.n_agents, max_steps=cfg.max_steps,
                                             device=cfg.device, continuous_actions=cfg.continuous_actions)
        base = self._env_fn(cfg.num_envs, cfg.seed)
        self.n_agents = base.full_action_spec_unbatched["agents", "action"].shape[0]
        self.graph: RNGraph | None = None
        if cfg.algo == "rn":
            try:
                self.graph = RNGraph.from_spec(cfg.graph, self.n_agents,
                                               defaults={"phi": cfg.phi, "instruct": cfg.instruct},
                                               periods=cfg.period_list, vertex_reward=cfg.vertex_reward)
            except GraphError as err:
                raise GraphError(f"--graph {cfg.graph!r} with {self.n_agents} agents: {err}") from None
        self.env = self._wrap(base)
        self.eval_env = self._wrap(self._env_fn(cfg.eval_envs, cfg.seed + 1))
        self.policy, self.loss = self._build_models(self.env)
        # foreach: one fused call per step instead of a Python loop over parameters (torch's default on CPU is the
        # loop, whose cost grows with an RN's extra parameter tensors); the same update
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=cfg.lr, foreach=True)
        self._trainable = [p for p in self.loss.parameters() if p.requires_grad]
        self._buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch, device=self.device),
                                    sampler=SamplerWithoutReplacement(), batch_size=cfg.minibatch_size)
        self.iteration = 0
        self.frames = 0
        self.history: list[dict[str, float]] = []
        # every random generator at the start of the next iteration: what a checkpoint saves
        self._rng: dict[str, Any] = GlobalRNGState().state_dict()

    # ------------------------------------------------------------------ construction
    def _wrap(self, env: EnvBase) -> TransformedEnv:
        return wrap_env(env, self.graph)

    def _build_models(self, env: EnvBase) -> tuple[nn.Module, nn.Module]:
        cfg = self.config
        if cfg.algo == "rn":
            self.composer = GraphComposer(
                self.graph, env, num_cells=cfg.num_cells, manager_cells=cfg.manager_cells,
                share_params=cfg.share_params, critic=cfg.critic_setting,
                detach_messages=cfg.detach_messages, observe_clock=cfg.observe_clock, value_norm=cfg.value_norm,
                device=self.device,
            )
            loss = RNLoss(
                self.composer, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                normalize_advantage=cfg.normalize_advantage, gamma=cfg.gamma, lmbda=cfg.lmbda, beta=cfg.beta,
                neighbourhood=cfg.neighbourhood,
            )
            if cfg.goal_warmup and not self.composer.goal_warmup(False):
                raise ValueError(f"--goal-warmup {cfg.goal_warmup}: no vertex of --graph {cfg.graph!r} is trained on a "
                                 "goal reward (give one with --vertex-reward goal:...).")
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
        value_norm = PopArtValueNorm(shape=1, device=self.device) if cfg.value_norm else None
        value_net = mlp(1, cfg.algo == "mappo")
        if value_norm is not None:  # the network predicts normalised values; GAE sees them on the return scale
            value_net = Denormalize(value_net, value_norm)
        critic = DirectModule(value_net, [("agents", "observation")], [("agents", "state_value")])
        loss_cls = MAPPOLoss if cfg.algo == "mappo" else IPPOLoss
        loss = loss_cls(policy, critic, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                        normalize_advantage=cfg.normalize_advantage, value_norm=value_norm)
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

    @property
    def _unread_keys(self) -> list:
        """What the loss does not read once the advantages are in the batch, left out of the replay buffer (fewer
        entries to store and index per minibatch): the ``"next"`` step (read by the value estimator only), the
        collector's trajectory ids, the policies' distribution parameters and, for RN, the bottom-up pass's outputs
        (the loss recomputes both with gradients)."""
        if getattr(self, "_unread", None) is None:
            actors = ([self.composer.actor(g) for g in self.graph.groups] if self.config.algo == "rn"
                      else [self.policy])
            keys = ["next", ("collector", "traj_ids"), *(k for a in actors for k in a.module[0].out_keys)]
            if self.config.algo == "rn":
                keys += self.composer.messages.out_keys
            self._unread = list(dict.fromkeys(keys))
        return self._unread

    def _loss_value(self, batch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        out = self.loss(batch)
        if "loss" in out.keys():
            return out["loss"], out
        return sum(v for k, v in out.items() if k.startswith("loss_")), out

    def make_collector(self, total_frames: int = -1) -> BaseCollector:
        """The run's TorchRL collector (:func:`~torchrl_rn.train.collection.make_collector`): a
        :class:`~torchrl.collectors.Collector` in this process, :class:`~torchrl.collectors.MultiSyncCollector` with
        ``config.workers`` processes, or TorchRL's ``RayCollector`` with ``config.ray``; its batches have the same
        ``[num_envs, max_steps]`` shape either way."""
        cfg = self.config
        return make_collector(self._env_fn, self.policy, graph=self.graph, num_envs=cfg.num_envs,
                              frames_per_batch=cfg.frames_per_batch, total_frames=total_frames, workers=cfg.workers,
                              ray=cfg.ray, seed=cfg.seed, device=self.device, env=self.env)

    def update(self, data: TensorDictBase) -> dict[str, float]:
        """One PPO update on a collected batch: advantages, then ``epochs`` passes of minibatches.

        Returns the iteration's diagnostics, each the mean over its minibatches: ``loss`` (the total),
        ``grad_norm`` (global, before clipping), and every scalar the loss reports per group as
        ``"<group>/<name>"`` (``loss_objective``, ``loss_critic``, ``loss_entropy``, ``kl_approx``, ``clip_fraction``,
        ``entropy``, ``explained_variance``, ``ESS``, ... as far as the loss computes them; see
        :data:`~torchrl_rn.train.diagnostics.COLUMNS_DOC`) and, for RN, each group's own ``grad_norm``.
        """
        cfg = self.config
        self._check_batch(data)
        with torch.no_grad():
            self._advantage(data)
        self._buffer.extend(data.exclude(*self._unread_keys).reshape(-1))
        group_params = self._group_parameters()
        stats = MeanOver()
        for _ in range(cfg.epochs):
            for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
                loss, out = self._loss_value(self._buffer.sample())
                row = loss_scalars(out, default_group=self._agent_group)
                row["loss"] = float(loss.detach())
                if not math.isfinite(row["loss"]):
                    culprits = [k for k, v in row.items() if k != "loss" and not math.isfinite(v)] or ["loss"]
                    self._stop(f"the loss is {row['loss']} ({', '.join(culprits)})")
                loss.backward()
                row.update(_clip_gradients(self._trainable, group_params, cfg.max_grad_norm))
                stats.add(row)
                self.optimizer.step()
                self.optimizer.zero_grad()
        return stats.mean()

    def _check_batch(self, data: TensorDictBase) -> None:
        """Stops the run if a reward or observation of the batch is NaN or inf, naming its group."""
        for key, value in data.items(include_nested=True, leaves_only=True):
            key = key if isinstance(key, tuple) else (key,)
            if key[-1] in ("reward", "observation") and value.is_floating_point() and not value.isfinite().all():
                where = [k for k in key[:-1] if k != "next"]
                group = f"group {where[-1]!r}" if where else "the team (root)"
                self._stop(f"the collected batch holds NaN or inf in {group}'s {key[-1]} {key}")

    def _stop(self, what: str) -> None:
        raise NonFiniteError(f"iteration {self.iteration + 1}: {what}; the run stopped before updating, and "
                             f"{self.config.run_dir} keeps its last good checkpoint (iteration {self.iteration}).")

    @property
    def _agent_group(self) -> str:
        return self.graph.env_group if self.graph is not None else "agents"

    def _group_parameters(self) -> dict[str, list[torch.Tensor]]:
        """Each RN group's own parameters (its actor and value head), for per-group gradient norms."""
        if self.config.algo != "rn":
            return {}
        return {g: [p for p in loss.parameters() if p.requires_grad] for g, loss in self.loss.group_losses.items()}

    def _start_iteration(self, collector: BaseCollector) -> None:
        """Envs reseeded from ``(seed, iteration)`` and reset, buffer emptied: the same start in a fresh or resumed run.

        With ``goal_warmup``, the goal warm-up is on for the iterations that start before that many frames (set here,
        before the batch is collected, and pushed to collector workers with the weights).

        The global generators are left as they were, so the policy's sampling continues the checkpointed stream.
        TorchRL's ``RayCollector`` has no ``reset()``: with ``ray``, its remote envs are reseeded but their episodes
        run on across batches, so a resumed Ray run is not bit-identical to an uninterrupted one.
        """
        warm = self.frames < self.config.goal_warmup
        if self.config.goal_warmup and bool(self.composer.warming_up) != warm:  # pushed only when it changes
            self.composer.goal_warmup(warm)
            collector.update_policy_weights_()
        seed = int(np.random.SeedSequence([self.config.seed, self.iteration]).generate_state(1)[0])
        with _isolated_rng():
            collector.set_seed(seed)
            if hasattr(collector, "reset"):
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
        tmp = run_dir / "config.yaml.tmp"
        self.config.to_yaml(tmp)  # the config this run ran: `rn train --config` runs it again
        os.replace(tmp, run_dir / "config.yaml")

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
                diagnostics = self.update(data)
                collector.update_policy_weights_()
                self.iteration += 1
                self.frames += data.numel()
                row = {"iteration": self.iteration, "frames": self.frames, "train_return": _episode_return(data),
                       **diagnostics, "train_seconds": time.perf_counter() - t0,
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
                postfix = {"train_ret": f"{row['train_return']:.2f}"}  # stochastic policy, episodes ended in batch
                last_eval = next((r["eval_return"] for r in reversed(self.history) if "eval_return" in r), None)
                if last_eval is not None:
                    postfix["eval_ret"] = f"{last_eval:.2f}"  # deterministic policy, eval envs
                bar.set_postfix(postfix)
                if self.frames >= cfg.frames:
                    break
                self._start_iteration(collector)
        finally:
            bar.close()
            collector.shutdown()
            if self.history:
                plot_curves(self.history, run_dir / "curve.png", title=f"{cfg.task} {cfg.algo}")
        return self.history

    def close(self) -> None:
        """Closes the run's envs (training and evaluation); do not train or evaluate with the trainer after it.

        :meth:`train` closes the training env when it ends (the collector's shutdown); a trainer that is built but
        never trained (e.g. resumed only to read its state) holds both envs until closed.
        """
        for env in (self.env, self.eval_env):
            env.close()

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
        fields = ["iteration", "frames", "train_return", "eval_return", "loss", "grad_norm"]
        extra = {k for row in self.history for k in row} - {*fields, "train_seconds", "wall_seconds"}
        fields += sorted(extra) + ["train_seconds", "wall_seconds"]  # the per-group diagnostics, "<group>/<name>"
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
            self._rng = _rng_for_here(state["rng"])
            GlobalRNGState().load_state_dict(self._rng)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{str(path)!r} does not fit its own configuration ({type(err).__name__}).") from None

    @classmethod
    def resume(cls, path: str | Path, *, frames: int | None = None, settings: dict[str, Any] | None = None,
               read_only: bool = False, device: str | None = None, **kwargs) -> RNTrainer:
        """A trainer rebuilt from a checkpoint's config and state, writing into the checkpoint's folder.

        Args:
            path: a checkpoint file or a run folder.

        Keyword Args:
            frames (int, optional): a new frame budget (the only setting a resumed run may change).
            settings (dict, optional): other settings given with the resume (e.g. from the command line); each must
                equal the checkpoint's, otherwise a :class:`ValueError` names it.
            read_only (bool): the trainer will not train (e.g. ``rn eval``): its folder need not be writable.
            device (str, optional): where a read-only trainer runs (e.g. ``"cpu"`` for a run trained on a GPU).
                Default: the run's own device, or the CPU where this machine lacks it. A trainer that trains
                continues on the run's device.
            **kwargs: :class:`RNTrainer`'s keyword arguments (``env_fn``, ``progress``).
        """
        state = load_checkpoint(path)
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        config = dict(state["config"])
        recorded = str(config.get("device", "cpu"))
        if read_only:
            config["device"] = device if device is not None else (recorded if device_problem(recorded) is None else "cpu")
            if device is None and config["device"] != recorded:
                warnings.warn(f"{str(path)!r} was trained on {recorded!r}, which this machine lacks: it runs on the "
                              "CPU here (--device chooses).", DeviceFallbackWarning, stacklevel=2)
        elif device is not None:
            raise ValueError("a resumed run trains on its own device; device= applies to read-only trainers only.")
        elif device_problem(recorded) is not None:
            raise ValueError(f"{str(path)!r} was trained on {recorded!r}, which this machine lacks: resume it where "
                             f"{recorded!r} is available, or evaluate it here with 'rn eval' (it falls back to the CPU).")
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
        if not read_only:
            _check_writable(config.run_dir)
        trainer = cls(config, _resuming=True, **kwargs)
        trainer.load(path)
        return trainer


def _rng_for_here(rng: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's random state without the generators of accelerators this machine lacks (a run trained on a GPU,
    read on a CPU machine): ``GlobalRNGState`` refuses to load those."""
    missing = {"torch_cuda": not torch.cuda.is_available(), "torch_mps": not torch.backends.mps.is_available(),
               "torch_xpu": not (hasattr(torch, "xpu") and torch.xpu.is_available())}
    return {key: value for key, value in rng.items() if not missing.get(key, False)}


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


def _clip_gradients(params: list[torch.Tensor], groups: dict[str, list[torch.Tensor]],
                    max_norm: float) -> dict[str, float]:
    """Clips the gradients of ``params`` to a global norm of ``max_norm`` as ``clip_grad_norm_`` does, and returns
    that norm before clipping (``grad_norm``) with each group's own (``<group>/grad_norm``), all from one pass of
    per-tensor norms.

    Examples:
        >>> a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
        >>> a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
        >>> _clip_gradients([a, b], {"agents": [a], "level1": [b]}, max_norm=1.0)
        {'agents/grad_norm': 3.0, 'level1/grad_norm': 4.0, 'grad_norm': 5.0}
        >>> a.grad  # scaled by 1 / 5
        tensor([0.6000, 0.0000])
    """
    with_grad = [p for p in params if p.grad is not None]
    norms = torch._foreach_norm([p.grad for p in with_grad]) if with_grad else []
    norm_of = {id(p): n for p, n in zip(with_grad, norms)}
    row = {}
    for g, members in groups.items():
        own = [norm_of[id(p)] for p in members if id(p) in norm_of]
        row[f"{g}/grad_norm"] = float(torch.linalg.vector_norm(torch.stack(own))) if own else 0.0
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
    if with_grad:
        torch.nn.utils.clip_grads_with_norm_(with_grad, max_norm, total, foreach=True)
    row["grad_norm"] = float(total)
    return row


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
