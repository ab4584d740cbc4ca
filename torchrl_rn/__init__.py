"""torchrl-rn: Reinforcement Networks (agent DAGs) on TorchRL.

The library's core names are exported here; the trainer (:mod:`torchrl_rn.train`) is not imported with them:
``from torchrl_rn import RNTrainer, TrainConfig`` loads it on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from torchrl_rn.envs import LevelEnv, LevelView
from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.keys import KEYS, RNKeys
from torchrl_rn.modules import GraphComposer, VertexGroup
from torchrl_rn.objectives import GraphGAE, RNLoss
from torchrl_rn.rewards import DirectionReward, GoalReward, PsiReward, SuperiorAdvantage, VertexReward

__all__ = ["RNGraph", "GraphError", "GraphComposer", "VertexGroup", "LevelEnv", "LevelView", "GraphGAE", "RNLoss",
           "VertexReward", "PsiReward", "SuperiorAdvantage", "GoalReward", "DirectionReward", "RNKeys", "KEYS",
           "RNTrainer", "TrainConfig"]
__version__ = "0.1.0"

#: names loaded from the trainer package on first use
_LAZY = {"RNTrainer": "torchrl_rn.train", "TrainConfig": "torchrl_rn.train"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torchrl_rn' has no attribute {name!r}")
