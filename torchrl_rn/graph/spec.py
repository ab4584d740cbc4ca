"""The options of an agent graph's vertices, their defaults, and one vertex's resolved attributes.

Examples:
    >>> VERTEX_DEFAULTS["phi"], PHI_OPTIONS
    ('identity', ('identity', 'mean', 'learned'))
    >>> from torchrl_rn.rewards import PsiReward
    >>> VertexSpec(action_dim=4, message_dim=16, phi="mean", psi="sum", share="split", period=5,
    ...            reward=PsiReward(), instruct="broadcast").period
    5
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchrl_rn.rewards import VertexReward

__all__ = ["PHI_OPTIONS", "PSI_OPTIONS", "SHARE_OPTIONS", "INSTRUCT_OPTIONS", "LEARN_OPTIONS", "NEIGHBOURHOODS", "VERTEX_DEFAULTS",
           "GraphError", "VertexSpec"]

PHI_OPTIONS = ("identity", "mean", "learned")
PSI_OPTIONS = ("sum", "mean")
SHARE_OPTIONS = ("split", "copy")
#: How a vertex's action reaches its subordinates: every subordinate reads all of it, or one block each
INSTRUCT_OPTIONS = ("broadcast", "addressed")
#: How a vertex above the motors learns: its own PPO loss on sampled actions, or end to end through its subordinates
LEARN_OPTIONS = ("rl", "gradient")
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
    "learn": "rl",
}
_KNOWN_ATTRS = set(VERTEX_DEFAULTS) | {"agent", "group"}


class GraphError(ValueError):
    """An invalid agent graph; the message names the vertex, edge or group at fault."""


@dataclass(frozen=True)
class VertexSpec:
    """One vertex's attributes, resolved once (its own, its level's ``periods`` entry, the graph's
    ``vertex_reward``, the size a goal needs, or the default).

    The attributes a vertex of an :class:`~torchrl_rn.RNGraph` may set (all optional):
    ``action_dim`` (int, size of the instruction a non-motor vertex sends down; default 4, or, over motors
    with a goal reward, one goal per subordinate when that is larger),
    ``message_dim`` (int, output size of a ``"learned"`` message; default 16),
    ``phi`` (``"identity"`` | ``"mean"`` | ``"learned"``: the message function),
    ``psi`` (``"sum"`` | ``"mean"`` | callable: how a vertex's reward is made from its
    subordinates' rewards; a callable gets a ``[*B, k]`` tensor and returns ``[*B]``),
    ``share`` (``"split"`` | ``"copy"``: a vertex with several superiors gives each its reward
    divided by their number, or in full), ``period`` (int >= 1: the vertex decides every ``period``
    environment steps and holds its action in between; default 1, every step; all vertices of a group
    share one period), ``reward`` (the vertex's reward function, a
    :class:`~torchrl_rn.rewards.VertexReward` or its string: ``"psi"`` (default), ``"advantage[:alpha]"``,
    ``"goal:SLICE,..."``; see :mod:`torchrl_rn.rewards`; all vertices of a group share one),
    ``instruct`` (``"broadcast"`` | ``"addressed"``: every subordinate of the vertex reads its whole
    action (default), or the action is cut into equal blocks, one per subordinate in
    :meth:`RNGraph.subordinates` order, and each subordinate reads only its own, so a manager can tell its
    subordinates apart even when they share weights; all vertices of a group share one; see
    :meth:`RNGraph.instruction_slice`), ``learn`` (``"rl"`` | ``"gradient"``: a vertex above the motors samples
    its action and is trained by its own PPO loss (default), or its action is a deterministic tensor, the
    tanh-squashed mean of its actor, and it has no loss of its own: its subordinates' policy and critic losses,
    which read that action as their instruction, train it by back-propagation (end to end, as learned messages are
    trained from above); it needs decision period 1; all vertices of a group share one).
    """

    action_dim: int | None
    message_dim: int | None
    phi: str
    psi: str | Callable
    share: str
    period: int
    reward: VertexReward
    instruct: str
    learn: str = "rl"

    def get(self, name: str) -> Any:
        """The attribute ``name``."""
        return getattr(self, name)
