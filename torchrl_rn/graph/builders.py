"""Ready-made agent graphs: flat, trees, overlapping managers, from a short spec string or a JSON file.

Each builder makes the ``networkx.DiGraph`` and hands it to ``cls`` (an :class:`~torchrl_rn.RNGraph` class, which
validates it); :class:`~torchrl_rn.RNGraph` exposes them as classmethods (``RNGraph.tree(4, [2])``).

Examples:
    >>> from torchrl_rn import RNGraph
    >>> tree(RNGraph, 4, [2]).groups
    {'agents': ['motor_0', 'motor_1', 'motor_2', 'motor_3'], 'level1': ['l1_0', 'l1_1']}
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from torchrl_rn.graph.spec import GraphError

__all__ = ["flat", "tree", "overlapping", "from_spec"]


def flat(cls: type, n_agents: int, **kwargs: Any) -> Any:
    """See :meth:`RNGraph.flat`."""
    _check_count(n_agents)
    g = nx.DiGraph()
    g.add_nodes_from(f"motor_{k}" for k in range(n_agents))
    return cls(g, n_agents=n_agents, **kwargs)


def tree(cls: type, n_agents: int, branching: Sequence[int] = (2,), *, vertex_attrs: dict | None = None,
         **kwargs: Any) -> Any:
    """See :meth:`RNGraph.tree`."""
    _check_count(n_agents)
    g = nx.DiGraph()
    below = [f"motor_{k}" for k in range(n_agents)]
    g.add_nodes_from(below)
    for level, b in enumerate(branching, start=1):
        if not isinstance(b, int) or b < 1:
            raise GraphError(f"branching at level {level} must be a positive int, got {b!r}.")
        names = []
        for i, start in enumerate(range(0, len(below), b)):
            name = f"l{level}_{i}"
            g.add_node(name, **(vertex_attrs or {}))
            g.add_edges_from((name, s) for s in below[start:start + b])
            names.append(name)
        below = names
    return cls(g, n_agents=n_agents, **kwargs)


def overlapping(cls: type, n_agents: int, n_managers: int = 2, *, overlap: int = 1, root: bool = False,
                vertex_attrs: dict | None = None, **kwargs: Any) -> Any:
    """See :meth:`RNGraph.overlapping`."""
    _check_count(n_agents)
    if not 1 <= n_managers <= n_agents:
        raise GraphError(f"n_managers must be in [1, n_agents={n_agents}], got {n_managers}.")
    g = nx.DiGraph()
    motors = [f"motor_{k}" for k in range(n_agents)]
    g.add_nodes_from(motors)
    block = -(-n_agents // n_managers)
    if (n_managers - 1) * block >= n_agents:  # the last managers' blocks would start past the last motor
        fit = [m for m in range(1, n_agents + 1) if (m - 1) * -(-n_agents // m) < n_agents]
        raise GraphError(
            f"{n_managers} managers over {n_agents} motors in blocks of {block} leave manager "
            f"'l1_{n_managers - 1}' without subordinates; manager counts that fit {n_agents} agents: "
            f"{', '.join(map(str, fit))}."
        )
    managers = []
    for i in range(n_managers):
        name = f"l1_{i}"
        g.add_node(name, **(vertex_attrs or {}))
        g.add_edges_from((name, m) for m in motors[i * block:(i + 1) * block + overlap])
        managers.append(name)
    if root:
        g.add_node("l2_0", **(vertex_attrs or {}))
        g.add_edges_from(("l2_0", m) for m in managers)
    return cls(g, n_agents=n_agents, **kwargs)


def from_spec(cls: type, spec: str, n_agents: int, **kwargs: Any) -> Any:
    """See :meth:`RNGraph.from_spec`."""
    if spec.endswith(".json"):
        try:
            data = json.loads(Path(spec).read_text())
            graph = nx.node_link_graph(data, directed=True, edges="edges")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GraphError(f"cannot read graph file {spec!r}: {err}") from None
        return cls(graph, n_agents=n_agents, **kwargs)
    kind, _, arg = spec.partition(":")
    try:
        if kind == "flat" and not arg:
            return cls.flat(n_agents, **kwargs)
        if kind == "tree":
            return cls.tree(n_agents, [int(b) for b in (arg or "2").split(",")], **kwargs)
        if kind == "dag":
            arg, plus, extra = arg.partition("+")
            if plus and extra != "root":
                raise ValueError(extra)
            return cls.overlapping(n_agents, int(arg or 2), root=bool(plus), **kwargs)
    except GraphError as err:
        raise GraphError(f"graph spec {spec!r} for {n_agents} agents: {err}") from None
    except ValueError as err:
        raise GraphError(f"cannot read graph spec {spec!r}: {err}.") from None
    raise GraphError(f"unknown graph spec {spec!r}; use 'flat', 'tree:2', 'tree:2,2', 'dag', 'dag:2+root'.")


def _check_count(n_agents: int) -> None:
    if not isinstance(n_agents, int) or n_agents < 1:
        raise GraphError(f"n_agents must be a positive int, got {n_agents!r}.")
