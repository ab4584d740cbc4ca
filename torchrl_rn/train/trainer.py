"""``RNTrainer``: train an RN graph, or TorchRL's MAPPO/IPPO, with one pipeline (the loop only).

The pipeline is TorchRL's multi-agent PPO recipe (its MAPPO tutorial): a collector, a replay buffer sampled without
replacement, a PPO loss, Adam and gradient clipping; the policy, critic, loss and estimator come from one builder per
``algo`` (:mod:`~torchrl_rn.train.algorithms`), and where a run writes is :mod:`~torchrl_rn.train.run`'s policy.

A run writes ``config.yaml`` (and the same as ``config.json``), ``metrics.csv`` (one row per iteration: returns,
loss and the PPO diagnostics of every group, see :mod:`~torchrl_rn.train.diagnostics`), ``curve.png`` and
``checkpoint.pt`` (written atomically before the first iteration and after every one; ``--resume`` continues from it)
into its output folder. ``metrics.csv`` is the run's one CSV, rewritten from the checkpoint's history so a resumed
run never duplicates a row; ``logger`` adds one of TorchRL's loggers (``tensorboard``, ``wandb``, ...; none by
default) that receives the same scalars under the same names.

Runs resume exactly: every iteration starts from a state that depends only on the checkpointed state, whether or
not the process was restarted in between. Before each batch, the envs are reseeded from ``(seed, iteration)`` and
reset, and the replay buffer is emptied; every random generator (python, numpy, torch CPU and CUDA) is saved in the
checkpoint; evaluation reseeds its envs and leaves the generators as it found them. So a run killed at any point and
resumed gives the same metrics as one never interrupted. (An episode still running when a batch ends is cut there;
GAE bootstraps it from the value of its last observation, as for a truncation.)
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.checkpoint import GlobalRNGState
from torchrl.collectors import BaseCollector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.record.loggers import get_logger
from tqdm.auto import tqdm

from torchrl_rn.graph import RNGraph
from torchrl_rn.modules.influence import group_influence
from torchrl_rn.train import run
from torchrl_rn.train.algorithms import Models, build_models, make_graph
from torchrl_rn.train.checkpoint import (CHECKPOINT, FORMAT, CheckpointError, atomic_save, isolated_rng,
                                         load_checkpoint, rng_for_here)
from torchrl_rn.train.collection import make_collector, task_env_fn, wrap_env
from torchrl_rn.train.config import TrainConfig
from torchrl_rn.train.diagnostics import MeanOver, loss_scalars, nonfinite_entry, write_metrics
from torchrl_rn.train.episodes import ended_episode_return, episode_returns
from torchrl_rn.train.plots import plot_curves
from torchrl_rn.train.run import RESUMABLE, RUN_FILES, DeviceFallbackWarning

__all__ = ["RNTrainer", "RESUMABLE", "RUN_FILES", "NonFiniteError", "DeviceFallbackWarning"]


class NonFiniteError(RuntimeError):
    """A NaN or inf in a batch's rewards or observations, or in a loss: the run stops before the optimiser step, and
    its folder keeps the checkpoint of the last good iteration."""


class RNTrainer:
    """Trains one run of :class:`TrainConfig` with stock TorchRL pieces.

    Args:
        config (TrainConfig): the run.

    Keyword Args:
        env_fn (callable, optional): ``env_fn(num_envs, seed) -> EnvBase`` replacing the task factory (for custom or
            mock envs); the env's agents must be in the group ``"agents"``; picklable (no lambda) with ``workers > 1``
            or ``ray``.
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
            config = dataclasses.replace(config, out=str(run.free_folder(config.run_dir)))
        elif not (force or _resuming):
            run.refuse_existing_run(config.run_dir)
        if not _resuming:
            run.check_writable(config.run_dir)
        self.config = cfg = config
        self.progress = progress
        self._force = force and not _resuming  # move the old run's files aside when training starts, not before
        self._lock = run.RunLock(self.config.run_dir)
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        # picklable: worker processes and Ray actors (``workers``, ``ray``) build their envs with it
        self._env_fn = env_fn or task_env_fn(cfg.task, n_agents=cfg.n_agents, max_steps=cfg.max_steps,
                                             device=cfg.device, continuous_actions=cfg.continuous_actions)
        base = self._env_fn(cfg.num_envs, cfg.seed)
        self.n_agents = base.full_action_spec_unbatched["agents", "action"].shape[0]
        self.graph: RNGraph | None = make_graph(cfg, self.n_agents)
        self.config = cfg = run.self_contained(cfg)  # a graph file's graph, stored in the run's config and checkpoint
        self.env = self._wrap(base)
        self.eval_env = self._wrap(self._env_fn(cfg.eval_envs, cfg.seed + 1))
        #: the algorithm's policy, loss and value estimator (:mod:`~torchrl_rn.train.algorithms`)
        self.models: Models = build_models(cfg, self.env, self.graph, device=self.device)
        self.policy, self.loss = self.models.policy, self.models.loss
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

    @property
    def composer(self):
        """The RN graph's :class:`~torchrl_rn.GraphComposer` (``None`` for MAPPO/IPPO)."""
        return self.models.composer

    # ------------------------------------------------------------------ training
    def _advantage(self, data: TensorDictBase) -> None:
        self.models.advantage(data)

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
        if (problem := nonfinite_entry(data)) is not None:
            self._stop(problem)
        with torch.no_grad():
            self._advantage(data)
        # what the loss does not read once the advantages are in the batch stays out of the replay buffer
        self._buffer.extend(data.exclude(*self.models.unread_keys).reshape(-1))
        group_params = self.models.group_parameters()  # each RN group's own, for per-group gradient norms
        stats = MeanOver()
        for _ in range(cfg.epochs):
            for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
                loss, out = self._loss_value(self._buffer.sample())
                row = loss_scalars(out, default_group=self.models.agent_group)
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

    def _stop(self, what: str) -> None:
        raise NonFiniteError(f"iteration {self.iteration + 1}: {what}; the run stopped before updating, and "
                             f"{self.config.run_dir} keeps its last good checkpoint (iteration {self.iteration}).")

    def _start_iteration(self, collector: BaseCollector) -> None:
        """Envs reseeded from ``(seed, iteration)`` and reset, buffer emptied: the same start in a fresh or resumed run.

        With ``goal_warmup``, the goal warm-up is on for the iterations that start before that many frames (set here,
        before the batch is collected, and pushed to collector workers with the weights).

        The global generators are left as they were, so the policy's sampling continues the checkpointed stream.
        TorchRL's ``RayCollector`` has no ``reset()``: with ``ray``, its remote envs are reseeded but their episodes
        run on across batches, so a resumed Ray run is not bit-identical to an uninterrupted one.
        """
        warm = self.frames < self.config.goal_warmup
        if self.config.goal_warmup and self.models.goal_warmup(warm):  # pushed only when it changes
            collector.update_policy_weights_()
        seed = int(np.random.SeedSequence([self.config.seed, self.iteration]).generate_state(1)[0])
        with isolated_rng():
            collector.set_seed(seed)
            if hasattr(collector, "reset"):
                collector.reset()
        self._buffer.empty()

    def claim(self) -> None:
        """Locks the run folder (:class:`~torchrl_rn.train.run.RunLock`) until :meth:`train` ends, which claims it
        too; raises :class:`~torchrl_rn.train.run.RunInUse` where another live run holds it."""
        self._lock.acquire()

    def _prepare_folder(self, run_dir: Path) -> None:
        """Creates the run folder (``force``: first moves the old run's files aside) and writes its config files."""
        run.prepare_folder(run_dir, self.config, force=self._force)
        self._force = False

    def train(self) -> list[dict[str, float]]:
        """Runs until ``config.frames`` frames have been collected; returns the per-iteration metrics.

        On ``KeyboardInterrupt`` the checkpoint of the last finished iteration stays on disk, the curves are plotted,
        and the interrupt propagates (``rn train`` turns it into one line with the resume command).
        """
        cfg = self.config
        run_dir = cfg.run_dir
        self.claim()
        try:
            return self._train(cfg, run_dir)
        finally:
            self._lock.release()

    def _train(self, cfg: TrainConfig, run_dir: Path) -> list[dict[str, float]]:
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
                row = {"iteration": self.iteration, "frames": self.frames, "train_return": ended_episode_return(data),
                       **diagnostics, "train_seconds": time.perf_counter() - t0,
                       "wall_seconds": time.perf_counter() - start}
                if self.iteration % cfg.eval_every == 0 or self.frames >= cfg.frames:
                    row["eval_return"], influence = self._evaluate()
                    row.update({f"{g}/influence": value for g, value in influence.items()})
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
        return self._evaluate(influence=False)[0]

    @torch.no_grad()
    def _evaluate(self, *, influence: bool = True) -> tuple[float, dict[str, float]]:
        """:meth:`evaluate`'s return, and each manager group's influence (:func:`~torchrl_rn.modules.influence.
        group_influence`) at the states of its episodes (RN only; empty otherwise). Random generators untouched."""
        with isolated_rng():
            with set_exploration_type(ExplorationType.DETERMINISTIC):
                self.eval_env.set_seed(self.config.seed + 1)
                td = self.eval_env.rollout(self.config.max_steps, self.policy, break_when_any_done=False)
            composer = self.composer if influence else None
            measured = group_influence(composer, td.exclude("next").reshape(-1)) if composer is not None else {}
        return episode_returns(td).mean().item(), measured

    # ------------------------------------------------------------------ persistence
    def _write_metrics(self, run_dir: Path) -> None:
        write_metrics(self.history, run_dir / "metrics.csv")

    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue exactly, as tensors and plain containers (``weights_only`` loadable)."""
        return {"format": FORMAT, "config": self.config.to_flat(), "iteration": self.iteration,
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
            self._rng = rng_for_here(state["rng"])
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
        config = run.resumed_config(path, frames=frames, settings=settings, read_only=read_only, device=device)
        trainer = cls(config, _resuming=True, **kwargs)
        trainer.load(path)
        return trainer


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
