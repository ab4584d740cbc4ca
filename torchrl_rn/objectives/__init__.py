"""What a Reinforcement Network is trained on: :class:`GraphGAE` (the graph-aware advantage), the semi-Markov
credit of decision periods (re-exported from :mod:`torchrl_rn.periods`, where every part of a period lives), and
:class:`RNLoss` (one PPO loss per group).
"""
from __future__ import annotations

from torchrl_rn.objectives.advantage import GraphGAE
from torchrl_rn.objectives.loss import RNLoss
from torchrl_rn.periods import decided, decision_rows, hold_decisions, semi_markov_gae

__all__ = ["GraphGAE", "RNLoss", "semi_markov_gae", "hold_decisions", "decided", "decision_rows"]
