"""The agent graph of a Reinforcement Network: a validated DAG of vertices.

An edge ``j -> i`` means *j is a superior of i*. Sinks are **motors**: each drives exactly one env agent.
Vertices are grouped (like TorchRL's multi-agent groups) so that every vertex of a group is evaluated in one
batched call: by default one group per level, where a vertex's level is its height above the motors
(motors are level 0, a vertex is one above its highest subordinate). Superiors therefore always sit at a
higher level than their subordinates, and processing levels in descending order is a topological order.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from torchrl_rn.rewards import GoalReward, VertexReward, as_reward

__all__ = ["RNGraph", "GraphError", "VERTEX_DEFAULTS", "INSTRUCT_OPTIONS"]

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


class RNGraph:
    """A validated Reinforcement-Network DAG.

    Args:
        graph (nx.DiGraph): edges go from superior to subordinate. Vertex attributes (all optional):
            ``action_dim`` (int, size of the instruction a non-motor vertex sends down; default 4, or, over motors
            with a goal reward, one goal per subordinate when that is larger),
            ``message_dim`` (int, output size of a ``"learned"`` message; default 16),
            ``phi`` (``"identity"`` | ``"mean"`` | ``"learned"``: the message function),
            ``psi`` (``"sum"`` | ``"mean"`` | callable: how a vertex's reward is made from its
            subordinates' rewards; a callable gets a ``[*B, k]`` tensor and returns ``[*B]``),
            ``share`` (``"split"`` | ``"copy"``: a vertex with several superiors gives each its reward
            divided by their number, or in full), ``period`` (int >= 1: the vertex decides every ``period``
            environment steps and holds its action in between; default 1, every step; all vertices of a group
            share one period), ``agent`` (int, the env agent a motor drives),
            ``group`` (str, the vertex group; defaults to ``env_group`` for motors and
            ``"level<l>"`` otherwise), ``reward`` (the vertex's reward function, a
            :class:`~torchrl_rn.rewards.VertexReward` or its string: ``"psi"`` (default), ``"advantage[:alpha]"``,
            ``"goal:SLICE,..."``; see :mod:`torchrl_rn.rewards`; all vertices of a group share one),
            ``instruct`` (``"broadcast"`` | ``"addressed"``: every subordinate of the vertex reads its whole
            action (default), or the action is cut into equal blocks, one per subordinate in
            :meth:`subordinates` order, and each subordinate reads only its own, so a manager can tell its
            subordinates apart even when they share weights; all vertices of a group share one; see
            :meth:`instruction_slice`). The order of a vertex's superiors and subordinates is the order in
            which the edges were added (or the edge attribute ``order`` where given); it fixes the
            concatenation order of instructions and messages. The graph is copied and frozen: ``RNGraph.nx``
            (structure and attributes) is read-only, so the cached levels, groups and positions cannot go stale;
            edit ``graph.nx.copy()`` and build a new ``RNGraph`` instead.

    Keyword Args:
        n_agents (int, optional): number of env agents. If given, the motors must bind exactly the agents
            ``0 .. n_agents - 1``.
        env_group (str): the env's agent group key, used as the motors' group. Defaults to ``"agents"``.
        defaults (dict, optional): overrides of :data:`VERTEX_DEFAULTS` for vertices that do not set an
            attribute themselves.
        periods (sequence of int, optional): one decision period per level, from the motors (level 0) up, for the
            vertices that set no ``period`` themselves; it needs exactly ``depth + 1`` entries. The builders
            (:meth:`flat`, :meth:`tree`, :meth:`overlapping`, :meth:`from_spec`) pass it on, e.g.
            ``RNGraph.tree(4, [2], periods=[1, 5])``: the level-1 managers decide every 5 steps.
        vertex_reward (str or VertexReward, optional): the reward function of every vertex that has superiors and
            sets no ``reward`` itself (roots keep ``psi``; a goal reward goes to the motors only); the builders pass it on, e.g.
            ``RNGraph.tree(4, [2], vertex_reward="advantage:0.5")``.

    Raises:
        GraphError: on a cycle, a motor problem (an env agent with zero or several motors, a vertex with no
            path to the environment), an unknown attribute or option, or groups that cannot be batched.

    Examples:
        >>> import networkx as nx
        >>> from torchrl_rn import RNGraph
        >>> g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
        >>> graph = RNGraph(g, n_agents=2)
        >>> graph.groups
        {'agents': ['m0', 'm1'], 'level1': ['boss']}
        >>> graph.superiors("m0"), graph.subordinates("boss")
        (['boss'], ['m0', 'm1'])
        >>> RNGraph.tree(4, branching=[2]).groups
        {'agents': ['motor_0', 'motor_1', 'motor_2', 'motor_3'], 'level1': ['l1_0', 'l1_1']}
        >>> t = RNGraph.tree(4, branching=[2, 2], periods=[1, 5, 10])
        >>> t.period("agents"), t.period("level1"), t.period("level2")
        (1, 5, 10)
    """

    def __init__(
        self,
        graph: nx.DiGraph,
        *,
        n_agents: int | None = None,
        env_group: str = "agents",
        defaults: dict[str, Any] | None = None,
        periods: Sequence[int] | None = None,
        vertex_reward: Any = None,
    ) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise GraphError(f"RNGraph expects a networkx.DiGraph, got {type(graph).__name__}.")
        if graph.number_of_nodes() == 0:
            raise GraphError("the agent graph is empty: it needs at least one motor vertex.")
        self.env_group = env_group
        self._level_periods: list[int] | None = None
        self._auto_action_dim: dict[Any, int] = {}
        self._vertex_reward = None
        if vertex_reward is not None:
            try:
                self._vertex_reward = as_reward(vertex_reward)
            except ValueError as err:
                raise GraphError(f"vertex_reward: {err}") from None
        self._defaults = dict(VERTEX_DEFAULTS)
        for key in defaults or {}:
            if key not in VERTEX_DEFAULTS:
                raise GraphError(f"unknown vertex default {key!r}; known: {sorted(VERTEX_DEFAULTS)}.")
        self._defaults.update(defaults or {})
        self.nx = _frozen_copy(graph)
        self._check_acyclic()
        self._check_attributes()
        self._levels = self._compute_levels()
        self._level_periods = self._check_periods(periods)
        self._bind_motors(n_agents)
        self._groups = self._compute_groups()
        self._auto_action_dim = self._goal_action_dims()
        self._position = {
            v: (g, i) for g, members in self._groups.items() for i, v in enumerate(members)
        }
        self._check_groups()
        self._check_instructions()
        self._check_rewards()

    # ------------------------------------------------------------------ validation
    def _check_acyclic(self) -> None:
        try:
            cycle = nx.find_cycle(self.nx)
        except nx.NetworkXNoCycle:
            return
        path = [str(u) for u, _ in cycle] + [str(cycle[0][0])]
        raise GraphError(
            f"the agent graph has a cycle: {' -> '.join(path)}. "
            "An RN graph must be acyclic (edges go from superior to subordinate)."
        )

    def _check_attributes(self) -> None:
        self._rewards: dict[Any, VertexReward] = {}
        for v, attrs in self.nx.nodes(data=True):
            unknown = set(attrs) - _KNOWN_ATTRS
            if unknown:
                raise GraphError(
                    f"vertex {v!r} has unknown attribute(s) {sorted(unknown)}; known: {sorted(_KNOWN_ATTRS)}."
                )
            phi = self.attr(v, "phi")
            if phi not in PHI_OPTIONS:
                raise GraphError(f"vertex {v!r}: unknown phi {phi!r}; choose one of {PHI_OPTIONS}.")
            psi = self.attr(v, "psi")
            if not callable(psi) and psi not in PSI_OPTIONS:
                raise GraphError(f"vertex {v!r}: unknown psi {psi!r}; choose one of {PSI_OPTIONS} or a callable.")
            try:
                self._rewards[v] = as_reward(self.attr(v, "reward"))
            except ValueError as err:
                raise GraphError(f"vertex {v!r}: {err}") from None
            share = self.attr(v, "share")
            if share not in SHARE_OPTIONS:
                raise GraphError(f"vertex {v!r}: unknown share {share!r}; choose one of {SHARE_OPTIONS}.")
            instruct = self.attr(v, "instruct")
            if instruct not in INSTRUCT_OPTIONS:
                raise GraphError(f"vertex {v!r}: unknown instruct {instruct!r}; choose one of {INSTRUCT_OPTIONS}.")
            for key in ("action_dim", "message_dim", "period"):
                value = attrs.get(key, self._defaults[key])
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                    raise GraphError(f"vertex {v!r}: {key} must be a positive int, got {value!r}.")

    def _check_periods(self, periods: Sequence[int] | None) -> list[int] | None:
        if periods is None:
            return None
        periods = list(periods)
        depth = max(self._levels.values())
        if len(periods) != depth + 1:
            raise GraphError(
                f"periods {periods} gives {len(periods)} period(s) but the graph has {depth + 1} level(s) "
                "(one period per level, from the motors up)."
            )
        for level, k in enumerate(periods):
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise GraphError(f"periods: the period of level {level} must be a positive int, got {k!r}.")
        return periods

    def _check_instructions(self) -> None:
        for g, members in self._groups.items():
            if g == self.env_group or self.attr(members[0], "instruct") != "addressed":
                continue
            slots, have = self._slots(g), self.group_action_dim(g)
            if have % slots:
                v = max(members, key=lambda u: len(self.subordinates(u)))
                raise GraphError(
                    f"vertex {v!r}: instruct='addressed' cuts its action_dim {have} into one block for each of its "
                    f"{slots} subordinates; set action_dim to a multiple of {slots}."
                )

    def _slots(self, group: str) -> int:
        """The number of subordinates of the group's busiest vertex: an addressed action has that many blocks."""
        return max(len(self.subordinates(v)) for v in self._groups[group])

    def _check_rewards(self) -> None:
        for v in self.nx.nodes:
            r = self._rewards[v]
            if r.needs_superiors and not self.superiors(v):
                raise GraphError(f"vertex {v!r}: reward {str(r)!r} needs superiors, but {v!r} has none "
                                 "(a root keeps 'psi').")
            if isinstance(r, GoalReward):
                if self._levels[v] != 0:
                    raise GraphError(f"vertex {v!r}: a goal reward applies to motors only (its goal lives in the env's "
                                     f"observation), but {v!r} is at level {self._levels[v]}.")
                for s in self.superiors(v):
                    n, have = len(self.subordinates(s)), self.group_action_dim(self.group_of(s))
                    if self.attr(s, "instruct") == "addressed":
                        slots = self._slots(self.group_of(s))
                        if have // slots < r.dim:
                            raise GraphError(
                                f"vertex {s!r}: its addressed blocks of {have // slots} entries (action_dim {have} / "
                                f"{slots} subordinates) cannot hold a {r.dim}-dim goal (goal reward of {v!r}); set its "
                                f"action_dim >= {r.dim * slots}."
                            )
                        continue
                    if have < r.dim * n:
                        raise GraphError(
                            f"vertex {s!r}: its action_dim {have} cannot hold a {r.dim}-dim goal for each of its {n} "
                            f"subordinates (goal reward of {v!r}); set its action_dim >= {r.dim * n}."
                        )

    def _compute_levels(self) -> dict[Any, int]:
        levels: dict[Any, int] = {}
        for v in reversed(list(nx.topological_sort(self.nx))):
            subs = list(self.nx.successors(v))
            levels[v] = 0 if not subs else 1 + max(levels[s] for s in subs)
        return levels

    def _bind_motors(self, n_agents: int | None) -> None:
        sinks = [v for v in self.nx.nodes if self.nx.out_degree(v) == 0]
        for v, attrs in self.nx.nodes(data=True):
            if "agent" in attrs and self.nx.out_degree(v) > 0:
                raise GraphError(
                    f"vertex {v!r} is bound to env agent {attrs['agent']} but has subordinates "
                    f"{self.subordinates(v)}: only sinks (motors) act in the environment."
                )
        explicit = any("agent" in self.nx.nodes[v] for v in sinks)
        if explicit:
            for v in sinks:
                if "agent" not in self.nx.nodes[v]:
                    raise GraphError(
                        f"vertex {v!r} has no path to the environment: it has no subordinates and is not bound "
                        "to an env agent (set its 'agent' attribute or give it subordinates)."
                    )
            binding = {v: self.nx.nodes[v]["agent"] for v in sinks}
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
                detail.append(f"env agent(s) {missing} have no motor")
            if extra:
                detail.append(f"motor(s) {[by_agent[k][0] for k in extra]} bind agent indices {extra} >= {n}")
            raise GraphError(
                f"the graph has {len(binding)} motor(s) but the environment has {n} agent(s): "
                + "; ".join(detail) + "."
            )
        self.n_agents = n
        self._motors = [by_agent[k][0] for k in range(n)]

    def _compute_groups(self) -> dict[str, list]:
        groups: dict[str, list] = {self.env_group: list(self._motors)}
        others = sorted(
            (v for v in self.nx.nodes if self._levels[v] > 0),
            key=lambda v: self._levels[v],
        )  # stable: node insertion order within a level
        for v in others:
            name = self.nx.nodes[v].get("group", f"level{self._levels[v]}")
            if name == self.env_group:
                raise GraphError(f"vertex {v!r} is not a motor but is put in the motors' group {name!r}.")
            groups.setdefault(name, []).append(v)
        for v in self._motors:
            name = self.nx.nodes[v].get("group", self.env_group)
            if name != self.env_group:
                raise GraphError(
                    f"motor {v!r} is put in group {name!r}; motors share the env's group {self.env_group!r}."
                )
        return dict(sorted(groups.items(), key=lambda kv: self._levels[kv[1][0]]))

    def _check_groups(self) -> None:
        for g, members in self._groups.items():
            levels = {self._levels[v] for v in members}
            if len(levels) > 1:
                raise GraphError(
                    f"group {g!r} mixes levels {sorted(levels)} ({members}); a group is evaluated in one "
                    "batched call, so all its vertices must sit at the same level."
                )
            for key in ("phi", "action_dim", "message_dim", "period", "reward", "instruct"):
                values = {repr(self.reward(v) if key == "reward" else self.attr(v, key)) for v in members}
                if len(values) > 1 and not (key == "action_dim" and g == self.env_group):
                    raise GraphError(
                        f"group {g!r} has inconsistent {key} across its vertices {members}: {sorted(values)}."
                    )
        for v in self.nx.nodes:
            if self.attr(v, "phi") == "mean" and self._levels[v] > 0:
                sub_groups = {self.group_of(s) for s in self.subordinates(v)}
                if len(sub_groups) > 1:
                    raise GraphError(
                        f"vertex {v!r} uses phi='mean' over subordinates from groups {sorted(sub_groups)}; "
                        "a mean needs messages of one size, so its subordinates must share a group."
                    )

    # ------------------------------------------------------------------ structure
    def attr(self, v: Any, name: str) -> Any:
        """The value of vertex attribute ``name`` for ``v`` (its own, its level's ``periods`` entry, or the default)."""
        if name == "period" and self._level_periods is not None and name not in self.nx.nodes[v]:
            return self._level_periods[self._levels[v]]
        if (name == "reward" and self._vertex_reward is not None and name not in self.nx.nodes[v]
                and self.nx.in_degree(v) > 0
                and (self.nx.out_degree(v) == 0 or not isinstance(self._vertex_reward, GoalReward))):
            return self._vertex_reward  # every vertex with superiors (a goal reward: every motor with superiors)
        if name == "action_dim" and name not in self.nx.nodes[v] and v in self._auto_action_dim:
            return self._auto_action_dim[v]
        return self.nx.nodes[v].get(name, self._defaults.get(name))

    def _goal_action_dims(self) -> dict[Any, int]:
        """``action_dim`` of the superiors of goal-rewarded motors that do not set it: big enough for one goal per
        subordinate (the largest need in the group, so a group stays one size), and never below the default; for an
        ``addressed`` group, also the smallest multiple of its slots (see :meth:`instruction_slice`) that is not
        below the default (``tree:3``: 6, two entries per subordinate)."""
        sizes: dict[Any, int] = {}
        for g, members in self._groups.items():
            if g == self.env_group:
                continue
            need = max((r.dim * len(self.subordinates(v)) for v in members for s in self.subordinates(v)
                        if isinstance(r := self._rewards[s], GoalReward)), default=0)
            if self.attr(members[0], "instruct") == "addressed":  # equal blocks: a multiple of the slots
                slots = self._slots(g)
                need = max(need, slots * -(-self._defaults["action_dim"] // slots))
            for v in members:
                if need and "action_dim" not in self.nx.nodes[v]:
                    sizes[v] = max(need, self._defaults["action_dim"])
        return sizes

    def period(self, group: str) -> int:
        """The decision period of ``group``'s vertices: they decide every ``period`` environment steps.

        Examples:
            >>> RNGraph.tree(4, branching=[2], periods=[1, 5]).period("level1")
            5
        """
        return self.attr(self._groups[group][0], "period")

    def reward(self, v: Any) -> VertexReward:
        """The reward function of vertex ``v`` (:mod:`torchrl_rn.rewards`; :class:`PsiReward` by default).

        Examples:
            >>> RNGraph.tree(4, [2], vertex_reward="advantage:0.5").reward("motor_0")
            SuperiorAdvantage(alpha=0.5, normalize=True)
            >>> RNGraph.tree(4, [2], vertex_reward="advantage:0.5").reward("l1_0")  # a root keeps psi
            PsiReward()
        """
        return self._rewards[v]

    def group_reward(self, group: str) -> VertexReward:
        """The reward function shared by ``group``'s vertices."""
        return self._rewards[self._groups[group][0]]

    @property
    def goal_rewards(self) -> dict[str, GoalReward]:
        """The groups trained on a goal reward, with it: :class:`~torchrl_rn.LevelEnv` writes their
        ``("next", group, "vertex_reward")``, which :class:`~torchrl_rn.GraphGAE` reads instead of their reward.

        Examples:
            >>> RNGraph.tree(4, [2], vertex_reward="goal:pos").goal_rewards
            {'agents': GoalReward(start=0, stop=2, c=1.0, beta=0.0, scale=1.0, normalize=False)}
        """
        return {g: r for g in self._groups if isinstance(r := self.group_reward(g), GoalReward)}

    @property
    def has_periods(self) -> bool:
        """Whether some group decides less often than every step."""
        return any(self.period(g) > 1 for g in self._groups)

    @property
    def groups(self) -> dict[str, list]:
        """Group name -> ordered vertices, groups in ascending level (motors first)."""
        return {g: list(vs) for g, vs in self._groups.items()}

    @property
    def motors(self) -> list:
        """The motors, ordered by the env agent they drive."""
        return list(self._motors)

    @property
    def vertex_order(self) -> list:
        """All vertices, group after group: the order of every per-vertex matrix of this graph."""
        return [v for vs in self._groups.values() for v in vs]

    @property
    def depth(self) -> int:
        """The highest level (0 for a flat graph of motors)."""
        return max(self._levels.values())

    def level(self, v: Any) -> int:
        """Height of ``v`` above the motors (motors are 0)."""
        return self._levels[v]

    def group_level(self, group: str) -> int:
        """Level of every vertex of ``group``."""
        return self._levels[self._groups[group][0]]

    def groups_at(self, level: int) -> list[str]:
        """Names of the groups at ``level``."""
        return [g for g in self._groups if self.group_level(g) == level]

    def group_of(self, v: Any) -> str:
        """The group of vertex ``v``."""
        return self._position[v][0]

    def position(self, v: Any) -> tuple[str, int]:
        """``(group, index inside the group)`` of vertex ``v``."""
        return self._position[v]

    def _ordered(self, edges: Iterable[tuple[Any, Any, dict]], pick: int) -> list:
        edges = list(edges)
        order = [data.get("order", i) for i, (_, _, data) in enumerate(edges)]
        return [e[pick] for _, e in sorted(zip(order, edges), key=lambda x: x[0])]

    def superiors(self, v: Any) -> list:
        """``I+_v``: the superiors of ``v`` in instruction-concatenation order."""
        return self._ordered(self.nx.in_edges(v, data=True), 0)

    def subordinates(self, v: Any) -> list:
        """``I-_v``: the subordinates of ``v`` in message-concatenation order."""
        return self._ordered(self.nx.out_edges(v, data=True), 1)

    def is_layered(self) -> bool:
        """Whether every edge joins two consecutive levels (required by the TAG view of ``LevelEnv``).

        Examples:
            >>> RNGraph.tree(4, branching=[2, 2]).is_layered()
            True
            >>> skip = RNGraph(nx.DiGraph([("top", "mid"), ("mid", "m0"), ("top", "m1")]))
            >>> skip.is_layered(), skip.skipping_edges()
            (False, [('top', 'm1')])
        """
        return not self.skipping_edges()

    def skipping_edges(self) -> list[tuple[Any, Any]]:
        """The edges ``(superior, subordinate)`` that skip a level (empty for a layered graph), in edge order."""
        return [(u, v) for u, v in self.nx.edges if self._levels[u] != self._levels[v] + 1]

    # ------------------------------------------------------------------ dimensions
    def instruction_slice(self, superior: Any, subordinate: Any) -> tuple[int, int]:
        """The entries ``[start, stop)`` of ``superior``'s action that ``subordinate`` reads as its instruction.

        All of it for ``instruct="broadcast"``; for ``"addressed"``, block ``j`` of equal blocks, ``j`` being the
        subordinate's place in :meth:`subordinates` (a group's action has as many blocks as its busiest vertex has
        subordinates).

        Examples:
            >>> graph = RNGraph.tree(4, [4], vertex_attrs={"instruct": "addressed"})
            >>> [graph.instruction_slice("l1_0", m) for m in graph.subordinates("l1_0")]
            [(0, 1), (1, 2), (2, 3), (3, 4)]
            >>> RNGraph.tree(4, [4]).instruction_slice("l1_0", "motor_2")
            (0, 4)
        """
        size = self.group_action_dim(self.group_of(superior))
        if self.attr(superior, "instruct") != "addressed":
            return 0, size
        block = size // self._slots(self.group_of(superior))
        j = self.subordinates(superior).index(subordinate)
        return j * block, (j + 1) * block

    def group_action_dim(self, group: str, env_action_dim: int | None = None) -> int:
        """Size of one vertex's action in ``group`` (the env's action size for motors)."""
        if group == self.env_group:
            if env_action_dim is None:
                raise ValueError("the motors' action size comes from the env: pass env_action_dim.")
            return env_action_dim
        return self.attr(self._groups[group][0], "action_dim")

    def dims(self, obs_dim: int) -> dict[str, dict[str, int]]:
        """Per-group sizes given the env's per-agent observation size.

        Returns ``{group: {"observation": o-, "message": m, "instruction": o+, "n": vertices}}``; a group's
        observation/instruction size is the largest of its vertices' (shorter ones are zero-padded, so that
        vertices with different numbers of subordinates or superiors still share one batched call).
        """
        out: dict[str, dict[str, int]] = {}
        for g, members in self._groups.items():
            if g == self.env_group:
                obs = obs_dim
            else:
                obs = max(sum(out[self.group_of(s)]["message"] for s in self.subordinates(v)) for v in members)
            phi = self.attr(members[0], "phi")
            if phi == "identity":
                msg = obs
            elif phi == "mean":
                msg = obs if g == self.env_group else out[self.group_of(self.subordinates(members[0])[0])]["message"]
            else:
                msg = self.attr(members[0], "message_dim")
            instr = max(
                (sum(b - a for a, b in (self.instruction_slice(s, v) for s in self.superiors(v))) for v in members),
                default=0,
            )
            out[g] = {"observation": obs, "message": msg, "instruction": instr, "n": len(members)}
        return out

    # ------------------------------------------------------------------ matrices
    def adjacency(self, neighbourhood: str = "both") -> torch.Tensor:
        """``[N, N]`` 0/1 matrix in :attr:`vertex_order`: entry ``(i, j)`` is 1 if ``j`` collaborates with ``i``.

        Args:
            neighbourhood: ``"up"`` (superiors), ``"down"`` (subordinates) or ``"both"``.
        """
        if neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"unknown neighbourhood {neighbourhood!r}; choose one of {NEIGHBOURHOODS}.")
        down = torch.from_numpy(nx.to_numpy_array(self.nx, nodelist=self.vertex_order, weight=None)).float()
        return {"down": down, "up": down.T, "both": down + down.T}[neighbourhood].contiguous()

    def reward_weights(self, group: str) -> tuple[list[str], torch.Tensor] | None:
        """Linear reward routing into ``group``: ``(source groups, W)`` with ``r_group = W @ r_sources``.

        ``r_sources`` is the concatenation (in the listed group order) of the source groups' per-vertex rewards.
        Returns ``None`` for the motors' group (their reward is the env's) and raises for a callable ``psi``
        (routed vertex by vertex instead, see :meth:`subordinate_shares`).
        """
        if group == self.env_group:
            return None
        members = self._groups[group]
        sources = sorted({self.group_of(s) for v in members for s in self.subordinates(v)},
                         key=list(self._groups).index)
        offset, start = 0, {}
        for g in sources:
            start[g] = offset
            offset += len(self._groups[g])
        w = torch.zeros(len(members), offset)
        for i, v in enumerate(members):
            psi = self.attr(v, "psi")
            if callable(psi):
                raise ValueError(f"vertex {v!r} has a callable psi: it has no reward matrix.")
            subs = self.subordinates(v)
            for s, share in zip(subs, self.subordinate_shares(v)):
                g, j = self.position(s)
                w[i, start[g] + j] += share / (len(subs) if psi == "mean" else 1.0)
        return sources, w

    def subordinate_shares(self, v: Any) -> list[float]:
        """The fraction of each subordinate's reward that reaches ``v`` (``share`` of the subordinate)."""
        return [
            1.0 / len(self.superiors(s)) if self.attr(s, "share") == "split" else 1.0
            for s in self.subordinates(v)
        ]

    # ------------------------------------------------------------------ builders
    @classmethod
    def flat(cls, n_agents: int, **kwargs: Any) -> RNGraph:
        """Motors only: ``n_agents`` independent vertices (with ``beta=0`` this is IPPO).

        Examples:
            >>> RNGraph.flat(3).groups
            {'agents': ['motor_0', 'motor_1', 'motor_2']}
        """
        _check_count(n_agents)
        g = nx.DiGraph()
        g.add_nodes_from(f"motor_{k}" for k in range(n_agents))
        return cls(g, n_agents=n_agents, **kwargs)

    @classmethod
    def tree(cls, n_agents: int, branching: Sequence[int] = (2,), *, vertex_attrs: dict | None = None,
             **kwargs: Any) -> RNGraph:
        """A hierarchy over ``n_agents`` motors: level ``l`` has one vertex per ``branching[l-1]`` vertices below.

        A last vertex of a level takes the remainder when the count does not divide evenly.

        Args:
            n_agents: number of motors.
            branching: subordinates per vertex at each level; ``[2]`` is a 2-level tree, ``[2, 2]`` 3 levels.

        Keyword Args:
            vertex_attrs: attributes given to every non-motor vertex (e.g. ``{"phi": "learned"}``).

        Examples:
            >>> t = RNGraph.tree(4, branching=[2, 2])
            >>> t.depth, t.subordinates("l2_0")
            (2, ['l1_0', 'l1_1'])
        """
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

    @classmethod
    def overlapping(cls, n_agents: int, n_managers: int = 2, *, overlap: int = 1, root: bool = False,
                    vertex_attrs: dict | None = None, **kwargs: Any) -> RNGraph:
        """A DAG with shared subordinates: managers over contiguous blocks of motors that overlap.

        Manager ``i`` commands the motors of block ``i`` plus the first ``overlap`` motors of the next block,
        so those motors have two superiors (their instructions are concatenated in manager order).

        Blocks hold ``ceil(n_agents / n_managers)`` motors, so ``n_managers`` must leave every manager a block
        (5 motors fit 1, 2, 3 or 5 managers, not 4); otherwise a :class:`GraphError` says which counts fit.

        Keyword Args:
            overlap: motors shared by consecutive managers.
            root: add a top vertex over the managers (a 3-level DAG).
            vertex_attrs: attributes given to every non-motor vertex.

        Examples:
            >>> d = RNGraph.overlapping(4, 2)
            >>> d.subordinates("l1_0"), d.superiors("motor_2")
            (['motor_0', 'motor_1', 'motor_2'], ['l1_0', 'l1_1'])
        """
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

    @classmethod
    def from_spec(cls, spec: str, n_agents: int, **kwargs: Any) -> RNGraph:
        """Build from a short string, as the CLI does.

        ``"flat"``; ``"tree:2"`` / ``"tree:2,2"`` (branching per level); ``"dag"`` / ``"dag:M"``
        (``M`` overlapping managers, default 2); ``"dag:M+root"`` adds a root above them; or the path of a
        ``.json`` file holding a graph in networkx's node-link format (``nx.node_link_data(g, edges="edges")``).

        Examples:
            >>> RNGraph.from_spec("tree:2", 4).depth
            1
        """
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

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}={len(vs)}" for g, vs in self._groups.items())
        return f"RNGraph(n_agents={self.n_agents}, depth={self.depth}, groups({groups}))"


class _ReadOnlyDict(dict):
    """A vertex's or edge's attributes in a validated graph: read-only, yet picklable (for ``ParallelEnv``)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "an RNGraph's graph is frozen after validation: edit a copy (graph.nx.copy()) and build a new RNGraph."
        )

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self) -> tuple:
        return _ReadOnlyDict, (dict(self),)


def _frozen_copy(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy that cannot change under RNGraph's cached levels, groups and positions: its structure is frozen
    (:func:`networkx.freeze`) and its vertex and edge attributes are read-only."""
    frozen = graph.copy()
    for v, data in frozen._node.items():
        frozen._node[v] = _ReadOnlyDict(data)
    for u, nbrs in frozen._adj.items():
        for v, data in nbrs.items():
            nbrs[v] = frozen._pred[v][u] = _ReadOnlyDict(data)
    return nx.freeze(frozen)


def _check_count(n_agents: int) -> None:
    if not isinstance(n_agents, int) or n_agents < 1:
        raise GraphError(f"n_agents must be a positive int, got {n_agents!r}.")


