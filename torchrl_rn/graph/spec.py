"""The options of an agent graph's vertices, their defaults, and one vertex's resolved attributes.

Examples:
    >>> VERTEX_DEFAULTS["phi"], PHI_OPTIONS
    ('identity', ('identity', 'mean', 'learned'))
    >>> VertexSpec(action_dim=4, message_dim=16, phi="mean", psi="sum", share="split", period=5,
    ...            reward=PsiReward(), instruct="broadcast").period
    5
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchrl_rn.rewards import PsiReward, VertexReward

__all__ = ["PHI_OPTIONS", "PSI_OPTIONS", "SHARE_OPTIONS", "INSTRUCT_OPTIONS", "NEIGHBOURHOODS", "VERTEX_DEFAULTS",
           "GraphError", "VertexSpec"]

PHI_OPTIONS = ("identity", "mean", "learned")
PSI_OPTIONS = ("sum", "mean")
SHARE_OPTIONS = ("split", "copy")
#: How a vertex's action reaches its subordinates: every subordinate reads all of it, or one block each
INSTRUCT_OPTIONS = ("broadcast", "addressed")
NEIGHBOURHOODS = ("up", "down", "both")

#: Defaults of the per-vertex attributes. ``action_dim`` of a motor is taken from the env.
VERTEX_DEFAULTS: dict[str, Any] = {
    "action_dim": 4,
    "message_dim": 16,
    "phi": "identity",
    "psi": "sum",
    "share": "split",
    "period": 1,
    "reward": "psi",
    "instruct": "broadcast",
}
_KNOWN_ATTRS = set(VERTEX_DEFAULTS) | {"agent", "group"}


class GraphError(ValueError):
    """An invalid agent graph; the message names the vertex, edge or group at fault."""


@dataclass(frozen=True)
class VertexSpec:
    """One vertex's attributes, resolved once (its own, its level's ``periods`` entry, the graph's
    ``vertex_reward``, the size a goal needs, or the default): see :class:`~torchrl_rn.RNGraph` for their meaning.
    """

    action_dim: int | None
    message_dim: int | None
    phi: str
    psi: str | Callable
    share: str
    period: int
    reward: VertexReward
    instruct: str

    def get(self, name: str) -> Any:
        """The attribute ``name``."""
        return getattr(self, name)
