from __future__ import annotations

import os

# one thread per pytest-xdist worker (two workers on two cores); subprocess tests inherit it. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import networkx as nx
import pytest
import torch
from torchrl.envs import TransformedEnv

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv

GRAPHS = {
    "flat": lambda n: RNGraph.flat(n),
    "tree2": lambda n: RNGraph.tree(n, [2]),
    "tree3": lambda n: RNGraph.tree(n, [2, 2]),
    "dag": lambda n: RNGraph.overlapping(n, 2),
}


def shared_dag(n_agents: int = 4, **kwargs) -> RNGraph:
    """The transform test matrix's irregular DAG over 4 motors: ``motor_2`` has two superiors, and the root commands a
    manager and a motor directly (not layered)."""
    g = nx.DiGraph()
    g.add_edges_from([("a", "motor_0"), ("a", "motor_1"), ("a", "motor_2"), ("b", "motor_2"), ("b", "motor_3"),
                      ("root", "a"), ("root", "b"), ("root", "motor_3")])
    return RNGraph(g, n_agents=n_agents, **kwargs)


def make_rn_env(graph: RNGraph, *, num_envs: int = 3, seed: int = 0, **kwargs) -> TransformedEnv:
    env = MockMultiAgentEnv(graph.n_agents, num_envs=num_envs, seed=seed, **kwargs)
    return TransformedEnv(env, LevelEnv(graph))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def composed():
    """(graph, env, composer) for a named graph over 4 mock agents."""

    def build(name: str, **composer_kwargs):
        graph = GRAPHS[name](4)
        env = make_rn_env(graph)
        return graph, env, GraphComposer(graph, env, num_cells=16, **composer_kwargs)

    return build
