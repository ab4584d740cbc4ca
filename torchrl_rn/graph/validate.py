"""Validation of an agent graph: a ``networkx.DiGraph`` and its options become one :class:`VertexSpec` per vertex,
levels, groups and motors, or a :class:`GraphError` that names the vertex, edge or group at fault.

Every vertex attribute is resolved here, once (its own value, its level's ``periods`` entry, the graph's
``vertex_reward``, the ``action_dim`` a goal needs, or the default), so the graph's queries read a spec.

Examples:
    >>> import networkx as nx
    >>> check_acyclic(nx.DiGraph([("a", "b"), ("b", "a")]))
    Traceback (most recent call last):
    ...
    torchrl_rn.graph.spec.GraphError: the agent graph has a cycle: a -> b -> a. An RN graph must be acyclic ...
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from torchrl_rn.graph.limits import over_limit, short
from torchrl_rn.graph.spec import (
    _KNOWN_ATTRS,
    INSTRUCT_OPTIONS,
    LEARN_OPTIONS,
    PHI_OPTIONS,
    PSI_OPTIONS,
    SHARE_OPTIONS,
    GraphError,
    VertexSpec,
)
from torchrl_rn.rewards import VertexReward, as_reward

if TYPE_CHECKING:
    from torchrl_rn.graph.graph import RNGraph

__all__ = ["frozen_copy", "check_size", "check_env_agents", "check_group_sizes", "same_graph", "check_acyclic",
           "check_attributes", "compute_levels", "check_periods", "bind_motors",
           "compute_groups", "goal_action_dims", "resolve_specs", "check_groups", "check_instructions", "check_rewards"]


def _raw(nxg: nx.DiGraph, defaults: dict, v: Any, name: str) -> Any:
    return nxg.nodes[v].get(name, defaults.get(name))


def _reward_attr(nxg: nx.DiGraph, defaults: dict, vertex_reward: VertexReward | None, v: Any) -> Any:
    """A vertex's ``reward``: its own, else the graph's ``vertex_reward`` for every vertex with superiors (for a
    reward that applies to motors only, every motor with superiors), else the default."""
    if (vertex_reward is not None and "reward" not in nxg.nodes[v] and nxg.in_degree(v) > 0
            and (nxg.out_degree(v) == 0 or not vertex_reward.motors_only)):
        return vertex_reward
    return _raw(nxg, defaults, v, "reward")


def check_size(nxg: nx.DiGraph, n_agents: int | None) -> None:
    """Refuses a graph or an agent count over :data:`~torchrl_rn.graph.limits.LIMITS`, before any work on it."""
    if n_agents is not None and (problem := over_limit("n_agents", n_agents)) is not None:
        raise GraphError(f"{problem}.")
    if (problem := over_limit("vertices", nxg.number_of_nodes(), label="the agent graph's vertex count")) is not None:
        raise GraphError(f"{problem}.")


def check_env_agents(graph: RNGraph, n_env_agents: int, env: Any) -> None:
    """Refuses an env whose agent group does not hold one agent per motor of ``graph``, naming both and the counts.

    ``env`` is the env (named by its class, or its ``base_env``'s for a ``TransformedEnv``) or its name.

    Examples:
        >>> from torchrl_rn import RNGraph
        >>> check_env_agents(RNGraph.tree(4, [2]), 3, "MockMultiAgentEnv")
        Traceback (most recent call last):
        ...
        torchrl_rn.graph.spec.GraphError: RNGraph(n_agents=4, depth=1, groups(agents=4, level1=2)) has 4 motors but the
        env MockMultiAgentEnv has 3 agent(s) in its group 'agents': build the graph for 3 agents or the env for 4.
    """
    if n_env_agents != graph.n_agents:
        name = env if isinstance(env, str) else type(getattr(env, "base_env", env)).__name__
        raise GraphError(f"{graph!r} has {graph.n_agents} motors but the env {name} has {n_env_agents} agent(s) in "
                         f"its group {graph.env_group!r}: build the graph for {n_env_agents} agents or the env for "
                         f"{graph.n_agents}.")


def check_group_sizes(graph: RNGraph, data: Any, user: str) -> None:
    """Refuses data (a TensorDict shaped ``[*B, T]``) whose groups hold other vertex counts than ``graph``'s: data of
    another graph, named with both counts (a group the data lacks is left to the reader of its entries)."""
    for g, members in graph.groups.items():
        sub = data.get(g, None)
        shape = getattr(sub, "batch_size", None)
        if shape is not None and len(shape) > data.ndim and shape[data.ndim] != len(members):
            raise GraphError(f"{user} of {graph!r} was given data whose group {g!r} has {shape[data.ndim]} vertices, "
                             f"not {len(members)}: data collected with another graph.")


def same_graph(a: RNGraph, b: RNGraph) -> bool:
    """Whether two graphs have the same groups (vertices in order), edges and resolved vertex attributes."""
    return a is b or (a.groups == b.groups and set(a.nx.edges) == set(b.nx.edges)
                      and all(a.spec(v) == b.spec(v) for v in a.nx.nodes))


def check_acyclic(nxg: nx.DiGraph) -> None:
    """Raises a :class:`GraphError` naming a cycle of ``nxg``."""
    try:
        cycle = nx.find_cycle(nxg)
    except nx.NetworkXNoCycle:
        return
    path = [str(u) for u, _ in cycle] + [str(cycle[0][0])]
    raise GraphError(
        f"the agent graph has a cycle: {' -> '.join(path)}. "
        "An RN graph must be acyclic (edges go from superior to subordinate)."
    )


def check_attributes(nxg: nx.DiGraph, defaults: dict, vertex_reward: VertexReward | None) -> dict[Any, VertexReward]:
    """Checks every vertex's attributes against their options; returns each vertex's reward function."""
    rewards: dict[Any, VertexReward] = {}
    for v, attrs in nxg.nodes(data=True):
        unknown = set(attrs) - _KNOWN_ATTRS
        if unknown:
            raise GraphError(
                f"vertex {v!r} has unknown attribute(s) {sorted(unknown)}; known: {sorted(_KNOWN_ATTRS)}."
            )
        phi = _raw(nxg, defaults, v, "phi")
        if phi not in PHI_OPTIONS:
            raise GraphError(f"vertex {v!r}: unknown phi {phi!r}; choose one of {PHI_OPTIONS}.")
        psi = _raw(nxg, defaults, v, "psi")
        if not callable(psi) and psi not in PSI_OPTIONS:
            raise GraphError(f"vertex {v!r}: unknown psi {psi!r}; choose one of {PSI_OPTIONS} or a callable.")
        try:
            rewards[v] = as_reward(_reward_attr(nxg, defaults, vertex_reward, v))
        except ValueError as err:
            raise GraphError(f"vertex {v!r}: {err}") from None
        share = _raw(nxg, defaults, v, "share")
        if share not in SHARE_OPTIONS:
            raise GraphError(f"vertex {v!r}: unknown share {share!r}; choose one of {SHARE_OPTIONS}.")
        instruct = _raw(nxg, defaults, v, "instruct")
        if instruct not in INSTRUCT_OPTIONS:
            raise GraphError(f"vertex {v!r}: unknown instruct {instruct!r}; choose one of {INSTRUCT_OPTIONS}.")
        learn = _raw(nxg, defaults, v, "learn")
        if learn not in LEARN_OPTIONS:
            raise GraphError(f"vertex {v!r}: unknown learn {learn!r}; choose one of {LEARN_OPTIONS}.")
        for key in ("action_dim", "message_dim", "period"):
            value = attrs.get(key, defaults[key])
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise GraphError(f"vertex {v!r}: {key} must be a positive int, got {value!r}.")
            if (problem := over_limit(key, value)) is not None:
                raise GraphError(f"vertex {v!r}: {problem}.")
    return rewards


def compute_levels(nxg: nx.DiGraph) -> dict[Any, int]:
    """Each vertex's height above the motors (motors are 0, a vertex one above its highest subordinate)."""
    levels: dict[Any, int] = {}
    for v in reversed(list(nx.topological_sort(nxg))):
        subs = list(nxg.successors(v))
        levels[v] = 0 if not subs else 1 + max(levels[s] for s in subs)
    return levels


def check_periods(periods: Sequence[int] | None, levels: dict[Any, int]) -> list[int] | None:
    """The per-level ``periods`` option, checked: one positive int per level."""
    if periods is None:
        return None
    periods = list(periods)
    depth = max(levels.values())
    if len(periods) != depth + 1:
        raise GraphError(
            f"periods {periods} gives {len(periods)} period(s) but the graph has {depth + 1} level(s) "
            "(one period per level, from the motors up)."
        )
    for level, k in enumerate(periods):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise GraphError(f"periods: the period of level {level} must be a positive int, got {k!r}.")
    return periods


def bind_motors(nxg: nx.DiGraph, n_agents: int | None, subordinates) -> tuple[int, list]:
    """``(n_agents, motors ordered by the env agent they drive)``; ``subordinates(v)`` names a bound non-sink's."""
    sinks = [v for v in nxg.nodes if nxg.out_degree(v) == 0]
    for v, attrs in nxg.nodes(data=True):
        if "agent" in attrs and nxg.out_degree(v) > 0:
            raise GraphError(
                f"vertex {v!r} is bound to env agent {attrs['agent']} but has subordinates "
                f"{subordinates(v)}: only sinks (motors) act in the environment."
            )
    explicit = any("agent" in nxg.nodes[v] for v in sinks)
    if explicit:
        for v in sinks:
            if "agent" not in nxg.nodes[v]:
                raise GraphError(
                    f"vertex {v!r} has no path to the environment: it has no subordinates and is not bound "
                    "to an env agent (set its 'agent' attribute or give it subordinates)."
                )
        binding = {v: nxg.nodes[v]["agent"] for v in sinks}
    else:
        binding = {v: k for k, v in enumerate(sinks)}
    by_agent: dict[int, list] = {}
    for v, k in binding.items():
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise GraphError(f"motor {v!r}: 'agent' must be a non-negative int, got {k!r}.")
        by_agent.setdefault(k, []).append(v)
    for k, vs in sorted(by_agent.items()):
        if len(vs) > 1:
            raise GraphError(f"env agent {k} is driven by several motors {vs}; each needs exactly one.")
    n = len(binding) if n_agents is None else n_agents
    missing = [k for k in range(n) if k not in by_agent]
    extra = sorted(k for k in by_agent if k >= n)
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"env agent(s) {short(missing)} have no motor")
        if extra:
            detail.append(f"motor(s) {short(by_agent[k][0] for k in extra)} bind agent indices {short(extra)} >= {n}")
        raise GraphError(
            f"the graph has {len(binding)} motor(s) but the environment has {n} agent(s): "
            + "; ".join(detail) + "."
        )
    return n, [by_agent[k][0] for k in range(n)]


def compute_groups(nxg: nx.DiGraph, levels: dict[Any, int], motors: list, env_group: str) -> dict[str, list]:
    """Group name -> vertices, groups in ascending level (motors first, in ``env_group``)."""
    groups: dict[str, list] = {env_group: list(motors)}
    others = sorted((v for v in nxg.nodes if levels[v] > 0), key=lambda v: levels[v])  # stable within a level
    for v in others:
        name = nxg.nodes[v].get("group", f"level{levels[v]}")
        if name == env_group:
            raise GraphError(f"vertex {v!r} is not a motor but is put in the motors' group {name!r}.")
        groups.setdefault(name, []).append(v)
    for v in motors:
        name = nxg.nodes[v].get("group", env_group)
        if name != env_group:
            raise GraphError(f"motor {v!r} is put in group {name!r}; motors share the env's group {env_group!r}.")
    return dict(sorted(groups.items(), key=lambda kv: levels[kv[1][0]]))


def goal_action_dims(graph: RNGraph, nxg: nx.DiGraph, defaults: dict, rewards: dict[Any, VertexReward],
                     groups: dict[str, list]) -> dict[Any, int]:
    """``action_dim`` of the superiors whose subordinates' rewards need room in it (one goal per subordinate) and
    that do not set it: the largest need in the group (so a group stays one size), never below the default; for an
    ``addressed`` group, also the smallest multiple of its slots (see :meth:`RNGraph.instruction_slice`) that is not
    below the default (``tree:3``: 6, two entries per subordinate)."""
    sizes: dict[Any, int] = {}
    for g, members in groups.items():
        if g == graph.env_group:
            continue
        need = max((rewards[s].superior_action_dim(len(graph.subordinates(v))) for v in members
                    for s in graph.subordinates(v)), default=0)
        if _raw(nxg, defaults, members[0], "instruct") == "addressed":  # equal blocks: a multiple of the slots
            slots = graph._slots(g)
            need = max(need, slots * -(-defaults["action_dim"] // slots))
        for v in members:
            if need and "action_dim" not in nxg.nodes[v]:
                sizes[v] = max(need, defaults["action_dim"])
    return sizes


def resolve_specs(nxg: nx.DiGraph, defaults: dict, levels: dict[Any, int], level_periods: list[int] | None,
                  rewards: dict[Any, VertexReward], action_dims: dict[Any, int]) -> dict[Any, VertexSpec]:
    """One :class:`VertexSpec` per vertex."""
    specs = {}
    for v, attrs in nxg.nodes(data=True):
        period = attrs.get("period", defaults["period"])
        if level_periods is not None and "period" not in attrs:
            period = level_periods[levels[v]]
        specs[v] = VertexSpec(
            action_dim=attrs.get("action_dim", action_dims.get(v, defaults["action_dim"])),
            message_dim=attrs.get("message_dim", defaults["message_dim"]),
            phi=attrs.get("phi", defaults["phi"]), psi=attrs.get("psi", defaults["psi"]),
            share=attrs.get("share", defaults["share"]), period=period, reward=rewards[v],
            instruct=attrs.get("instruct", defaults["instruct"]), learn=attrs.get("learn", defaults["learn"]),
        )
    return specs


def check_groups(graph: RNGraph) -> None:
    """A group's vertices sit at one level and share their attributes; a ``mean`` reads one group's messages."""
    for g, members in graph.groups.items():
        levels = {graph.level(v) for v in members}
        if len(levels) > 1:
            raise GraphError(
                f"group {g!r} mixes levels {sorted(levels)} ({short(members)}); a group is evaluated in one "
                "batched call, so all its vertices must sit at the same level."
            )
        for key in ("phi", "action_dim", "message_dim", "period", "reward", "instruct", "learn"):
            values = {repr(graph.attr(v, key)) for v in members}
            if len(values) > 1 and not (key == "action_dim" and g == graph.env_group):
                raise GraphError(
                    f"group {g!r} has inconsistent {key} across its vertices {short(members)}: {short(sorted(values))}."
                )
    for v in graph.nx.nodes:
        if graph.attr(v, "phi") == "mean" and graph.level(v) > 0:
            sub_groups = {graph.group_of(s) for s in graph.subordinates(v)}
            if len(sub_groups) > 1:
                raise GraphError(
                    f"vertex {v!r} uses phi='mean' over subordinates from groups {sorted(sub_groups)}; "
                    "a mean needs messages of one size, so its subordinates must share a group."
                )


def check_instructions(graph: RNGraph) -> None:
    """An ``addressed`` group's action must cut into one equal block per subordinate; a group that learns by
    ``gradient`` sits above the motors and decides every step."""
    for g, members in graph.groups.items():
        if g == graph.env_group:  # motors always learn by RL (a graph-wide default leaves them so)
            own = next((v for v in members if graph.nx.nodes[v].get("learn") == "gradient"), None)
            if own is not None:
                raise GraphError(f"vertex {own!r}: learn='gradient' trains a vertex through its subordinates' "
                                 "losses, but a motor has no subordinates (give it to the vertices above).")
        elif graph.attr(members[0], "learn") == "gradient":
            if graph.period(g) > 1:
                raise GraphError(f"vertex {members[0]!r}: learn='gradient' needs decision period 1 (a held "
                                 f"instruction would need its decision step recomputed), got {graph.period(g)}.")
        if g == graph.env_group or graph.attr(members[0], "instruct") != "addressed":
            continue
        slots, have = graph._slots(g), graph.group_action_dim(g)
        if have % slots:
            v = max(members, key=lambda u: len(graph.subordinates(u)))
            raise GraphError(
                f"vertex {v!r}: instruct='addressed' cuts its action_dim {have} into one block for each of its "
                f"{slots} subordinates; set action_dim to a multiple of {slots}."
            )


def check_rewards(graph: RNGraph) -> None:
    """Each vertex's reward function fits its place in the graph (its own :meth:`VertexReward.check`)."""
    for v in graph.nx.nodes:
        r = graph.reward(v)
        if r.needs_superiors and not graph.superiors(v):
            raise GraphError(f"vertex {v!r}: reward {str(r)!r} needs superiors, but {v!r} has none "
                             "(a root keeps 'psi').")
        try:
            r.check(graph, v)
        except ValueError as err:
            raise GraphError(str(err)) from None


class _ReadOnlyDict(dict):
    """A vertex's or edge's attributes in a validated graph: read-only, yet picklable (for ``ParallelEnv``)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "an RNGraph's graph is frozen after validation: edit a copy (graph.nx.copy()) and build a new RNGraph."
        )

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self) -> tuple:
        return _ReadOnlyDict, (dict(self),)


def frozen_copy(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy that cannot change under RNGraph's cached levels, groups and positions: its structure is frozen
    (:func:`networkx.freeze`) and its vertex and edge attributes are read-only."""
    frozen = graph.copy()
    for v, data in frozen._node.items():
        frozen._node[v] = _ReadOnlyDict(data)
    for u, nbrs in frozen._adj.items():
        for v, data in nbrs.items():
            nbrs[v] = frozen._pred[v][u] = _ReadOnlyDict(data)
    return nx.freeze(frozen)


