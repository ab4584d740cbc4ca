"""The agent graph of a Reinforcement Network: a validated DAG of vertices.

An edge ``j -> i`` means *j is a superior of i*. Sinks are **motors**: each drives exactly one env agent.
Vertices are grouped (like TorchRL's multi-agent groups) so that every vertex of a group is evaluated in one
batched call: by default one group per level, where a vertex's level is its height above the motors
(motors are level 0, a vertex is one above its highest subordinate). Superiors therefore always sit at a
higher level than their subordinates, and processing levels in descending order is a topological order.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx
import torch

from torchrl_rn.graph import builders, layout, validate
from torchrl_rn.graph.spec import VERTEX_DEFAULTS, GraphError, VertexSpec
from torchrl_rn.rewards import VertexReward, as_reward

__all__ = ["RNGraph"]


class RNGraph:
    """A validated Reinforcement-Network DAG.

    Args:
        graph (nx.DiGraph): edges go from superior to subordinate. Vertex attributes (all optional): those of
            :class:`~torchrl_rn.graph.spec.VertexSpec`, ``agent`` (int, the env agent a motor drives) and ``group``
            (str, the vertex group; defaults to ``env_group`` for motors and ``"level<l>"`` otherwise). The order
            of a vertex's superiors and subordinates is the order in which the edges were added (or the edge attribute ``order`` where given); it fixes the
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
            sets no ``reward`` itself (roots keep ``psi``; a goal reward goes to the motors only); the builders pass
            it on, e.g.
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
        validate.check_size(graph, n_agents)
        self.env_group = env_group
        default_reward = None
        if vertex_reward is not None:
            try:
                default_reward = as_reward(vertex_reward)
            except ValueError as err:
                raise GraphError(f"vertex_reward: {err}") from None
        self._defaults = dict(VERTEX_DEFAULTS)
        for key in defaults or {}:
            if key not in VERTEX_DEFAULTS:
                raise GraphError(f"unknown vertex default {key!r}; known: {sorted(VERTEX_DEFAULTS)}.")
        self._defaults.update(defaults or {})
        self.nx = validate.frozen_copy(graph)
        validate.check_acyclic(self.nx)
        rewards = validate.check_attributes(self.nx, self._defaults, default_reward)
        self._levels = validate.compute_levels(self.nx)
        level_periods = validate.check_periods(periods, self._levels)
        self.n_agents, self._motors = validate.bind_motors(self.nx, n_agents, self.subordinates)
        self._groups = validate.compute_groups(self.nx, self._levels, self._motors, env_group)
        action_dims = validate.goal_action_dims(self, self.nx, self._defaults, rewards, self._groups)
        self._specs: dict[Any, VertexSpec] = validate.resolve_specs(self.nx, self._defaults, self._levels,
                                                                    level_periods, rewards, action_dims)
        self._position = {
            v: (g, i) for g, members in self._groups.items() for i, v in enumerate(members)
        }
        self._layouts: dict[int, layout.GroupLayout] = {}
        validate.check_groups(self)
        validate.check_instructions(self)
        validate.check_rewards(self)

    # ------------------------------------------------------------------ structure
    def attr(self, v: Any, name: str) -> Any:
        """The value of vertex attribute ``name`` for ``v`` (resolved once: its own, its level's ``periods`` entry,
        the graph's ``vertex_reward``, the size its subordinates' goals need, or the default)."""
        if name in VertexSpec.__dataclass_fields__:
            return getattr(self._specs[v], name)
        return self.nx.nodes[v].get(name, self._defaults.get(name))

    def spec(self, v: Any) -> VertexSpec:
        """The resolved attributes of vertex ``v``."""
        return self._specs[v]

    def _slots(self, group: str) -> int:
        """The number of subordinates of the group's busiest vertex: an addressed action has that many blocks."""
        return max(len(self.subordinates(v)) for v in self._groups[group])

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
        return self._specs[v].reward

    def group_reward(self, group: str) -> VertexReward:
        """The reward function shared by ``group``'s vertices."""
        return self._specs[self._groups[group][0]].reward

    @property
    def goal_rewards(self) -> dict[str, VertexReward]:
        """The groups trained on a goal reward, with it: :class:`~torchrl_rn.LevelEnv` writes their
        ``("next", group, "vertex_reward")``, which :class:`~torchrl_rn.GraphGAE` reads instead of their reward.

        Examples:
            >>> RNGraph.tree(4, [2], vertex_reward="goal:pos").goal_rewards
            {'agents': GoalReward(start=0, stop=2, c=1.0, beta=0.0, scale=1.0, normalize=False)}
        """
        return self.env_rewards

    @property
    def env_rewards(self) -> dict[str, VertexReward]:
        """The groups whose reward function the env applies (:meth:`VertexReward.env_module`), with it: the goal
        rewards (:attr:`goal_rewards`) of the kinds that ship."""
        return {g: r for g in self._groups if (r := self.group_reward(g)).applied_by_env}

    @property
    def has_periods(self) -> bool:
        """Whether some group decides less often than every step."""
        return any(self.period(g) > 1 for g in self._groups)

    def learns_by_gradient(self, group: str) -> bool:
        """Whether ``group`` (above the motors) learns end to end through its subordinates (``learn="gradient"``)."""
        return group != self.env_group and self.attr(self._groups[group][0], "learn") == "gradient"

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
        vertices with different numbers of subordinates or superiors still share one batched call). The same as
        :meth:`layout`'s ``dims``, as plain dicts.
        """
        return {g: d.as_dict() for g, d in self.layout(obs_dim).dims.items()}

    def layout(self, obs_dim: int) -> layout.GroupLayout:
        """The :class:`~torchrl_rn.graph.layout.GroupLayout` for the env's per-agent observation size (computed once
        per size)."""
        if obs_dim not in self._layouts:
            self._layouts[obs_dim] = layout.GroupLayout(self, obs_dim)
        return self._layouts[obs_dim]

    # ------------------------------------------------------------------ matrices
    def adjacency(self, neighbourhood: str = "both") -> torch.Tensor:
        """``[N, N]`` 0/1 matrix in :attr:`vertex_order`: entry ``(i, j)`` is 1 if ``j`` collaborates with ``i``.

        Args:
            neighbourhood: ``"up"`` (superiors), ``"down"`` (subordinates) or ``"both"``.
        """
        return layout.adjacency(self, neighbourhood)

    def reward_weights(self, group: str) -> tuple[list[str], torch.Tensor] | None:
        """Linear reward routing into ``group``: ``(source groups, W)`` with ``r_group = W @ r_sources``.

        ``r_sources`` is the concatenation (in the listed group order) of the source groups' per-vertex rewards.
        Returns ``None`` for the motors' group (their reward is the env's) and raises for a callable ``psi``
        (routed vertex by vertex instead, see :meth:`subordinate_shares`).
        """
        return layout.reward_weights(self, group)

    def goal_index(self, group: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each of ``group``'s vertices reads a ``dim``-sized goal from each superior in its instruction
        (:func:`~torchrl_rn.graph.layout.goal_index`)."""
        return layout.goal_index(self, group, dim)

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
        return builders.flat(cls, n_agents, **kwargs)

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
        return builders.tree(cls, n_agents, branching, vertex_attrs=vertex_attrs, **kwargs)

    @classmethod
    def overlapping(cls, n_agents: int, n_managers: int = 2, *, overlap: int = 1, root: bool = False,
                    vertex_attrs: dict | None = None, **kwargs: Any) -> RNGraph:
        """A DAG with shared subordinates: managers over contiguous blocks of motors that overlap.

        Manager ``i`` commands the motors of block ``i`` plus the first ``overlap`` motors of the next block,
        so those motors have two superiors (their instructions are concatenated in manager order).

        Blocks hold ``ceil(n_agents / n_managers)`` motors, so ``n_managers`` must leave every manager a block
        (5 motors fit 1, 2, 3 or 5 managers, not 4); otherwise a :class:`GraphError` says which counts fit.

        Keyword Args:
            overlap: motors shared by consecutive managers, from 0 to the block size.
            root: add a top vertex over the managers (a 3-level DAG).
            vertex_attrs: attributes given to every non-motor vertex.

        Examples:
            >>> d = RNGraph.overlapping(4, 2)
            >>> d.subordinates("l1_0"), d.superiors("motor_2")
            (['motor_0', 'motor_1', 'motor_2'], ['l1_0', 'l1_1'])
        """
        return builders.overlapping(cls, n_agents, n_managers, overlap=overlap, root=root,
                                    vertex_attrs=vertex_attrs, **kwargs)

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
        return builders.from_spec(cls, spec, n_agents, **kwargs)

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}={len(vs)}" for g, vs in self._groups.items())
        return f"RNGraph(n_agents={self.n_agents}, depth={self.depth}, groups({groups}))"
