"""Compose the vertex groups of an :class:`RNGraph` into TorchRL policies and critics.

One environment step is two passes over the groups: **bottom-up** (ascending level) every group gathers its
subordinates' messages into its observation ``o-`` and encodes its own message; **top-down** (descending level)
every group gathers its superiors' actions into its instruction ``o+`` and samples its action. The motors'
actions are the env's actions, so a stock :class:`~torchrl.collectors.Collector` runs the composed policy.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import PopArtValueNorm

from torchrl_rn.graph import RNGraph
from torchrl_rn.keys import KEYS
from torchrl_rn.modules.group import VertexGroup

__all__ = ["GraphComposer"]


class GraphComposer(nn.Module):
    """Builds one :class:`VertexGroup` per group of ``graph`` and chains them.

    Args:
        graph (RNGraph): the agent graph.
        env (EnvBase): the environment (usually wrapped in :class:`~torchrl_rn.LevelEnv`); the motors' observation
            size and action spec are read from its ``(graph.env_group, "observation" | "action")`` entries.

    Keyword Args:
        num_cells (int): hidden width of the motors' MLPs. Defaults to 256 (TorchRL's MAPPO tutorial).
        manager_cells (int, optional): hidden width of the other vertices' MLPs; defaults to ``num_cells``.
            Managers see few, low-dimensional inputs, and a narrower width keeps the graph's cost near a flat
            policy's.
        depth (int): hidden layers of the policy and value MLPs. Defaults to 2.
        share_params (bool): share weights inside a group. Defaults to ``True``.
        critic (str, mapping or sequence): ``"local"`` (IPPO-style, default) or ``"group"`` (critic centralised
            inside each group), for every group; or chosen per group, as a ``{group: scope}`` mapping (groups left
            out are ``"local"``) or one scope per level from the motors up (``["group", "local"]``: a MAPPO-style
            centralised critic for the motors under managers with local critics, different learners per level).
        detach_messages (bool): stop superiors' losses from training their subordinates' message encoders
            (TAG's decentralised training). Defaults to ``False`` (end-to-end).
        value_norm (bool): every group's value head predicts *normalised* values, mapped back to the return scale by
            :class:`~torchrl_rn.value_norm.Denormalize` with the group's own TorchRL ``PopArtValueNorm``
            (``vertex_groups[g].value_norm``, which :class:`~torchrl_rn.RNLoss` updates). Defaults to ``False``.
        observe_clock (bool): vertices whose superiors decide every ``k > 1`` steps also observe the steps left until
            those superiors' next decisions (``(group, "superior_clock")``, see
            :class:`~torchrl_rn.modules.decisions.SuperiorClock`).
            Defaults to ``False``; it changes nothing in a graph without periods.
        device: parameter device; defaults to the env's.

    Attributes:
        messages (TensorDictSequential): the bottom-up pass; writes every group's ``observation`` (and
            ``message`` for non-identity ``phi``).
        policy (TensorDictSequential): bottom-up then top-down; writes every group's ``instruction``,
            ``action`` and ``action_log_prob`` (and ``decided`` for a group with a decision period > 1, whose action
            is held between decisions by :class:`~torchrl_rn.modules.decisions.DecisionHold`). Run it with a
            :class:`~torchrl.collectors.Collector`.
        critic (TensorDictSequential): bottom-up then every group's ``state_value``; works on a step's
            ``"next"`` data too, where :class:`~torchrl_rn.LevelEnv` carries the step's instructions.
        end_to_end (TensorDictSequential or None): with groups that learn by ``gradient`` (vertex attribute
            ``learn``), their deterministic actions and every instruction, top-down, from data whose observations
            the bottom-up pass has written: what :class:`~torchrl_rn.RNLoss` runs with gradients so that the
            subordinates' losses reach those groups. ``None`` without such groups.

    Examples:
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=32)
        >>> td = composer.policy(env.reset())
        >>> td["level1", "action"].shape, td["agents", "instruction"].shape
        (torch.Size([2, 2, 4]), torch.Size([2, 4, 4]))
    """

    def __init__(
        self,
        graph: RNGraph,
        env: EnvBase,
        *,
        num_cells: int = 256,
        manager_cells: int | None = None,
        depth: int = 2,
        share_params: bool = True,
        critic: str | Mapping[str, str] | Sequence[str] = "local",
        detach_messages: bool = False,
        value_norm: bool = False,
        observe_clock: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        g0 = graph.env_group
        obs_key, act_key = KEYS.of(g0, "observation"), KEYS.of(g0, "action")
        obs_spec = env.full_observation_spec_unbatched
        act_spec = env.full_action_spec_unbatched
        for key, spec in ((obs_key, obs_spec), (act_key, act_spec)):
            if key not in spec.keys(True, True):
                raise KeyError(
                    f"the env has no {key} entry; the motors' group {g0!r} must be the env's agent group "
                    f"(the env has: {', '.join(map(str, spec.keys(True, True)))})."
                )
        if obs_spec[obs_key].shape[0] != graph.n_agents:
            raise ValueError(
                f"spec mismatch: the env's {obs_key} has {obs_spec[obs_key].shape[0]} agents but the graph has "
                f"{graph.n_agents} motors."
            )
        env_action_dim = act_spec[act_key].shape[-1]
        for v in graph.motors:
            declared = graph.nx.nodes[v].get("action_dim")
            if declared is not None and declared != env_action_dim:
                raise ValueError(
                    f"spec mismatch: motor {v!r} declares action_dim={declared} but the env's {act_key} has "
                    f"{env_action_dim} per agent."
                )
        self.device = torch.device(device) if device is not None else env.device
        self.layout = graph.layout(obs_spec[obs_key].shape[-1])
        self.dims = graph.dims(obs_spec[obs_key].shape[-1])
        consumed = {graph.group_of(s) for v in graph.nx.nodes for s in graph.subordinates(v)}
        critics = _per_group(critic, graph)
        self.vertex_groups = nn.ModuleDict({
            g: VertexGroup(graph, g, self.layout, act_spec[act_key],
                           num_cells=num_cells if g == g0 else (manager_cells or num_cells), depth=depth,
                           share_params=share_params, critic=critics[g], detach_messages=detach_messages,
                           consumed=g in consumed, observe_clock=observe_clock,
                           value_norm=PopArtValueNorm(shape=1) if value_norm else None, device=self.device)
            for g in graph.groups
        })
        up = [m for vg in self.vertex_groups.values() for m in (vg.observation_gather, vg.encoder) if m is not None]
        down = [m for vg in reversed(self.vertex_groups.values())
                for m in (vg.instruction_gather, vg.clock, *vg.acting, vg.random_goals, vg.hold) if m is not None]
        clocks = [vg.clock for vg in self.vertex_groups.values() if vg.clock is not None]
        self.messages = _sequence(up)
        self.policy = TensorDictSequential(*up, *down)
        self.critic = TensorDictSequential(*up, *clocks, *(vg.value_head for vg in self.vertex_groups.values()))
        # learn="gradient" groups' actions recomputed with gradients, top-down, and the instructions read below them
        self.end_to_end = None
        if any(vg.deterministic is not None for vg in self.vertex_groups.values()):
            self.end_to_end = TensorDictSequential(*(
                m for vg in reversed(self.vertex_groups.values())
                for m in (vg.instruction_gather, *(vg.acting if vg.deterministic is not None else ())) if m is not None))
        self.to(self.device)  # the gather indices and mean counts are buffers built on the CPU

    def goal_warmup(self, active: bool = True) -> list[str]:
        """Turns the goal warm-up on or off: superiors of goal-rewarded vertices give uniformly random goals
        (:class:`~torchrl_rn.modules.decisions.RandomGoals`) and :class:`~torchrl_rn.RNLoss` leaves them untrained, so
        their
        subordinates learn to reach goals first (the feudal warm-up on random goals). Returns the groups affected
        (empty without goal rewards).

        Examples:
            >>> from torchrl.envs import TransformedEnv
            >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
            >>> from torchrl_rn.envs import MockMultiAgentEnv
            >>> graph = RNGraph.tree(2, [2], vertex_reward="goal:pos")
            >>> composer = GraphComposer(graph, TransformedEnv(MockMultiAgentEnv(2), LevelEnv(graph)), num_cells=8)
            >>> composer.goal_warmup(True)
            ['level1']
            >>> composer.warming_up
            ['level1']
            >>> composer.goal_warmup(False), composer.warming_up
            (['level1'], [])
        """
        groups = [g for g, vg in self.vertex_groups.items() if vg.random_goals is not None]
        for g in groups:
            self.vertex_groups[g].random_goals.active.fill_(bool(active))
        return groups

    @property
    def warming_up(self) -> list[str]:
        """The groups giving random goals now (see :meth:`goal_warmup`)."""
        return [g for g, vg in self.vertex_groups.items()
                if vg.random_goals is not None and bool(vg.random_goals.active)]

    def actor(self, group: str) -> TensorDictModuleBase:
        """The policy of ``group`` alone: reads ``(group, "observation" | "instruction")``."""
        return self.vertex_groups[group].actor

    def value_head(self, group: str) -> TensorDictModuleBase:
        """The value head of ``group`` alone: reads ``(group, "observation" | "instruction")``."""
        return self.vertex_groups[group].value_head


def _per_group(critic: str | Mapping[str, str] | Sequence[str], graph: RNGraph) -> dict[str, str]:
    """``critic`` as one scope per group (a str for all, a ``{group: scope}`` mapping, or one scope per level)."""
    if isinstance(critic, str):
        return {g: critic for g in graph.groups}
    if isinstance(critic, Mapping):
        unknown = set(critic) - set(graph.groups)
        if unknown:
            raise KeyError(f"critic names unknown group(s) {sorted(unknown)}; groups: {list(graph.groups)}.")
        return {g: critic.get(g, "local") for g in graph.groups}
    critic = list(critic)
    if len(critic) != graph.depth + 1:
        raise ValueError(f"critic {critic} gives {len(critic)} scope(s) but the graph has {graph.depth + 1} level(s) "
                         "(one per level, from the motors up).")
    return {g: critic[graph.group_level(g)] for g in graph.groups}


def _sequence(modules: list[TensorDictModuleBase]) -> TensorDictSequential:
    # an empty TensorDictSequential is rejected; a flat identity graph has no bottom-up work
    return TensorDictSequential(*modules) if modules else TensorDictSequential(_NoOp())


class _NoOp(TensorDictModuleBase):
    in_keys: list = []
    out_keys: list = []

    def forward(self, tensordict):
        return tensordict
