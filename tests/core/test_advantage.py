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


def assert_equals_torchrl_gae(graph, composer, data):
    """Every group's advantage and value target in ``data`` equal TorchRL's GAE on that group's keys."""
    for g in graph.groups:
        ref = GAE(gamma=0.97, lmbda=0.9, value_network=composer.critic)
        ref.set_keys(value=(g, "state_value"), reward=(g, "reward"), done=(g, "done"), terminated=(g, "terminated"),
                     advantage=(g, "ref_advantage"), value_target=(g, "ref_target"))
        ref(data)
        torch.testing.assert_close(data[g, "advantage"], data[g, "ref_advantage"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(data[g, "value_target"], data[g, "ref_target"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["flat", "tree3", "dag"])
def test_beta_zero_equals_torchrl_gae_per_group(composed, name):
    graph, env, composer = composed(name)
    data = rollout(env, composer.policy)
    GraphGAE(graph, gamma=0.97, lmbda=0.9, value_network=composer.critic)(data)
    assert_equals_torchrl_gae(graph, composer, data)


class ZeroCritic(TensorDictModuleBase):
    """V = 0 for every vertex, so that a one-step advantage is the reward itself."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph
        self.in_keys, self.out_keys = [], []

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
    keys = set(data.keys(True, True))
    estimate = gae.value_estimate(data)  # the unmixed targets, data left alone
    assert set(data.keys(True, True)) == keys
    assert set(estimate.keys(True, True)) == {(g, "value_target") for g in graph.groups}
    gae(data)
    for g, value in expected.items():
        assert data[g, "advantage"].item() == pytest.approx(value)
        assert data[g, "value_target"].item() == pytest.approx(rewards[g][0])  # targets stay unmixed
        assert estimate[g, "value_target"].item() == pytest.approx(rewards[g][0])


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
    # per-vertex flags pass through; a group without flags of its own gets the root's, broadcast
    data = rollout(env, composer.policy, steps=3)
    for key in ("done", "terminated"):  # no episode ends in 3 steps; end only motor 0's at the last step
        flag = torch.zeros_like(data["next", "agents", key])
        flag[:, -1, 0] = True
        data["next", "agents", key] = flag
        del data["next", "level1", key]  # level1 has no flags of its own: the root's (all False) are broadcast
    GraphGAE(graph, gamma=0.9, lmbda=1.0, value_network=composer.critic)(data)
    reward, target = data["next", "agents", "reward"][:, -1], data["agents", "value_target"][:, -1]
    next_value = data["next", "agents", "state_value"][:, -1]
    torch.testing.assert_close(target[:, 0], reward[:, 0])  # motor 0 terminated: no bootstrap
    torch.testing.assert_close(target[:, 1:], reward[:, 1:] + 0.9 * next_value[:, 1:])  # the others bootstrap
    level1 = data["level1", "value_target"][:, -1]
    torch.testing.assert_close(level1, data["next", "level1", "reward"][:, -1] + 0.9 * data["next", "level1", "state_value"][:, -1])


@pytest.mark.parametrize("loss_cls", [ClipPPOLoss, MAPPOLoss, IPPOLoss])
def test_usable_through_bind(composed, loss_cls):
    graph, env, composer = composed("flat")
    data = rollout(env, composer.policy)
    loss = loss_cls(composer.actor("agents"), composer.value_head("agents"))
    loss.set_keys(action=("agents", "action"), sample_log_prob=("agents", "action_log_prob"),
                  value=("agents", "state_value"), advantage=("agents", "advantage"),
                  value_target=("agents", "value_target"))
    GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic).bind(loss)
    assert isinstance(loss.value_estimator, GraphGAE)
    torch.manual_seed(1)
    out = loss(data)  # no advantage in the data: the loss computes it through the estimator
    precomputed = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic)(data.clone())
    torch.manual_seed(1)
    ref = loss(precomputed)
    assert torch.isfinite(out["loss_objective"]) and torch.isfinite(out["loss_critic"])
    torch.testing.assert_close(out["loss_objective"], ref["loss_objective"])
    torch.testing.assert_close(out["loss_critic"], ref["loss_critic"])


class ConstantCritic(TensorDictModuleBase):
    """V = one learnable constant per group (the same now and next), for hand-computed targets and gradients."""

    def __init__(self, graph, values):
        super().__init__()
        self.graph = graph
        self.in_keys = []
        self.values = torch.nn.ParameterDict({g: torch.nn.Parameter(torch.tensor(float(v))) for g, v in values.items()})
        self.out_keys = [(g, "state_value") for g in graph.groups]

    def forward(self, td):
        for g, members in self.graph.groups.items():
            td.set((g, "state_value"), self.values[g].expand(*td.batch_size, len(members), 1))
        return td


def two_step_data(graph, rewards, *, terminated, per_group_flags):
    """Two steps, [B=1, T=2]; the episode ends at the last step, truncated (done only) or terminated."""
    done = torch.tensor([False, True]).view(1, 2, 1)
    term = done.clone() if terminated else torch.zeros_like(done)
    nxt = TensorDict({"done": done, "terminated": term}, batch_size=(1, 2))
    for g, r in rewards.items():
        n = len(graph.groups[g])
        group = {"reward": torch.tensor(r).view(1, 2, 1, 1).expand(1, 2, n, 1)}
        if per_group_flags:
            group.update(done=done.unsqueeze(-2).expand(1, 2, n, 1), terminated=term.unsqueeze(-2).expand(1, 2, n, 1))
        nxt[g] = TensorDict(group, batch_size=(1, 2, n))
    return TensorDict({"next": nxt}, batch_size=(1, 2))


@pytest.mark.parametrize("per_group_flags", [True, False])
@pytest.mark.parametrize("terminated", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_bootstraps_on_truncation_not_on_termination(chain, beta, terminated, per_group_flags):
    graph, _ = chain  # a -> b -> m, one vertex per group
    rewards = {"agents": [1.0, 2.0], "level1": [0.5, -1.0], "level2": [3.0, 4.0]}
    values = {"agents": 1.0, "level1": 2.0, "level2": -3.0}
    gamma, lmbda = 0.9, 0.8
    data = two_step_data(graph, rewards, terminated=terminated, per_group_flags=per_group_flags)
    GraphGAE(graph, gamma=gamma, lmbda=lmbda, value_network=ConstantCritic(graph, values), beta=beta)(data)
    adv = {}
    for g, (r0, r1) in rewards.items():
        v = values[g]
        last = r1 if terminated else r1 + gamma * v  # the last step bootstraps from V(next) only when truncated
        a1 = last - v
        a0 = r0 + gamma * v - v + gamma * lmbda * a1
        adv[g] = [a0, a1]
        torch.testing.assert_close(data[g, "value_target"].flatten(), torch.tensor([a0 + v, last]))
    # mixing ("both", beta): m <- b, b <- mean(m, a), a <- b
    mixed = {
        "agents": [(1 - beta) * adv["agents"][t] + beta * adv["level1"][t] for t in (0, 1)],
        "level1": [(1 - beta) * adv["level1"][t] + beta * (adv["agents"][t] + adv["level2"][t]) / 2 for t in (0, 1)],
        "level2": [(1 - beta) * adv["level2"][t] + beta * adv["level1"][t] for t in (0, 1)],
    }
    for g in graph.groups:
        torch.testing.assert_close(data[g, "advantage"].flatten(), torch.tensor(mixed[g]))
    assert not data["agents", "advantage"].requires_grad  # not differentiable by default
    if beta == 0.0 and per_group_flags:  # differentiable=True keeps gradients through the critic
        critic = ConstantCritic(graph, values)
        data = two_step_data(graph, rewards, terminated=terminated, per_group_flags=True)
        GraphGAE(graph, gamma=gamma, lmbda=lmbda, value_network=critic, differentiable=True)(data)
        data["agents", "advantage"].sum().backward()
        d_a1 = -1.0 if terminated else gamma - 1  # d(A0 + A1)/dv from the hand formulas above
        expected = d_a1 + (gamma - 1) + gamma * lmbda * d_a1
        torch.testing.assert_close(critic.values["agents"].grad, torch.tensor(expected))
        assert critic.values["level1"].grad is None  # beta = 0: no other group's advantage mixed in


@pytest.mark.parametrize("terminated", [False, True])
def test_beta_zero_equals_torchrl_gae_on_truncation(composed, terminated):
    graph, env, composer = composed("tree3")
    data = rollout(env, composer.policy, steps=8)  # the mock env's episodes end at step 5
    for g in graph.groups:
        data["next", g, "terminated"] = data["next", g, "done"] & terminated  # truncation: done, not terminated
    GraphGAE(graph, gamma=0.97, lmbda=0.9, value_network=composer.critic)(data)
    assert_equals_torchrl_gae(graph, composer, data)
    # the end of the episode: r + gamma * V(next) when truncated, r when terminated
    end = data["next", "done"][0, :, 0].nonzero()[0, 0]
    for g in graph.groups:
        reward, target = data["next", g, "reward"][0, end], data[g, "value_target"][0, end]
        expected = reward + (0.0 if terminated else 0.97 * data["next", g, "state_value"][0, end])
        torch.testing.assert_close(target, expected)


def tutorial_keyed(loss_cls, composer, group="agents"):
    """A stock loss for ``group`` keyed as TorchRL's multi-agent PPO tutorial keys it (advantage left default)."""
    loss = loss_cls(composer.actor(group), composer.value_head(group))
    loss.set_keys(reward=(group, "reward"), action=(group, "action"), value=(group, "state_value"),
                  done=(group, "done"), terminated=(group, "terminated"))
    return loss


@pytest.mark.parametrize("loss_cls", [ClipPPOLoss, MAPPOLoss, IPPOLoss])
def test_drops_into_a_stock_loss_keyed_as_the_tutorial(composed, loss_cls):
    graph, env, composer = composed("tree2")
    data = rollout(env, composer.policy)
    loss = tutorial_keyed(loss_cls, composer)
    assert loss.tensor_keys.advantage == "advantage"
    gae = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic, beta=0.5)
    gae.bind(loss)
    assert {"advantage", "value_target"} <= set(gae.out_keys)
    torch.manual_seed(1)
    out = loss(data)  # no advantage in the data: the loss asks GraphGAE, then reads "advantage"
    # the same loss on the motors' own keys, advantages precomputed by an unbound estimator
    ref_loss = loss_cls(composer.actor("agents"), composer.value_head("agents"))
    ref_loss.set_keys(reward=("agents", "reward"), action=("agents", "action"), value=("agents", "state_value"),
                      done=("agents", "done"), terminated=("agents", "terminated"),
                      advantage=("agents", "advantage"), value_target=("agents", "value_target"))
    precomputed = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic, beta=0.5)(data.clone())
    torch.manual_seed(1)
    ref = ref_loss(precomputed)
    for term in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(out[term], ref[term])
    # the tutorial's loop: GAE = loss.value_estimator; GAE(data, params=..., target_params=...) before the buffer
    loss.value_estimator(data, params=loss.critic_network_params, target_params=loss.target_critic_network_params)
    torch.testing.assert_close(data["advantage"], precomputed["agents", "advantage"])
    torch.testing.assert_close(data["value_target"], precomputed["agents", "value_target"])
    torch.testing.assert_close(data["level1", "advantage"], precomputed["level1", "advantage"])


def test_a_loss_naming_no_group_is_refused_at_bind(composed):
    graph, _, composer = composed("tree2")
    gae = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic)
    loss = ClipPPOLoss(composer.actor("agents"), composer.value_head("agents"))  # value key left "state_value"
    with pytest.raises(ValueError, match=r"value key 'state_value' names no group.*loss\.set_keys\(value="):
        gae.bind(loss)
    # two losses cannot both receive their group's advantage at the root "advantage"
    gae.bind(tutorial_keyed(ClipPPOLoss, composer, "agents"))
    with pytest.raises(ValueError, match=r"already writes group 'agents'.*loss\.set_keys\(advantage=\('level1'"):
        gae.bind(tutorial_keyed(ClipPPOLoss, composer, "level1"))


def test_a_loss_calling_an_estimator_it_was_not_bound_to_is_told_to_bind(composed):
    graph, env, composer = composed("tree2")
    data = rollout(env, composer.policy)
    loss = tutorial_keyed(ClipPPOLoss, composer)
    loss.make_value_estimator(GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic))
    with pytest.raises(RuntimeError, match=r"not bound to.*gae\.bind\(loss\), not loss\.make_value_estimator\(gae\)"):
        loss(data)


def test_importing_the_estimator_leaves_nn_module_registration_alone(composed):
    graph, _, composer = composed("tree2")
    holder = torch.nn.Module()
    holder.estimator = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic)  # no hook takes keys
    assert not holder.estimator._bound
