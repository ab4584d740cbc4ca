"""The default reward: the env's for a motor, ``psi`` of the subordinates' rewards above (routed by the env)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torchrl_rn.rewards.base import VertexReward

__all__ = ["PsiReward"]


@dataclass(frozen=True)
class PsiReward(VertexReward):
    """The default: a motor's reward is the env's, a vertex above gets ``psi`` of its subordinates' rewards.

    Examples:
        >>> from torchrl_rn.rewards import parse_reward
        >>> parse_reward("psi")
        PsiReward()
    """

    name: ClassVar[str] = "psi"
    needs_superiors: ClassVar[bool] = False
