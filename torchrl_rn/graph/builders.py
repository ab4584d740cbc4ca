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

from torchrl_rn.graph.limits import over_limit, short
from torchrl_rn.graph.spec import GraphError

__all__ = ["flat", "tree", "overlapping", "from_spec", "from_node_link"]


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
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
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
    if not isinstance(n_managers, int) or isinstance(n_managers, bool) or not 1 <= n_managers <= n_agents:
        raise GraphError(f"n_managers must be in [1, n_agents={n_agents}], got {n_managers!r} (an int).")
    block = -(-n_agents // n_managers)
    if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap <= block:
        raise GraphError(f"overlap must be an int in [0, {block}] (motors a manager shares with the next of "
                         f"{n_managers} blocks of {block} over {n_agents} agents), got {overlap!r}.")
    g = nx.DiGraph()
    motors = [f"motor_{k}" for k in range(n_agents)]
    g.add_nodes_from(motors)
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
    if spec.lstrip().startswith("{"):  # the graph itself, as a run stores one read from a file
        try:
            data = json.loads(spec)
        except (ValueError, RecursionError) as err:
            raise GraphError(f"cannot read the stored graph: {_cut(err)}") from None
        return from_node_link(cls, data, n_agents, source="the stored graph", **kwargs)
    if spec.endswith(".json"):
        try:
            data = json.loads(Path(spec).read_text())
        except (OSError, ValueError, RecursionError) as err:
            raise GraphError(f"cannot read graph file {spec!r}: {_cut(err)}") from None
        return from_node_link(cls, data, n_agents, source=f"graph file {spec!r}", **kwargs)
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


def from_node_link(cls: type, data: Any, n_agents: int, *, source: str = "node-link data", **kwargs: Any) -> Any:
    """A graph from networkx's node-link data (``nx.node_link_data(g, edges="edges")``; networkx's default ``links``
    key is read too), checked shape by shape so that any malformed input is refused in one short line naming
    ``source``.

    Examples:
        >>> from torchrl_rn import RNGraph
        >>> from_node_link(RNGraph, {"nodes": [{"id": "m"}], "links": []}, 1).groups
        {'agents': ['m']}
        >>> from_node_link(RNGraph, [1, 2], 1)
        Traceback (most recent call last):
        ...
        torchrl_rn.graph.spec.GraphError: node-link data must be a JSON object with a 'nodes' list ..., got a list.
    """
    form = "a JSON object with a 'nodes' list and an 'edges' list (nx.node_link_data(g, edges='edges'))"
    if not isinstance(data, dict):
        raise GraphError(f"{source} must be {form}, got {_kind(data)}.")
    edges_key = [k for k in ("edges", "links") if k in data]
    if len(edges_key) != 1 or not isinstance(data.get("nodes"), list) or not isinstance(data[edges_key[0]], list):
        keys = short(sorted(map(str, data)), keep=5)
        raise GraphError(f"{source} must be {form}; it has keys {keys}.")
    nodes, edges = data["nodes"], data[edges_key[0]]
    if (problem := over_limit("vertices", len(nodes), label=f"{source}: the vertex count")) is not None:
        raise GraphError(f"{problem}.")
    for what, entries, needed in (("node", nodes, ("id",)), ("edge", edges, ("source", "target"))):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or any(k not in entry for k in needed):
                raise GraphError(f"{source}: {what} {i} must be an object with {' and '.join(map(repr, needed))}, "
                                 f"got {_cut(entry)}.")
    try:
        graph = nx.node_link_graph({**data, "edges": edges, "directed": True, "multigraph": False}, directed=True,
                                   multigraph=False, edges="edges")
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise GraphError(f"{source}: {_cut(err)}") from None
    if graph.number_of_nodes() != len(nodes) and len({n["id"] for n in nodes}) != len(nodes):
        raise GraphError(f"{source}: node ids repeat ({len(nodes)} nodes, {len({n['id'] for n in nodes})} distinct "
                         "ids).")
    return cls(graph, n_agents=n_agents, **kwargs)


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {'list' if isinstance(value, list) else type(value).__name__}"


def _cut(value: Any, width: int = 120) -> str:
    """``value``'s text on one line of at most ``width`` characters."""
    text = " ".join((value if isinstance(value, str) else str(value)).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _check_count(n_agents: int) -> None:
    if not isinstance(n_agents, int) or isinstance(n_agents, bool) or n_agents < 1:
        raise GraphError(f"n_agents must be a positive int, got {n_agents!r}.")
    if (problem := over_limit("n_agents", n_agents)) is not None:
        raise GraphError(f"{problem}.")
