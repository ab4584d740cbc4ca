"""Vertex rewards from their strings: ``name[:arg,arg,key=value,...]``, as the CLI and the graph attributes give them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torchrl_rn.rewards.base import VertexReward
from torchrl_rn.rewards.direction import DirectionReward
from torchrl_rn.rewards.goal import GoalReward
from torchrl_rn.rewards.psi import PsiReward
from torchrl_rn.rewards.superior_advantage import SuperiorAdvantage

__all__ = ["parse_reward", "as_reward", "REWARD_HELP"]

REWARD_HELP = ("psi (default: env reward for motors, psi of subordinates' rewards above), advantage[:ALPHA] "
               "(alpha * own reward + (1 - alpha) * the superiors' advantage, per-batch scaled), or "
               "goal:SLICE[,c=C,beta=B,scale=S,normalize=N] (the superior's instruction is a goal in observation "
               "slice SLICE, 'START-STOP' or 'pos' = VMAS's agent position; reward c * (d_prev - d_now) + beta * own "
               "reward, the first term per-batch scaled to the own reward's spread with normalize=true; uses task "
               "knowledge), or direction[:DIM,c=C,beta=B,seed=S] (the superior's instruction is a direction in a fixed random "
               "DIM-dim projection of the motor's observation, seeded S; reward c * the change of the projected "
               "observation's cosine with it since the superior's decision + beta * own reward; no task knowledge)")

_CLASSES = {cls.name: cls for cls in (PsiReward, SuperiorAdvantage, GoalReward, DirectionReward)}


def parse_reward(text: str) -> VertexReward:
    """A reward function from its string: ``name[:arg,arg,key=value,...]`` (positional args in field order).

    Raises:
        ValueError: an unknown name, argument or value, naming it.

    Examples:
        >>> parse_reward("advantage:0.25")
        SuperiorAdvantage(alpha=0.25, normalize=True)
        >>> parse_reward("goal:2-4,c=2")
        GoalReward(start=2, stop=4, c=2.0, beta=0.0, scale=1.0, normalize=False)
    """
    name, _, rest = str(text).strip().partition(":")
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown vertex reward {text!r}; choose psi, advantage[:ALPHA], goal:SLICE[,...] or "
                         "direction[:DIM,...].")
    fields = [f for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    args = [a.strip() for a in rest.split(",")] if rest.strip() else []
    values.update(cls._leading_args(args, text))
    fields = fields[len(values):]
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if not eq:
            if i >= len(fields) or any("=" in a for a in args[:i]):
                raise ValueError(f"vertex reward {text!r}: unexpected argument {arg!r}.")
            key, value = fields[i].name, arg
        field = next((f for f in dataclasses.fields(cls) if f.name == key.strip()), None)
        if field is None:
            raise ValueError(f"vertex reward {text!r}: unknown argument {key!r}; {cls.name} takes "
                             f"{[f.name for f in dataclasses.fields(cls)]}.")
        values[field.name] = _value(value.strip(), field, text)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"vertex reward {text!r}: {err}") from None


def _value(text: str, field: dataclasses.Field, spec: str) -> Any:
    kind = {"alpha": float, "c": float, "beta": float, "scale": float, "normalize": bool}.get(field.name, int)
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"vertex reward {spec!r}: {field.name} must be true or false, got {text!r}.")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"vertex reward {spec!r}: {field.name} must be a number, got {text!r}.") from None


def as_reward(value: Any) -> VertexReward:
    """A :class:`VertexReward` from itself or its string (see :func:`parse_reward`)."""
    if isinstance(value, VertexReward):
        return value
    if isinstance(value, str):
        return parse_reward(value)
    raise ValueError(f"a vertex reward must be a string or a VertexReward, got {type(value).__name__}.")
