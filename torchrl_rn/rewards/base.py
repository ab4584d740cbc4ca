"""The base class of vertex reward functions: what the env writes for a vertex, what the estimator trains it on.

A :class:`VertexReward` is a frozen dataclass (a graph compares its vertices' rewards by value) whose hooks say where
it acts; the library calls them and never asks which kind a reward is:

* :meth:`~VertexReward.check` and :meth:`~VertexReward.superior_action_dim`: graph time (the place of the vertex, the
  room its superiors' actions need);
* :meth:`~VertexReward.env_module`: what :class:`~torchrl_rn.LevelEnv` writes at every step (``None``: nothing);
* :meth:`~VertexReward.train_reward`: what :class:`~torchrl_rn.GraphGAE` trains the group on, from the group's own
  (routed) reward and a :class:`RewardSource` (the env's entry, the superiors' advantages).

Examples:
    >>> from torchrl_rn.rewards import PsiReward
    >>> PsiReward().train_reward(torch.tensor([1.0]), None)  # the routed reward itself
    tensor([1.])
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from tensordict.nn import TensorDictModuleBase

__all__ = ["VertexReward", "RewardSource"]


class RewardSource(Protocol):
    """What :class:`~torchrl_rn.GraphGAE` offers a reward function for one group of one batch."""

    group: str

    def env_reward(self) -> torch.Tensor:
        """The ``("next", group, "vertex_reward")`` entry the env wrote (:meth:`VertexReward.env_module`)."""

    def superior_advantage(self, normalize: bool) -> torch.Tensor:
        """The group's superiors' (detached) advantages of the decisions in force, averaged over each vertex's
        superiors; each superior group's at unit spread over its decisions in the batch with ``normalize``."""


@dataclass(frozen=True)
class VertexReward:
    """Base class of a vertex reward function (frozen: a graph compares its vertices' rewards by value).

    Class attributes: ``name`` (its string's name), ``needs_superiors`` (a root cannot have it), ``motors_only``
    (a graph's ``vertex_reward`` of this kind goes to the motors only), ``applied_by_env`` (:meth:`env_module` gives
    a module) and ``reads_superior_advantage`` (:meth:`train_reward` reads the superiors' advantages, so the
    estimator computes them first).
    """

    name: ClassVar[str] = ""
    needs_superiors: ClassVar[bool] = True
    motors_only: ClassVar[bool] = False
    applied_by_env: ClassVar[bool] = False
    reads_superior_advantage: ClassVar[bool] = False

    def __str__(self) -> str:
        args = ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.name}:{args}" if args else self.name

    @classmethod
    def _leading_args(cls, args: list[str], text: str) -> dict[str, Any]:
        """Parses (and pops) the arguments its string takes before the dataclass fields (none by default)."""
        return {}

    def check(self, graph: Any, vertex: Any) -> None:
        """Raises ``ValueError`` (naming the vertex) where ``vertex`` of ``graph`` cannot have this reward."""

    def superior_action_dim(self, n_subordinates: int) -> int:
        """The ``action_dim`` a superior of a vertex with this reward needs, given its number of subordinates (0:
        no need)."""
        return 0

    def check_observation(self, group: str, size: int) -> None:
        """Raises ``ValueError`` (naming the group) where the env's per-agent observation of ``size`` entries cannot
        serve this reward (checked by :class:`~torchrl_rn.LevelEnv` against the env's spec)."""

    def env_module(self, graph: Any, group: str) -> TensorDictModuleBase | None:
        """The module :class:`~torchrl_rn.LevelEnv` runs on each transition for ``group`` (it writes
        ``("next", group, "vertex_reward")``), or ``None``."""
        return None

    def train_keys(self, group: str) -> list:
        """The keys of the data :meth:`train_reward` reads beyond the group's reward."""
        return []

    def train_reward(self, own: torch.Tensor, source: RewardSource) -> torch.Tensor:
        """What the estimator trains the group on, given its own (routed) reward ``own`` ``[*B, T, n, 1]``."""
        return own


def _spread(x: torch.Tensor) -> torch.Tensor:
    """The standard deviation of ``x``'s entries, or 1 where they are all alike (or only one): a scale to divide or
    multiply by."""
    spread = x.std() if x.numel() > 1 else x.new_ones(())
    return torch.where(spread > 1e-6, spread, torch.ones_like(spread))
