"""The documented upper bounds on every size a user, a graph file or a checkpoint can ask for, in one place.

A typo (``--n-agents 100000000``) or a foreign file (``"action_dim": 1000000000`` in a graph, ``frames_per_batch:
1e12`` in a checkpoint's config) would otherwise try to allocate gigabytes to terabytes before anything fails. Each
bound is far above what a run on one machine uses (see docs/guide.md, "Limits"); raising one is a one-line change here.

Examples:
    >>> LIMITS["n_agents"]
    10000
    >>> over_limit("n_agents", 100_000_000)
    'n_agents 100000000 is over the limit of 10000 (torchrl_rn.graph.limits.LIMITS)'
    >>> over_limit("n_agents", 4) is None
    True
    >>> short([f"v{i}" for i in range(1000)], keep=3)
    "['v0', 'v1', 'v2', ... (997 more)]"
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["LIMITS", "over_limit", "short"]

#: the largest value each size may take
LIMITS: dict[str, int] = {
    "n_agents": 10_000,  # env agents (motors) of a graph or a task
    "vertices": 100_000,  # vertices of an agent graph (motors and managers)
    "action_dim": 65_536,  # a vertex's action (instruction) size
    "message_dim": 65_536,  # a vertex's message size
    "period": 1_000_000,  # a vertex's decision period, in steps
    "frames": 10**12,  # total frames of a run
    "frames_per_batch": 10_000_000,  # frames collected per iteration (held in memory at once)
    "max_steps": 10_000_000,  # steps of an episode
    "minibatch_size": 10_000_000,
    "epochs": 100_000,
    "num_cells": 65_536,  # hidden width of an MLP
    "manager_cells": 65_536,
    "eval_envs": 10_000,  # episodes of a training evaluation (one env each)
    "episodes": 10_000,  # episodes of ``rn eval`` / ``rn show`` (one env each)
    "workers": 1_024,  # collector processes or Ray actors
    "eval_every": 10**9,
    "goal_warmup": 10**12,
}


def over_limit(name: str, value: Any, *, label: str | None = None) -> str | None:
    """Why ``value`` is too large for size ``name`` (one short sentence without a final stop, naming ``label``,
    default ``name``), or ``None``."""
    limit = LIMITS[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
        return f"{label or name} {value} is over the limit of {limit} (torchrl_rn.graph.limits.LIMITS)"
    return None


def short(items: Iterable[Any], keep: int = 10) -> str:
    """``items`` as a list's repr, cut after ``keep`` entries: error lines stay short for any graph size."""
    items = list(items)
    if len(items) <= keep:
        return repr(items)
    return "[" + ", ".join(map(repr, items[:keep])) + f", ... ({len(items) - keep} more)]"
