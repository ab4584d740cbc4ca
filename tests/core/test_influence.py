"""Influence (:mod:`torchrl_rn.modules.influence`): how strongly a manager's instructions move its subordinates."""
from __future__ import annotations

import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.modules.influence import group_influence, vertex_influence


@pytest.fixture
def setup():
    torch.manual_seed(0)
    graph = RNGraph.tree(4, [2, 2])  # two level-1 managers under one root
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    states = env.rollout(4, composer.policy).exclude("next").reshape(-1)
    return graph, composer, states


def test_group_influence_is_the_mean_of_its_managers(setup):
    graph, composer, states = setup
    torch.manual_seed(1)
    influence = group_influence(composer, states)
    assert set(influence) == {"level1", "level2"}  # every group with subordinates, not the motors
    torch.manual_seed(1)  # the same samples, drawn in the same order (groups in order, vertices in order)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        base = composer.policy(states.clone())
    by_vertex = {v: vertex_influence(composer, base, v) for g in ("level1", "level2") for v in graph.groups[g]}
    assert influence["level1"] == pytest.approx((by_vertex["l1_0"] + by_vertex["l1_1"]) / 2)
    assert influence["level2"] == pytest.approx(by_vertex["l2_0"])
    assert all(value > 0 for value in influence.values())  # untrained subordinates do read their instructions


def test_influence_is_zero_where_subordinates_ignore_their_instructions(setup):
    graph, composer, states = setup
    for p in composer.actor("agents").parameters():
        p.data.zero_()  # the motors' actions depend on nothing, instructions included
    influence = group_influence(composer, states)
    assert influence["level1"] == 0.0
    assert influence["level2"] > 0  # the level-1 managers still follow the root
