from __future__ import annotations

import networkx as nx
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives import ClipPPOLoss, IPPOLoss, MAPPOLoss
from torchrl.objectives.value import GAE

from torchrl_rn import GraphGAE, RNGraph


def rollout(env, policy, steps=8):
    with torch.no_grad():
        return env.rollout(steps, policy, break_when_any_done=False)


@pytest.mark.parametrize("name", ["flat", "tree3", "dag"])
def test_beta_zero_equals_torchrl_gae_per_group(composed, name):
    graph, env, composer = composed(name)
    data = rollout(env, composer.policy)
    GraphGAE(graph, gamma=0.97, lmbda=0.9, value_network=composer.critic)(data)
    for g in graph.groups:
        ref = GAE(gamma=0.97, lmbda=0.9, value_network=composer.critic)
        ref.set_keys(value=(g, "state_value"), reward=(g, "reward"), done=(g, "done"), terminated=(g, "terminated"),
                     advantage=(g, "ref_advantage"), value_target=(g, "ref_target"))
        ref(data)
        torch.testing.assert_close(data[g, "advantage"], data[g, "ref_advantage"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(data[g, "value_target"], data[g, "ref_target"], atol=1e-6, rtol=1e-6)


class ZeroCritic(TensorDictModuleBase):
    """V = 0 for every vertex, so that a one-step advantage is the reward itself."""

    in_keys: list = []
    out_keys: list = []

    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def forward(self, td):
        for g, members in self.graph.groups.items():
            td.set((g, "state_value"), torch.zeros(*td.batch_size, len(members), 1))
        return td


def chain_data(graph, rewards):
    """One step, not done, with the given per-group rewards."""
    flag = torch.zeros(1, 1, 1, dtype=torch.bool)
    nxt = TensorDict({"done": flag, "terminated": flag.clone()}, batch_size=(1, 1))
    for g, r in rewards.items():
        nxt[g] = TensorDict({"reward": torch.tensor(r).view(1, 1, -1, 1)}, batch_size=(1, 1, len(graph.groups[g])))
    return TensorDict({"next": nxt}, batch_size=(1, 1))


@pytest.fixture
def chain():
    # a -> b -> m: vertex order [m, b, a]; rewards 1 (m), 2 (b), 4 (a)
    graph = RNGraph(nx.DiGraph([("a", "b"), ("b", "m")]))
    return graph, {"agents": [1.0], "level1": [2.0], "level2": [4.0]}


@pytest.mark.parametrize(
    ("neighbourhood", "expected"),
    [
        ("both", {"agents": 0.5 * 1 + 0.5 * 2, "level1": 0.5 * 2 + 0.5 * (1 + 4) / 2, "level2": 0.5 * 4 + 0.5 * 2}),
        ("up", {"agents": 0.5 * 1 + 0.5 * 2, "level1": 0.5 * 2 + 0.5 * 4, "level2": 4.0}),
        ("down", {"agents": 1.0, "level1": 0.5 * 2 + 0.5 * 1, "level2": 0.5 * 4 + 0.5 * 2}),
    ],
)
def test_chain_mixing_hand_computed(chain, neighbourhood, expected):
    graph, rewards = chain
    data = chain_data(graph, rewards)
    gae = GraphGAE(graph, gamma=0.9, lmbda=0.8, value_network=ZeroCritic(graph), beta=0.5, neighbourhood=neighbourhood)
    gae(data)
    for g, value in expected.items():
        assert data[g, "advantage"].item() == pytest.approx(value)
        assert data[g, "value_target"].item() == pytest.approx(rewards[g][0])  # targets stay unmixed


def test_explicit_weight_matrix(chain):
    graph, rewards = chain
    weights = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # m <-> a only
    data = chain_data(graph, rewards)
    GraphGAE(graph, gamma=0.9, lmbda=0.8, value_network=ZeroCritic(graph), beta=0.25, neighbourhood=weights)(data)
    assert data["agents", "advantage"].item() == pytest.approx(0.75 * 1 + 0.25 * 4)
    assert data["level1", "advantage"].item() == pytest.approx(2.0)
    assert data["level2", "advantage"].item() == pytest.approx(0.75 * 4 + 0.25 * 1)
    with pytest.raises(ValueError, match=r"must be \[3, 3\]"):
        GraphGAE(graph, gamma=0.9, lmbda=0.8, value_network=ZeroCritic(graph), neighbourhood=torch.ones(2, 2))
    with pytest.raises(ValueError, match="beta must be in"):
        GraphGAE(graph, gamma=0.9, lmbda=0.8, value_network=ZeroCritic(graph), beta=1.5)


def test_root_done_fallback_matches_group_done(composed):
    graph, env, composer = composed("tree2")
    data = rollout(env, composer.policy, steps=7)
    gae = GraphGAE(graph, gamma=0.9, lmbda=0.9, value_network=composer.critic)
    with_group = gae(data.clone())
    for g in graph.groups:
        del data["next", g, "done"]
        del data["next", g, "terminated"]
    without = gae(data)
    for g in graph.groups:
        torch.testing.assert_close(with_group[g, "advantage"], without[g, "advantage"])


@pytest.mark.parametrize("loss_cls", [ClipPPOLoss, MAPPOLoss, IPPOLoss])
def test_usable_through_make_value_estimator(composed, loss_cls):
    graph, env, composer = composed("flat")
    data = rollout(env, composer.policy)
    loss = loss_cls(composer.actor("agents"), composer.value_head("agents"))
    loss.set_keys(action=("agents", "action"), sample_log_prob=("agents", "action_log_prob"),
                  value=("agents", "state_value"), advantage=("agents", "advantage"),
                  value_target=("agents", "value_target"))
    loss.make_value_estimator(GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic))
    assert isinstance(loss.value_estimator, GraphGAE)
    torch.manual_seed(1)
    out = loss(data)  # no advantage in the data: the loss computes it through the estimator
    precomputed = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic)(data.clone())
    torch.manual_seed(1)
    ref = loss(precomputed)
    assert torch.isfinite(out["loss_objective"]) and torch.isfinite(out["loss_critic"])
    torch.testing.assert_close(out["loss_objective"], ref["loss_objective"])
    torch.testing.assert_close(out["loss_critic"], ref["loss_critic"])
