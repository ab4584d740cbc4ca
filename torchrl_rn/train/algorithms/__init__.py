"""The algorithms ``rn train --algo`` trains, one builder each: what the trainer's loop trains.

* :mod:`~torchrl_rn.train.algorithms.rn`: an RN graph composed by :class:`~torchrl_rn.GraphComposer`, trained by
  :class:`~torchrl_rn.RNLoss` with :class:`~torchrl_rn.GraphGAE`;
* :mod:`~torchrl_rn.train.algorithms.ppo_baselines`: TorchRL's MAPPO and IPPO (``MultiAgentMLP`` actor and critic,
  :class:`~torchrl.objectives.multiagent.MAPPOLoss` / :class:`~torchrl.objectives.multiagent.IPPOLoss`).

Each builder returns a :class:`~torchrl_rn.train.algorithms.base.Models`: the policy, the loss (holding the critic
and the value estimator) and the few algorithm-specific answers the loop needs. These builders are the trainer's
only call sites of the library's models, losses and estimators.

Examples:
    >>> from torchrl_rn.envs import MockMultiAgentEnv
    >>> from torchrl_rn.train import TrainConfig
    >>> from torchrl_rn.train.collection import wrap_env
    >>> cfg = TrainConfig(task="mock", algo="mappo", num_cells=8)
    >>> env = wrap_env(MockMultiAgentEnv(3, num_envs=2), None)
    >>> models = build_models(cfg, env, make_graph(cfg, 3), device="cpu")
    >>> type(models.loss).__name__, models.agent_group
    ('MAPPOLoss', 'agents')
"""
from __future__ import annotations

import torch
from torchrl.envs import EnvBase

from torchrl_rn.graph import RNGraph
from torchrl_rn.train.algorithms import ppo_baselines, rn
from torchrl_rn.train.algorithms.base import Models
from torchrl_rn.train.config import TrainConfig

__all__ = ["Models", "make_graph", "build_models"]


def make_graph(config: TrainConfig, n_agents: int) -> RNGraph | None:
    """The run's agent graph (``--graph`` over ``n_agents`` motors) for ``algo="rn"``; ``None`` for the baselines,
    whose envs get no :class:`~torchrl_rn.LevelEnv`."""
    return rn.make_graph(config, n_agents) if config.algo == "rn" else None


def build_models(config: TrainConfig, env: EnvBase, graph: RNGraph | None, *, device: str | torch.device) -> Models:
    """The policy, loss and value estimator of ``config.algo`` for the (wrapped) training ``env``."""
    if config.algo == "rn":
        return rn.build(config, env, graph, device=device)
    return ppo_baselines.build(config, env, device=device)
