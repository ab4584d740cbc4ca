"""Influence: how strongly a manager's instructions move its subordinates' actions.

A manager whose subordinates ignore it does nothing, whatever its score: a "win" with influence near 0 is a size or
shaping effect, not hierarchy. The measure: at given states, replace the manager's deterministic action by another
sample of its own policy, rerun the groups below it (top-down, as the policy does), and take the mean absolute change
of its direct subordinates' deterministic actions (for discrete actions: the share of action entries that change),
averaged over the states and subordinates. 0 means its subordinates ignore it. ``rn show`` draws it on every
manager, and the trainer logs each manager group's mean (``<group>/influence`` in ``metrics.csv``) at every
evaluation.
"""
from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn.keys import KEYS
from torchrl_rn.modules.composer import GraphComposer

__all__ = ["vertex_influence", "group_influence"]


@torch.no_grad()
def vertex_influence(composer: GraphComposer, base: TensorDictBase, vertex: Any) -> float:
    """Mean |change| of ``vertex``'s subordinates' deterministic actions when its own action is resampled.

    Args:
        composer (GraphComposer): the policy's composer. base (TensorDictBase): states ``[N]`` with every group's
            deterministic action written by ``composer.policy`` (the policy run in deterministic mode).
        vertex: a vertex with subordinates.

    Draws one sample of the vertex's policy from the global generator: wrap a call in
    :func:`~torchrl_rn.train.checkpoint.isolated_rng` (as the trainer does) to leave training's random stream as it
    was.
    """
    graph = composer.graph
    g, i = graph.position(vertex)
    td = base.clone()
    action = td.get((g, KEYS.action)).clone()
    action[..., i, :] = composer.actor(g).get_dist(base).sample()[..., i, :]
    td.set((g, KEYS.action), action)
    below = [h for h in reversed(list(composer.vertex_groups)) if graph.group_level(h) < graph.level(vertex)]
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for h in below:  # top-down, as the policy runs them
            vg = composer.vertex_groups[h]
            if vg.instruction_gather is not None:
                vg.instruction_gather(td)
            vg.actor(td)
    changes = []
    for s in graph.subordinates(vertex):
        gs, j = graph.position(s)
        after, before = td.get((gs, KEYS.action))[..., j, :], base.get((gs, KEYS.action))[..., j, :]
        # continuous actions: mean |change|; discrete ones (indices or one-hot): the share of entries that change
        changes.append((after - before).abs().mean() if after.is_floating_point() else (after != before).float().mean())
    return float(torch.stack(changes).mean())


@torch.no_grad()
def group_influence(composer: GraphComposer, states: TensorDictBase) -> dict[str, float]:
    """Each manager group's influence at ``states`` (``[N]``, e.g. a rollout without its ``"next"``): the mean of
    :func:`vertex_influence` over the group's vertices. Groups without subordinates (motors) are left out.

    Examples:
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, [2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=8)
        >>> states = env.rollout(5, composer.policy).exclude("next").reshape(-1)
        >>> influence = group_influence(composer, states)
        >>> list(influence), influence["level1"] > 0  # untrained motors do read their instructions
        (['level1'], True)
    """
    graph = composer.graph
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        base = composer.policy(states.clone())
    out = {}
    for g, members in graph.groups.items():
        managers = [v for v in members if graph.subordinates(v)]
        if managers:
            out[g] = sum(vertex_influence(composer, base, v) for v in managers) / len(managers)
    return out
