"""``LevelView``: TAG's view of one level of a Reinforcement Network, as its own TorchRL transform.

The vertices below level ``l`` become part of the environment. Its actions are level ``l``'s instructions, its
observations their messages from below and its rewards ``psi`` of the level below's rewards: an ordinary TorchRL env
that any stock policy and loss can train. Stack views (``l = 1`` on the raw env, ``l = 2`` on that) for a 3-level
hierarchy, as TAG does.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded

from torchrl_rn.envs.level_env import LevelEnv
from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.keys import KEYS
from torchrl_rn.modules import GraphComposer

__all__ = ["LevelView"]


class LevelView(LevelEnv):
    """TAG's view of level ``level``: the levels below act inside the env, driven by ``lower_policy``.

    It writes the routed rewards, done flags and carried instructions of level ``level``'s groups as
    :class:`~torchrl_rn.LevelEnv` writes them for every group, and replaces the env's observation and action by that
    level's (its subordinates' messages, its instructions).

    Args:
        graph (RNGraph): the agent graph; it must be layered (edges join consecutive levels).

    Keyword Args:
        level (int): ``l >= 1``; the wrapped env must expose level ``l - 1`` (the raw env for ``l = 1``, a
            ``LevelView`` of level ``l - 1`` otherwise).
        lower_policy (GraphComposer): the composer whose level ``l - 1`` policy and messages run inside the env. It
            acts in the current exploration mode, without gradients. The view keeps a reference to it and does not
            own it: it is not a submodule, so the env's ``parameters()`` and ``state_dict()`` hold none of its
            weights (save and load the composer itself) and ``env.to(device)`` does not move it. Updates to its
            weights reach the view at once in the same process (and in ``SerialEnv`` workers); each ``ParallelEnv``
            worker acts with the copy it received at start.

    Raises:
        ValueError: a bad ``level``, or ``lower_policy`` composed for another graph.
        TypeError: no :class:`~torchrl_rn.GraphComposer` as ``lower_policy``.
        GraphError: a graph that is not layered (the message names an edge that skips a level), or one with decision
            periods or goal rewards (not supported by the view).

    Examples:
        Level 1 acts in an env that embeds the motors.

        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl.envs.utils import check_env_specs
        >>> from torchrl_rn import GraphComposer, LevelEnv, LevelView, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2, 2])
        >>> composer = GraphComposer(graph, TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph)),
        ...                          num_cells=16)
        >>> level1 = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelView(graph, level=1, lower_policy=composer))
        >>> check_env_specs(level1)
        >>> level1.full_action_spec["level1", "action"].shape
        torch.Size([2, 2, 4])
    """

    def __init__(self, graph: RNGraph, *, level: int, lower_policy: GraphComposer | None = None) -> None:
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= graph.depth:
            raise ValueError(f"level must be an int in [1, {graph.depth}] for this graph, got {level!r}.")
        if not graph.is_layered():
            u, v = graph.skipping_edges()[0]
            raise GraphError(
                f"the TAG view needs a layered graph, but edge {u!r} -> {v!r} skips a level "
                f"({graph.level(u)} -> {graph.level(v)})."
            )
        if not isinstance(lower_policy, GraphComposer):
            raise TypeError(
                "the TAG view needs lower_policy=GraphComposer(graph, ...) for the levels below, got "
                f"{type(lower_policy).__name__}."
            )
        if lower_policy.graph is not graph:
            raise ValueError("lower_policy was composed for another RNGraph than this LevelView's.")
        slow = {g: graph.period(g) for g in graph.groups if graph.period(g) > 1}
        if slow:
            g, k = next(iter(slow.items()))
            raise GraphError(f"the TAG view does not support decision periods yet: group {g!r} has period {k}; "
                             "use the graph transform (LevelEnv(graph)) with a GraphComposer policy.")
        goals = graph.env_rewards
        if goals:
            g = next(iter(goals))
            raise GraphError(f"the TAG view does not support goal rewards: group {g!r} has reward "
                             f"{str(goals[g])!r}; use the graph transform (LevelEnv(graph)).")
        super().__init__(graph)
        self.level = level
        self.exposed = graph.groups_at(level)
        self.lower: list[str] = graph.groups_at(level - 1)
        self.periods = {}
        self._routing = {g: w for g, w in self._routing.items() if g in self.exposed}
        # a reference, not a submodule: the policy is the user's (trained, saved and moved by them), so the env's
        # parameters() and state_dict() do not hold its weights
        self.__dict__["composer"] = lower_policy

    def _set_dims(self, observation_spec: Composite) -> dict:
        if self._dims is None:
            key = KEYS.of(self.graph.env_group, "observation")
            self._dims = self.composer.dims
            expected = self._dims[self.graph.env_group]["observation"]
            if key in observation_spec.keys(True, True) and observation_spec[key].shape[-1] != expected:
                raise ValueError(
                    f"spec mismatch: the env's {key} has size {observation_spec[key].shape[-1]} but lower_policy "
                    f"was composed for {expected}."
                )
        return self._dims

    def _observation_specs(self, group: str, observation_spec: Composite, dims: dict, device) -> dict:
        if KEYS.of(group, "observation") in observation_spec.keys(True, True):
            del observation_spec[group, KEYS.observation]  # the view's observation replaces the one below
        return {KEYS.observation: lambda s, n=dims[group]["observation"]: Unbounded(shape=(*s, n), device=device)}

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        actions = input_spec["full_action_spec"]
        for g in self.lower:
            if KEYS.of(g, "action") not in actions.keys(True, True):
                raise KeyError(f"the env below this level-{self.level} view has no {(g, 'action')} action to drive.")
            expected = self.composer.vertex_groups[g].action_spec.shape
            if actions[g, KEYS.action].shape[-len(expected):] != expected:
                raise ValueError(
                    f"spec mismatch: the env's {(g, 'action')} has shape {tuple(actions[g, 'action'].shape)} but "
                    f"lower_policy's group {g!r} acts with {tuple(expected)}."
                )
            del actions[g, KEYS.action]
            if not actions[g].keys():
                del actions[g]
        for g in self.exposed:
            n = self.graph.group_action_dim(g)
            self._add_specs(actions, g, {KEYS.action: lambda s, n=n: Bounded(-1.0, 1.0, shape=(*s, n),
                                                                             device=actions.device)})
        return input_spec

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        # the levels below act inside the env on the exposed level's instructions
        with torch.no_grad():
            for g in self.lower:
                vg = self.composer.vertex_groups[g]
                if vg.instruction_gather is not None:
                    vg.instruction_gather(tensordict)
                vg.actor(tensordict)
        return tensordict

    def _observe(self, next_tensordict: TensorDictBase) -> None:
        # the exposed level observes the messages of the level below
        with torch.no_grad():
            for g in self.lower:
                encoder = self.composer.vertex_groups[g].encoder
                if encoder is not None:
                    encoder(next_tensordict)
            for g in self.exposed:
                self._ensure_group(next_tensordict, g)
                self.composer.vertex_groups[g].observation_gather(next_tensordict)
