"""Library constructors refuse mismatches (issue 30, item 8): at construction or first call, naming the graph, the env
and the counts, never a shape error deep inside a rollout or a silent computation on the wrong graph."""
from __future__ import annotations

import math

import pytest
import torch
from torchrl.envs import TransformedEnv

from torchrl_rn import GraphComposer, GraphError, GraphGAE, LevelEnv, RNGraph, RNLoss
from torchrl_rn.envs import MockMultiAgentEnv


def _rollout(graph: RNGraph, steps: int = 3):
    env = TransformedEnv(MockMultiAgentEnv(graph.n_agents, num_envs=2), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    return composer, env.rollout(steps, composer.policy)


# (name, call, the texts the error must hold)
ENV_CASES = [
    ("LevelEnv on 3 agents, 4 motors: first rollout",
     lambda: TransformedEnv(MockMultiAgentEnv(3, num_envs=2), LevelEnv(RNGraph.tree(4, [2]))).rollout(2),
     ["RNGraph(n_agents=4", "4 motors", "MockMultiAgentEnv", "3 agent(s)"]),
    ("LevelEnv on 5 agents, 4 motors, appended",
     lambda: MockMultiAgentEnv(5, num_envs=2).append_transform(LevelEnv(RNGraph.flat(4))).reset(),
     ["4 motors", "MockMultiAgentEnv", "5 agent(s)"]),
    ("GraphComposer over a mismatched env: at construction",
     lambda: GraphComposer(RNGraph.tree(4, [2]), TransformedEnv(MockMultiAgentEnv(6, num_envs=2),
                                                                 LevelEnv(RNGraph.tree(4, [2]))), num_cells=8),
     ["4 motors", "6 agent(s)"]),
]


@pytest.mark.parametrize("name, call, texts", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_env_mismatch_is_named(name, call, texts):
    with pytest.raises(GraphError) as info:
        call()
    for text in texts:
        assert text in str(info.value), str(info.value)


def test_graphgae_refuses_data_of_another_graph():
    _, data = _rollout(RNGraph.tree(4, [2]))  # agents 4, level1 2
    other = RNGraph.tree(6, [2])  # agents 6, level1 3
    critic = GraphComposer(other, TransformedEnv(MockMultiAgentEnv(6, num_envs=2), LevelEnv(other)),
                           num_cells=8).critic
    for beta in (0.0, 0.5):  # with beta = 0 it used to compute on the wrong graph silently
        gae = GraphGAE(other, gamma=0.9, lmbda=0.9, value_network=critic, beta=beta)
        with pytest.raises(GraphError, match=r"group 'agents' has 4 vertices, not 6: data collected with another"):
            gae(data.clone())


def test_rnloss_refuses_an_estimator_of_another_graph():
    # same group sizes (agents 4, level1 2) but other edges: only the graphs themselves tell them apart
    composer, _ = _rollout(RNGraph.tree(4, [2]))
    dag = RNGraph.overlapping(4, 2)
    dag_critic = GraphComposer(dag, TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(dag)),
                               num_cells=8).critic
    loss = RNLoss(composer)
    with pytest.raises(GraphError, match=r"GraphGAE was built for RNGraph\(n_agents=4.*this loss trains RNGraph"):
        loss.make_value_estimator(GraphGAE(dag, gamma=0.9, lmbda=0.9, value_network=dag_critic, beta=0.5))
    # the loss's own graph, or an equal one, is accepted
    loss.make_value_estimator(GraphGAE(RNGraph.tree(4, [2]), gamma=0.9, lmbda=0.9, value_network=composer.critic))


GAE_CASES = [("gamma nan", {"gamma": math.nan}, "gamma"), ("gamma above 1", {"gamma": 1.5}, "gamma"),
             ("gamma negative", {"gamma": -0.1}, "gamma"), ("gamma as text", {"gamma": "0.9"}, "gamma"),
             ("lmbda above 1", {"lmbda": 1.2}, "lmbda"), ("lmbda nan", {"lmbda": math.nan}, "lmbda"),
             ("lmbda inf", {"lmbda": math.inf}, "lmbda"), ("beta nan", {"beta": math.nan}, "beta")]


@pytest.mark.parametrize("name, kwargs, culprit", GAE_CASES, ids=[c[0] for c in GAE_CASES])
def test_graphgae_refuses_bad_hyperparameters(name, kwargs, culprit):
    graph = RNGraph.flat(2)
    with pytest.raises(ValueError, match=culprit):
        GraphGAE(graph, value_network=torch.nn.Identity(), **{"gamma": 0.9, "lmbda": 0.9, **kwargs})


def test_graphgae_accepts_the_closed_ends():
    graph = RNGraph.flat(2)
    for gamma, lmbda in ((0.0, 0.0), (1.0, 1.0)):
        assert GraphGAE(graph, gamma=gamma, lmbda=lmbda, value_network=torch.nn.Identity()).gamma == gamma


BUILDER_CASES = [
    ("overlap past the block", lambda: RNGraph.overlapping(4, 2, overlap=10), "overlap must be an int in [0, 2]"),
    ("negative overlap", lambda: RNGraph.overlapping(4, 2, overlap=-1), "got -1"),
    ("overlap as a bool", lambda: RNGraph.overlapping(4, 2, overlap=True), "got True"),
    ("no managers", lambda: RNGraph.overlapping(4, 0), "n_managers must be in [1, n_agents=4], got 0"),
    ("fractional managers", lambda: RNGraph.overlapping(4, 2.5), "got 2.5"),
    ("zero branching", lambda: RNGraph.tree(4, [0]), "branching at level 1"),
    ("bool branching", lambda: RNGraph.tree(4, [True]), "branching at level 1"),
    ("zero agents", lambda: RNGraph.flat(0), "n_agents must be a positive int, got 0"),
    ("bool agents", lambda: RNGraph.flat(True), "got True"),
    ("a hundred million agents", lambda: RNGraph.flat(100_000_000), "n_agents 100000000 is over the limit of 10000"),
    ("a tree over too many agents", lambda: RNGraph.tree(20_000, [2]), "over the limit"),
]


@pytest.mark.parametrize("name, call, text", BUILDER_CASES, ids=[c[0] for c in BUILDER_CASES])
def test_builders_refuse_arguments_out_of_range(name, call, text):
    with pytest.raises(GraphError) as info:
        call()
    assert text in str(info.value), str(info.value)


def test_overlap_at_its_ends_is_accepted():
    assert RNGraph.overlapping(4, 2, overlap=0).subordinates("l1_0") == ["motor_0", "motor_1"]
    assert RNGraph.overlapping(4, 2, overlap=2).subordinates("l1_0") == ["motor_0", "motor_1", "motor_2", "motor_3"]
