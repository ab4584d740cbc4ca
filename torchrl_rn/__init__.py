"""torchrl-rn: Reinforcement Networks (agent DAGs) on TorchRL.

The library's core names are exported here, each loaded on first use (``from torchrl_rn import RNGraph`` imports the
graph package, and torch with it; ``import torchrl_rn`` alone imports nothing heavy, so the ``rn`` command answers
``--help`` at once). The trainer (:mod:`torchrl_rn.train`) is loaded only when ``RNTrainer`` or ``TrainConfig`` is.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchrl_rn.envs import LevelEnv, LevelView
    from torchrl_rn.graph import GraphError, RNGraph
    from torchrl_rn.keys import KEYS, RNKeys
    from torchrl_rn.modules import GraphComposer, VertexGroup
    from torchrl_rn.objectives import GraphGAE, RNLoss
    from torchrl_rn.rewards import DirectionReward, GoalReward, PsiReward, SuperiorAdvantage, VertexReward
    from torchrl_rn.train import RNTrainer, TrainConfig

__all__ = ["RNGraph", "GraphError", "GraphComposer", "VertexGroup", "LevelEnv", "LevelView", "GraphGAE", "RNLoss",
           "VertexReward", "PsiReward", "SuperiorAdvantage", "GoalReward", "DirectionReward", "RNKeys", "KEYS",
           "RNTrainer", "TrainConfig"]
__version__ = "0.1.0"

#: the module each exported name is loaded from, on first use
_LAZY = {"LevelEnv": "envs", "LevelView": "envs", "RNGraph": "graph", "GraphError": "graph", "KEYS": "keys",
         "RNKeys": "keys", "GraphComposer": "modules", "VertexGroup": "modules", "GraphGAE": "objectives",
         "RNLoss": "objectives", "VertexReward": "rewards", "PsiReward": "rewards", "SuperiorAdvantage": "rewards",
         "GoalReward": "rewards", "DirectionReward": "rewards", "RNTrainer": "train", "TrainConfig": "train"}
#: the subpackages, reachable as attributes (``torchrl_rn.graph``) after ``import torchrl_rn``
_SUBPACKAGES = ("envs", "graph", "keys", "modules", "objectives", "periods", "rewards", "train", "value_norm")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"torchrl_rn.{_LAZY[name]}"), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"torchrl_rn.{name}")
    else:
        raise AttributeError(f"module 'torchrl_rn' has no attribute {name!r}")
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
