from __future__ import annotations

import pytest
import torch
from torchrl.objectives import ClipPPOLoss, IPPOLoss, ValueEstimators
from torchrl.objectives.value import GAE

from torchrl_rn import GraphComposer, GraphGAE, RNGraph, RNLoss

from conftest import make_rn_env


def collect(env, policy, steps=6):
    with torch.no_grad():
        return env.rollout(steps, policy, break_when_any_done=False)


def group_clip_loss(composer, g, **kwargs):
    """A stock ClipPPOLoss for group ``g`` alone, keyed and configured as RNLoss keys its group losses."""
    loss = ClipPPOLoss(composer.actor(g), composer.value_head(g), normalize_advantage_exclude_dims=(-2,),
                       functional=False, **kwargs)
    loss.set_keys(**{name: (g, field) for name, field in (
        ("action", "action"), ("sample_log_prob", "action_log_prob"), ("value", "state_value"),
        ("advantage", "advantage"), ("value_target", "value_target"), ("reward", "reward"), ("done", "done"),
        ("terminated", "terminated"))})
    return loss


@pytest.mark.parametrize("branching", [[2], [2, 2]])
@pytest.mark.parametrize("detach", [False, True])
def test_top_loss_reaches_encoders_below_iff_not_detached(detach, branching):
    # phi=learned: superiors observe their subordinates' learned messages. With every coefficient but the top
    # group's at 0, the encoders below are trained by the top group's loss alone, and their gradients must be exactly
    # the ones autograd gives for a stock ClipPPOLoss of the top group over a message pass with gradients (none when
    # detached); the top group's own actor gets the same gradient either way
    graph = RNGraph.tree(4, branching, defaults={"phi": "learned", "message_dim": 4})
    env = make_rn_env(graph)
    composer = GraphComposer(graph, env, num_cells=8, detach_messages=detach)
    *below, top = graph.groups
    loss = RNLoss(composer, group_coeffs=dict.fromkeys(below, 0.0))
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    encoders = [p for g in below for p in composer.vertex_groups[g].encoder.parameters()]
    actor = list(composer.vertex_groups[top].actor.parameters())
    td = data.clone(False)
    composer.messages(td)
    torch.manual_seed(5)  # the TanhNormal entropies are Monte-Carlo draws, taken group by group in RNLoss
    terms = {g: group_clip_loss(composer, g, entropy_coeff=0.01)(td) for g in graph.groups}[top]
    ref_total = terms["loss_objective"] + terms["loss_critic"] + terms["loss_entropy"]
    ref_grads = torch.autograd.grad(ref_total, encoders + actor, allow_unused=True)
    torch.manual_seed(5)
    out = loss(data)
    (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
    for p, ref_grad in zip(encoders, ref_grads[: len(encoders)]):
        if detach:
            assert ref_grad is None and (p.grad is None or not p.grad.any())
        else:
            assert ref_grad is not None and ref_grad.abs().sum() > 0
            torch.testing.assert_close(p.grad, ref_grad)
    for p, ref_grad in zip(actor, ref_grads[len(encoders):]):
        torch.testing.assert_close(p.grad, ref_grad)


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


def test_totals_equal_separately_built_group_losses(composed):
    graph, env, composer = composed("tree2")
    loss = RNLoss(composer, group_coeffs={"level1": 0.5}, entropy_coeff=0.02, critic_coeff=0.7)
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    refs = {g: group_clip_loss(composer, g, entropy_coeff=0.02, critic_coeff=0.7) for g in graph.groups}
    torch.manual_seed(3)  # the TanhNormal entropy is a Monte-Carlo estimate: same draws, same order
    out = loss(data)
    torch.manual_seed(3)
    ref_terms = {g: ref(data) for g, ref in refs.items()}  # the collector already wrote the managers' observations
    coeffs = {"agents": 1.0, "level1": 0.5}
    for term in ("loss_objective", "loss_critic", "loss_entropy"):
        expected = sum(coeffs[g] * ref_terms[g][term] for g in graph.groups)
        torch.testing.assert_close(out[term], expected)
        for g in graph.groups:
            torch.testing.assert_close(out[g, term], ref_terms[g][term])
    for diagnostic in ("entropy", "kl_approx", "clip_fraction", "ESS", "explained_variance"):
        torch.testing.assert_close(out["level1", diagnostic], ref_terms["level1"][diagnostic])
    torch.testing.assert_close(out["loss"], out["loss_objective"] + out["loss_critic"] + out["loss_entropy"])
    # a stock loop summing the top-level loss_* entries counts each term once ("loss" is not a loss_* key)
    stock = sum(v for k, v in out.items() if isinstance(k, str) and k.startswith("loss_"))
    torch.testing.assert_close(stock, out["loss"])
    with pytest.raises(KeyError, match="unknown group"):
        RNLoss(composer, group_coeffs={"level9": 1.0})


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("name", ["tree2", "tree3"])
def test_critic_runs_once_per_forward(composed, name):
    graph, env, composer = composed(name)
    loss = RNLoss(composer, beta=0.5)
    data = collect(env, composer.policy)
    critic_calls = count_calls(composer.critic)
    head_calls = {g: count_calls(composer.value_head(g)) for g in graph.groups}
    out = loss(data)  # no advantages in the data: computed once, for every group
    assert len(critic_calls) == 1
    assert all(len(c) == 2 for c in head_calls.values())  # the estimator's pass, then the group loss's own
    with torch.no_grad():
        loss.value_estimator(data)
    critic_calls.clear()
    precomputed = loss(data)
    assert critic_calls == []  # present advantages are used as they are
    torch.testing.assert_close(precomputed["loss_critic"], out["loss_critic"])
    torch.testing.assert_close(precomputed["level1", "loss_objective"], out["level1", "loss_objective"])


def test_make_value_estimator_takes_enum_class_or_instance(composed):
    graph, _, composer = composed("tree2")
    loss = RNLoss(composer, beta=0.3, gamma=0.9)
    assert isinstance(loss.value_estimator, GraphGAE) and loss.value_estimator.beta == 0.3
    assert all(gl.value_estimator is loss.value_estimator for gl in loss.group_losses.values())
    for value_type in (ValueEstimators.GAE, ValueEstimators.MAGAE, "gae", GraphGAE):
        loss.make_value_estimator(value_type, lmbda=0.5)
        est = loss.value_estimator
        assert type(est) is GraphGAE and loss.value_type is GraphGAE
        assert (est.gamma, est.lmbda, est.beta) == (0.9, 0.5, 0.3)  # unspecified ones: the constructor's
        assert est.value_network is composer.critic
        assert all(gl.value_estimator is est for gl in loss.group_losses.values())
    mine = GraphGAE(graph, gamma=0.5, lmbda=0.5, value_network=composer.critic)
    assert loss.make_value_estimator(mine) is loss and loss.value_estimator is mine
    with pytest.raises(ValueError, match=r"GAE or MAGAE.*TD0"):
        loss.make_value_estimator(ValueEstimators.TD0)
    with pytest.raises(TypeError, match="ValueEstimators member"):
        loss.make_value_estimator(3)
    # a foreign estimator class is built from the hyperparameters alone
    loss.make_value_estimator(GAE, gamma=0.9, lmbda=0.9, value_network=composer.critic)
    assert type(loss.value_estimator) is GAE


def test_set_keys_renames_fields_in_every_group(composed):
    graph, env, composer = composed("tree2")
    loss = RNLoss(composer)
    loss.set_keys(advantage="adv", value_target="target")
    for g, gl in loss.group_losses.items():
        assert (gl.tensor_keys.advantage, gl.tensor_keys.value_target) == ((g, "adv"), (g, "target"))
    assert loss.value_estimator.tensor_keys.advantage == "adv"
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    keys = set(data.keys(True))
    assert all((g, "adv") in keys and (g, "target") in keys for g in graph.groups)
    assert ("agents", "advantage") not in keys
    critic_calls = count_calls(composer.critic)
    assert torch.isfinite(loss(data)["loss"]) and critic_calls == []  # it found them under the new name
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(advantages="x")
    with pytest.raises(TypeError, match="field name"):
        loss.set_keys(advantage=("agents", "adv"))


def test_in_keys_suffice_and_out_keys_match(composed):
    graph, env, composer = composed("tree3")
    loss = RNLoss(composer)
    data = collect(env, composer.policy)
    torch.manual_seed(1)
    out = loss(data.select(*loss.in_keys, strict=True))  # in_keys: all it needs, with no advantage precomputed
    assert ("level1", "observation") not in loss.in_keys  # the message pass writes it
    assert set(loss.out_keys) <= set(out.keys(True, True))  # (the groups also give diagnostics beyond them)
    assert {k for k in out.keys() if isinstance(k, str) and k.startswith("loss")} == {
        k for k in loss.out_keys if isinstance(k, str)}
    assert {"loss_objective", "loss_critic", "loss_entropy", "loss"} <= set(loss.out_keys)
    assert all((g, "loss_objective") in loss.out_keys for g in graph.groups)


def test_loss_reads_no_next_step_nor_distribution_parameters_once_advantages_are_in(composed, monkeypatch):
    # what the trainer and the tutorial pipeline leave out of their replay buffers: the "next" step, the collector's
    # trajectory ids, the actors' distribution parameters and the bottom-up outputs; the loss is the same without them
    from tensordict import TensorDict

    graph, env, composer = composed("tree3", critic="group")
    loss = RNLoss(composer, beta=0.5)
    data = collect(env, composer.policy)
    with torch.no_grad():
        loss.value_estimator(data)
    unread = ["next", *(k for g in graph.groups for k in composer.actor(g).module[0].out_keys),
              *composer.messages.out_keys]
    assert ("level1", "loc") in unread and ("level1", "observation") in unread
    torch.manual_seed(0)
    full = loss(data)
    # and no module of the composed graph converts its outputs with TensorDict.from_any (a per-call import-path
    # lookup of pandas): DirectModule writes them as they are
    monkeypatch.setattr(TensorDict, "from_any", classmethod(lambda cls, obj, **kw: pytest.fail("from_any called")))
    torch.manual_seed(0)
    lean = loss(data.exclude(*unread))
    for key in full.keys(True, True):
        torch.testing.assert_close(lean[key], full[key], rtol=0, atol=0)
    with torch.no_grad():
        composer.policy(env.reset())
