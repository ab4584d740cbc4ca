from __future__ import annotations

import pytest
import torch
from torchrl.objectives import IPPOLoss

from torchrl_rn import GraphComposer, GraphGAE, RNGraph, RNLoss

from conftest import make_rn_env


def collect(env, policy, steps=6):
    with torch.no_grad():
        return env.rollout(steps, policy, break_when_any_done=False)


@pytest.mark.parametrize("detach", [False, True])
def test_gradient_reaches_subordinate_encoders_iff_not_detached(detach):
    graph = RNGraph.tree(4, [2, 2], defaults={"phi": "learned", "message_dim": 4})
    env = make_rn_env(graph)
    composer = GraphComposer(graph, env, num_cells=8, detach_messages=detach)
    loss = RNLoss(composer)
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    # only level2's loss: its gradient can reach level1's and the motors' encoders only through the messages
    loss.group_coeffs.update(agents=0.0, level1=0.0)
    loss(data)["loss"].backward()
    for g in ("agents", "level1"):
        grads = [p.grad for p in composer.vertex_groups[g].encoder.parameters()]
        reached = any(gr is not None and gr.abs().sum() > 0 for gr in grads)
        assert reached is (not detach), g
    top = [p.grad for p in composer.vertex_groups["level2"].actor.parameters()]
    assert all(gr is not None and gr.abs().sum() > 0 for gr in top)


def test_flat_graph_beta0_equals_ippo():
    graph = RNGraph.flat(3)
    env = make_rn_env(graph)
    composer = GraphComposer(graph, env, num_cells=16, critic="local")
    rn = RNLoss(composer, entropy_coeff=0.01, beta=0.0, gamma=0.95, lmbda=0.9)
    ippo = IPPOLoss(composer.actor("agents"), composer.value_head("agents"), entropy_coeff=0.01,
                    normalize_advantage=False)
    ippo.set_keys(action=("agents", "action"), sample_log_prob=("agents", "action_log_prob"),
                  value=("agents", "state_value"), reward=("agents", "reward"), done=("agents", "done"),
                  terminated=("agents", "terminated"), advantage=("agents", "advantage"),
                  value_target=("agents", "value_target"))
    ippo.make_value_estimator(gamma=0.95, lmbda=0.9)  # TorchRL's multi-agent GAE
    data = collect(env, composer.policy)
    ours, theirs = data.clone(), data.clone()
    with torch.no_grad():
        rn.value_estimator(ours)
        ippo.value_estimator(theirs, params=ippo.critic_network_params,
                             target_params=ippo.target_critic_network_params)
    # same advantage up to float32 rounding (TorchRL evaluates the critic on a differently shaped batch)
    torch.testing.assert_close(ours["agents", "advantage"], theirs["agents", "advantage"], atol=1e-6, rtol=1e-6)
    # and the same loss on the same batch
    torch.manual_seed(3)  # the TanhNormal entropy is a Monte-Carlo estimate
    out_rn = rn(ours)
    torch.manual_seed(3)
    out_ippo = ippo(ours)
    total_ippo = sum(v for k, v in out_ippo.items() if k.startswith("loss_"))
    torch.testing.assert_close(out_rn["loss"], total_ippo, atol=1e-6, rtol=0)
    torch.testing.assert_close(out_rn["agents", "loss_objective"], out_ippo["loss_objective"], atol=1e-6, rtol=0)


def test_rn_loss_sums_groups_with_coefficients(composed):
    graph, env, composer = composed("tree2")
    loss = RNLoss(composer, group_coeffs={"level1": 0.5})
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    torch.manual_seed(0)
    out = loss(data)
    expected = sum(
        coef * sum(v for k, v in out[g].items() if k.startswith("loss_"))
        for g, coef in (("agents", 1.0), ("level1", 0.5))
    )
    torch.testing.assert_close(out["loss"], expected)
    with pytest.raises(KeyError, match="unknown group"):
        RNLoss(composer, group_coeffs={"level9": 1.0})


def test_one_optimiser_step_updates_every_group(composed):
    graph, env, composer = composed("dag")
    loss = RNLoss(composer, beta=0.5)
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    before = {g: [p.detach().clone() for p in composer.vertex_groups[g].parameters()] for g in graph.groups}
    opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
    loss(data)["loss"].backward()
    opt.step()
    for g in graph.groups:
        after = list(composer.vertex_groups[g].parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, before[g])), g


def test_value_estimator_is_shared_graph_gae(composed):
    _, _, composer = composed("tree2")
    loss = RNLoss(composer, beta=0.3)
    assert isinstance(loss.value_estimator, GraphGAE) and loss.value_estimator.beta == 0.3
    assert all(gl.value_estimator is loss.value_estimator for gl in loss.group_losses.values())
    with pytest.raises(TypeError, match="ValueEstimatorBase instance"):
        loss.make_value_estimator("gae")
