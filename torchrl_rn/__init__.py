"""torchrl-rn: Reinforcement Networks (agent DAGs) on TorchRL."""
from __future__ import annotations

from torchrl_rn.advantage import GraphGAE
from torchrl_rn.composer import GraphComposer
from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.level_env import LevelEnv
from torchrl_rn.loss import RNLoss
from torchrl_rn.rewards import GoalReward, PsiReward, SuperiorAdvantage, VertexReward
from torchrl_rn.train import RNTrainer, TrainConfig
from torchrl_rn.vertex import VertexGroup

__all__ = ["RNGraph", "GraphError", "GraphComposer", "VertexGroup", "LevelEnv", "GraphGAE", "RNLoss", "RNTrainer", "TrainConfig",
           "VertexReward", "PsiReward", "SuperiorAdvantage", "GoalReward"]
__version__ = "0.1.0"
