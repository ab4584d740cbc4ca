"""The keys of a Reinforcement Network's data: one object that env, policy, estimator and loss all read.

Every per-group entry is a nested key ``(group, field)``; :class:`RNKeys` names the fields. :data:`KEYS` is the
instance the library uses; ``RNKeys(advantage="adv")`` builds another set of names (``dataclasses.replace`` works
too), and :meth:`RNKeys.of` gives a group's key.

Examples:
    >>> KEYS.of("level1", "decided")
    ('level1', 'decided')
    >>> KEYS.next("agents", "vertex_reward")
    ('next', 'agents', 'vertex_reward')
    >>> RNKeys(advantage="adv").advantage
    'adv'
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RNKeys", "KEYS", "ENV_GROUP", "NestedKey", "DONE_FIELDS", "group_signal"]

NestedKey = tuple[str, str]

#: The env's agent group key: the motors' group of an :class:`~torchrl_rn.RNGraph` by default.
ENV_GROUP = "agents"

#: The done flags an env may write (the team ones at the root, or per group).
DONE_FIELDS = ("done", "terminated", "truncated")


@dataclass(frozen=True)
class RNKeys:
    """The field names of every per-group entry ``(group, field)`` of a Reinforcement Network's data.

    Attributes:
        observation: a group's ``o-`` (the env's observation for the motors, its subordinates' messages above).
        message: a group's encoded message ``phi(o-)`` (``identity`` messages are the observation itself).
        instruction: a group's ``o+``, its superiors' actions (carried into ``"next"`` by the env).
        action: a group's action (the env's action for the motors, an instruction above).
        action_log_prob: its log-probability.
        loc, scale, logits: the actor head's distribution parameters.
        state_value: the value head's output.
        advantage, value_target: what the estimator writes.
        reward, done, terminated, truncated: the env's signals, under ``"next"``.
        decided: where a group with a decision period decided (written by the policy's hold).
        window_step: steps since the group's last decision (a state entry of the env).
        held_action: the action in force between decisions (a state entry: set by the policy's hold, carried by
            the env).
        vertex_reward: what the env writes for a reward function it applies (a goal reward), under ``"next"``.
        goal_origin: where each goal's decision window began, in the goal's space (a state entry of the env, for a
            direction reward).
        superior_clock: the steps left until the superiors' next decisions (an optional actor input).
    """

    observation: str = "observation"
    message: str = "message"
    instruction: str = "instruction"
    action: str = "action"
    action_log_prob: str = "action_log_prob"
    loc: str = "loc"
    scale: str = "scale"
    logits: str = "logits"
    state_value: str = "state_value"
    advantage: str = "advantage"
    value_target: str = "value_target"
    reward: str = "reward"
    done: str = "done"
    terminated: str = "terminated"
    truncated: str = "truncated"
    decided: str = "decided"
    window_step: str = "window_step"
    held_action: str = "held_action"
    vertex_reward: str = "vertex_reward"
    goal_origin: str = "goal_origin"
    superior_clock: str = "superior_clock"

    def of(self, group: str, name: str) -> NestedKey:
        """``(group, field)`` for the field called ``name`` (an attribute of this object)."""
        return (group, getattr(self, name))

    def next(self, group: str, name: str) -> tuple[str, str, str]:
        """``("next", group, field)``: the entry of the step's ``"next"`` data."""
        return ("next", group, getattr(self, name))


#: The keys the library reads and writes.
KEYS = RNKeys()


def group_signal(td, group: str, field: str, n: int) -> torch.Tensor | None:
    """A group's signal ``(group, field)`` (``[*B, n, 1]``), or the root (team) one broadcast over its ``n``
    vertices; ``None`` where neither is in ``td``. The one place a team signal reaches a group's vertices
    (:class:`~torchrl_rn.LevelEnv` writes it, :class:`~torchrl_rn.GraphGAE` reads data that lack it).

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"done": torch.tensor([[True], [False]])}, [2])
        >>> group_signal(td, "agents", "done", 3).shape
        torch.Size([2, 3, 1])
    """
    signal = td.get((group, field), None)
    if signal is not None:
        return signal
    root = td.get(field, None)
    if root is None:
        return None
    return root.unsqueeze(-2).expand(*root.shape[:-1], n, root.shape[-1])


def _expand_right(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` with trailing singleton dimensions up to ``like``'s."""
    return mask.reshape(*mask.shape, *([1] * (like.ndim - mask.ndim)))


def _tuple_key(key) -> tuple:
    """A key as a tuple (a plain string key as a 1-tuple)."""
    return key if isinstance(key, tuple) else (key,)
