"""``RNLoss(fused=True)`` against the reference, the per-group TorchRL ``ClipPPOLoss`` composition (``fused=False``).

One table: every graph shape of LevelEnv's transform test matrix (tests/core/test_level_env_transforms.py), learned
and mean messages, local/group/per-level critics, decision periods > 1, value normalisation, the goal warm-up and the
advantage reward. For each, on a random batch collected by the graph's own (randomly initialised) policy, with
random advantages where the data carries them: every loss term, every diagnostic, every parameter gradient and the
value normalisers' statistics after the call must equal the reference's to 1e-6.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.objectives import LossModule

from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss
from torchrl_rn.envs import MockMultiAgentEnv

from conftest import shared_dag

N = 4


#: name: (graph, GraphComposer options, RNLoss options, goal warm-up on)
CASES = {
    "flat": (lambda: RNGraph.flat(N), {}, {}, False),
    "tree2": (lambda: RNGraph.tree(N, [2]), {}, {}, False),
    "tree22": (lambda: RNGraph.tree(N, [2, 2]), {}, {"beta": 0.5}, False),
    "dag": (lambda: RNGraph.overlapping(N, 2), {}, {}, False),
    "dag_root": (lambda: RNGraph.overlapping(N, 2, root=True), {}, {"beta": 0.3, "neighbourhood": "up"}, False),
    "shared_dag": (shared_dag, {}, {}, False),
    "tree2_periods": (lambda: RNGraph.tree(N, [2], periods=[1, 3]), {}, {}, False),
    "tree22_periods": (lambda: RNGraph.tree(N, [2, 2], periods=[2, 3, 4]), {"observe_clock": True}, {}, False),
    "dag_root_addressed": (
        lambda: RNGraph.overlapping(N, 2, root=True, vertex_attrs={"instruct": "addressed"}), {}, {}, False),
    "tree22_learned": (lambda: RNGraph.tree(N, [2, 2], vertex_attrs={"phi": "learned"}), {}, {}, False),
    "tree22_learned_detached": (lambda: RNGraph.tree(N, [2, 2], vertex_attrs={"phi": "learned"}),
                                {"detach_messages": True}, {}, False),
    "tree22_mean": (lambda: RNGraph.tree(N, [2, 2], vertex_attrs={"phi": "mean"}), {}, {}, False),
    "tree2_group_critics": (lambda: RNGraph.tree(N, [2]), {"critic": "group"}, {}, False),
    "tree22_level_critics": (lambda: RNGraph.tree(N, [2, 2]), {"critic": ["group", "local", "group"]}, {}, False),
    "tree22_value_norm_periods": (lambda: RNGraph.tree(N, [2, 2], periods=[1, 2, 3]), {"value_norm": True},
                                  {"normalize_advantage": True}, False),
    "tree2_value_norm_group": (lambda: RNGraph.tree(N, [2]), {"value_norm": True, "critic": "group"},
                               {"loss_critic_type": "l2", "critic_coeff": 0.5}, False),
    "tree2_goal_warmup": (lambda: RNGraph.tree(N, [2], periods=[1, 2], vertex_reward="goal:pos"), {}, {}, True),
    "tree2_goal_trained": (lambda: RNGraph.tree(N, [2], periods=[1, 2], vertex_reward="goal:pos"), {}, {}, False),
    "tree22_advantage_reward": (lambda: RNGraph.tree(N, [2, 2], vertex_reward="advantage:0.3"), {},
                                {"beta": 0.5, "group_coeffs": {"level1": 0.5}}, False),
    "tree2_end_to_end": (lambda: RNGraph.tree(N, [2], defaults={"learn": "gradient"}), {"critic": "local"}, {}, False),
    "tree22_end_to_end_addressed": (
        lambda: RNGraph.tree(N, [2, 2], defaults={"learn": "gradient", "instruct": "addressed"}), {}, {}, False),
    "tree2_advantage_reward_periods": (lambda: RNGraph.tree(N, [2], periods=[1, 3], vertex_reward="advantage:0.5"),
                                       {"value_norm": True}, {"entropy_coeff": 0.1}, False),
}


def _run(composer: GraphComposer, data, fused: bool, precomputed: bool, **loss_kwargs):
    loss = RNLoss(composer, fused=fused, gamma=0.9, lmbda=0.8, **loss_kwargs)
    data = data.clone()
    if precomputed:  # as TorchRL's tutorials do: advantages in the data, here random ones
        with torch.no_grad():
            loss.value_estimator(data)
        torch.manual_seed(7)
        for g in composer.graph.groups:
            data[g, "advantage"] = torch.randn_like(data[g, "advantage"])
    torch.manual_seed(3)  # TanhNormal's entropy is sampled: both paths must draw the same numbers
    out = loss(data)
    out["loss"].backward()
    grads = {name: p.grad for name, p in composer.named_parameters() if p.grad is not None}
    return out, grads, {k: v.clone() for k, v in composer.state_dict().items()}


@pytest.mark.parametrize("precomputed", [False, True], ids=["advantages-in-loss", "advantages-in-data"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_loss_equals_per_group_clip_ppo_losses(case, precomputed):
    make_graph, composer_kwargs, loss_kwargs, warmup = CASES[case]
    graph = make_graph()
    env = TransformedEnv(MockMultiAgentEnv(N, num_envs=3, max_steps=5, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=16, **composer_kwargs)
    if warmup:
        assert composer.goal_warmup(True)
    with torch.no_grad():
        data = env.rollout(7, composer.policy, break_when_any_done=False)
    ref_out, ref_grads, ref_state = _run(copy.deepcopy(composer), data, False, precomputed, **loss_kwargs)
    out, grads, state = _run(copy.deepcopy(composer), data, True, precomputed, **loss_kwargs)

    keys = sorted(ref_out.keys(True, True), key=str)
    assert sorted(out.keys(True, True), key=str) == keys
    assert len(keys) > 4 * len(graph.groups)  # every group's terms and diagnostics are compared
    for key in keys:
        torch.testing.assert_close(out[key], ref_out[key], rtol=0, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    assert set(grads) == set(ref_grads) and grads
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    for name, value in ref_state.items():  # the value normalisers' statistics, updated by the losses
        torch.testing.assert_close(state[name], value, rtol=0, atol=1e-6)
    if warmup:  # the warm-up's groups are still untrained in the fused pass
        for g in composer.warming_up:
            assert all(out[g, k] == 0 for k in ("loss_objective", "loss_critic", "loss_entropy"))


def test_fused_path_needs_ppo_group_losses():
    graph = RNGraph.tree(N, [2])
    env = TransformedEnv(MockMultiAgentEnv(N, num_envs=2), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    assert RNLoss(composer, fused=True).fused and not RNLoss(composer).fused

    class NotPPO(LossModule):  # no PPO hooks to hand the heads to
        def __init__(self, *args, **kwargs):
            super().__init__()

    with pytest.raises(TypeError, match=r"RNLoss\(fused=True\) needs .* group 'level1' has NotPPO"):
        RNLoss(composer, fused=True, loss_cls={"level1": NotPPO})


def test_fused_loss_restores_the_group_losses_networks():
    graph = RNGraph.tree(N, [2])
    env = TransformedEnv(MockMultiAgentEnv(N, num_envs=2), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    loss = RNLoss(composer, fused=True)
    with torch.no_grad():
        data = env.rollout(3, composer.policy)
    loss(data)
    for g, group_loss in loss.group_losses.items():
        assert group_loss.critic_network is composer.value_head(g)
        assert "_get_cur_log_prob" not in vars(group_loss) and "critic_network" not in vars(group_loss)


@pytest.mark.parametrize("options", [{}, {"periods": "1,2", "vertex_reward": "advantage:0.5", "value_norm": True}])
def test_trainer_fused_loss_trains_the_same_run(tmp_path, options):
    from torchrl_rn.train import RNTrainer, TrainConfig

    def history(fused: bool) -> list[dict]:
        cfg = TrainConfig(task="mock", frames=200, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=2,
                          num_cells=8, manager_cells=8, fused_loss=fused, out=str(tmp_path / f"fused{fused}"),
                          **options)
        trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(N, num_envs=n, seed=seed), progress=False)
        assert trainer.loss.fused is fused
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in trainer.train()]

    reference, fused = history(False), history(True)
    assert len(reference) == 2 and "level1/loss_objective" in reference[0]
    assert fused == reference  # fixed seed: the same metrics, row by row


@pytest.mark.parametrize("case", ["tree2_periods", "tree22_value_norm_periods", "tree22_learned"])
def test_one_fused_loss_stays_equal_over_calls(case):
    """The fused loss keeps each group's TanhNormal between calls (given new parameters by its ``update``): over
    several minibatches of different sizes (decision rows differ), every term equals a fresh reference's, and a copy
    or a pickle of the loss leaves the kept distributions behind."""
    import pickle

    make_graph, composer_kwargs, loss_kwargs, _ = CASES[case]
    graph = make_graph()
    env = TransformedEnv(MockMultiAgentEnv(N, num_envs=3, max_steps=5, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=16, **composer_kwargs)
    with torch.no_grad():
        data = env.rollout(7, composer.policy, break_when_any_done=False)
    # each on its own copy: the losses update their value normalisers' statistics at every call
    reference = RNLoss(copy.deepcopy(composer), gamma=0.9, lmbda=0.8, **loss_kwargs)
    fused = RNLoss(composer, fused=True, gamma=0.9, lmbda=0.8, **loss_kwargs)
    for rows in (slice(0, 3), slice(1, 7), slice(0, 2)):
        torch.manual_seed(3)
        out = fused(data[:, rows].clone())
        torch.manual_seed(3)
        ref = reference(data[:, rows].clone())
        for key in ref.keys(True, True):
            torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    assert fused._dists and copy.deepcopy(fused)._dists == {} and pickle.loads(pickle.dumps(fused))._dists == {}
