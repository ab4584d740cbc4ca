"""Training runs: the ``rn`` command line and :class:`RNTrainer`, one concept per module.

* :mod:`~torchrl_rn.train.config`: :class:`TrainConfig`, every knob of a run, made of the option groups of
  :mod:`~torchrl_rn.train.settings` (:class:`TaskConfig`, :class:`PPOConfig`, :class:`RNConfig`, :class:`RunConfig`);
* :mod:`~torchrl_rn.train.trainer`: :class:`RNTrainer`, TorchRL's multi-agent PPO recipe for RN, MAPPO and IPPO (the
  loop only);
* :mod:`~torchrl_rn.train.algorithms`: one builder per algorithm (RN; TorchRL's MAPPO and IPPO): policy, loss and value
  estimator;
* :mod:`~torchrl_rn.train.run`: the run folder policy (free, ``--force`` or refused; what ``--resume`` may change);
* :mod:`~torchrl_rn.train.checkpoint`: atomic checkpoints and :func:`load_checkpoint`;
* :mod:`~torchrl_rn.train.collection`: the collector, in one process, worker processes or Ray;
* :mod:`~torchrl_rn.train.episodes`: episode returns of a rollout (the one first-episode mask);
* :mod:`~torchrl_rn.train.diagnostics`: the per-group PPO diagnostics of an iteration (``metrics.csv`` columns);
* :mod:`~torchrl_rn.train.stats`: mean and t-based 95% confidence intervals;
* :mod:`~torchrl_rn.train.multiseed`: ``rn train --seeds``, one run per seed and their aggregate;
* :mod:`~torchrl_rn.train.evaluate`: ``rn eval``, a run's return over N episodes, and VMAS GIFs;
* :mod:`~torchrl_rn.train.show`: ``rn show``, the trained network drawn with its vertices' statistics;
* :mod:`~torchrl_rn.train.plots`: the curves of a run and of a multi-seed aggregate;
* :mod:`~torchrl_rn.train.cli`: the ``rn`` command.

Library modules (graph, vertex, composer, level_env, advantage, loss, envs) never import this package. Its names are
loaded on first use: ``from torchrl_rn.train import main`` (the ``rn`` command) loads the command line only.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchrl_rn.train.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
    from torchrl_rn.train.cli import main
    from torchrl_rn.train.config import (ALGOS, GRAPH_SPEC_HELP, LOGGERS, PPOConfig, RNConfig, RunConfig, TaskConfig,
                                         TrainConfig)
    from torchrl_rn.train.plots import plot_aggregate, plot_curves
    from torchrl_rn.train.run import DeviceFallbackWarning
    from torchrl_rn.train.trainer import NonFiniteError, RNTrainer

__all__ = ["TrainConfig", "TaskConfig", "PPOConfig", "RNConfig", "RunConfig", "RNTrainer", "NonFiniteError",
           "DeviceFallbackWarning", "CheckpointError", "load_checkpoint", "plot_curves", "plot_aggregate", "main",
           "ALGOS", "LOGGERS", "CHECKPOINT", "GRAPH_SPEC_HELP"]

#: the module each exported name is loaded from, on first use
_LAZY = {**dict.fromkeys(("CHECKPOINT", "CheckpointError", "load_checkpoint"), "checkpoint"), "main": "cli",
         **dict.fromkeys(("ALGOS", "GRAPH_SPEC_HELP", "LOGGERS", "PPOConfig", "RNConfig", "RunConfig", "TaskConfig",
                          "TrainConfig"), "config"),
         "plot_aggregate": "plots", "plot_curves": "plots", "DeviceFallbackWarning": "run",
         "NonFiniteError": "trainer", "RNTrainer": "trainer"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'torchrl_rn.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"torchrl_rn.train.{_LAZY[name]}"), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
