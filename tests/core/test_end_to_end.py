"""End-to-end instructions (vertex attribute ``learn="gradient"``): a manager acting with the tanh of its actor's mean,
trained only by its subordinates' losses through the instruction they read."""
from __future__ import annotations

import networkx as nx
import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import ClipPPOLoss

from torchrl_rn import GraphComposer, GraphError, LevelEnv, RNGraph, RNLoss, RNTrainer, TrainConfig
from torchrl_rn.envs import MockMultiAgentEnv


def _setup(graph: RNGraph, n_agents: int, **composer_kwargs):
    torch.manual_seed(0)
    env = TransformedEnv(MockMultiAgentEnv(n_agents, num_envs=3, max_steps=4, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8, **composer_kwargs)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):  # as a collector does
        data = env.rollout(5, composer.policy, break_when_any_done=False)
    return env, composer, data


def test_the_manager_acts_with_the_tanh_of_its_mean_and_samples_nothing():
    graph = RNGraph.tree(2, [2], defaults={"learn": "gradient"})
    env, composer, data = _setup(graph, 2)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        a, b = composer.policy(td.clone()), composer.policy(td.clone())
    torch.testing.assert_close(a["level1", "action"], b["level1", "action"])  # no sampling
    torch.testing.assert_close(a["level1", "action"], a["level1", "loc"].tanh())
    assert ("level1", "action_log_prob") not in a.keys(True)
    assert not torch.equal(a["agents", "action"], b["agents", "action"])  # the motors still sample
    # the motors read it: their instruction is the manager's action
    torch.testing.assert_close(data["agents", "instruction"][..., 0, :], data["level1", "action"][..., 0, :])


def test_the_gradient_reaching_the_manager_is_autograd_through_a_hand_built_composition():
    """One manager over one motor: RNLoss's gradient on the manager's parameters equals autograd of the motor's own
    ClipPPOLoss evaluated on the instruction tanh(head(manager observation)), built by hand."""
    graph = RNGraph.tree(1, [1], defaults={"learn": "gradient"})
    _, composer, data = _setup(graph, 1)
    loss = RNLoss(composer, gamma=0.9, lmbda=0.9, entropy_coeff=0.01)
    with torch.no_grad():
        loss.value_estimator(data)  # the same advantages for both
    data = data.reshape(-1)
    manager = composer.vertex_groups["level1"]
    torch.manual_seed(1)  # the TanhNormal entropy is a sampled estimate: the same draws for both
    out = loss(data)
    assert set(out.keys()) - {"loss", "loss_objective", "loss_critic", "loss_entropy"} == {"agents"}  # no manager loss
    out["loss"].backward()
    ours = [p.grad.clone() for p in manager.parameters() if p.grad is not None]
    composer.zero_grad()

    td = data.clone()
    obs = td["agents", "observation"]  # phi identity: the manager observes its motor's observation
    net = manager.actor.module[0].module  # the manager's network: loc and scale from (observation, instruction)
    loc = net(obs)[0]
    td["agents", "instruction"] = loc.tanh()  # its one motor reads the whole action
    reference = ClipPPOLoss(composer.actor("agents"), composer.value_head("agents"), entropy_coeff=0.01,
                            normalize_advantage_exclude_dims=(-2,), functional=False)
    reference.set_keys(**{name: ("agents", key) for name, key in (
        ("action", "action"), ("sample_log_prob", "action_log_prob"), ("value", "state_value"),
        ("advantage", "advantage"), ("value_target", "value_target"))})
    torch.manual_seed(1)
    terms = reference(td.exclude("level1", "next"))
    (terms["loss_objective"] + terms["loss_critic"] + terms["loss_entropy"]).backward()
    theirs = [p.grad.clone() for p in manager.parameters() if p.grad is not None]
    assert len(ours) == len(theirs) == 6  # the actor network's three layers; the value head gets nothing
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert sum(float(g.abs().sum()) for g in ours) > 0


def test_no_gradient_reaches_the_manager_while_it_gives_random_goals():
    graph = RNGraph.tree(2, [2], defaults={"learn": "gradient"}, vertex_reward="direction:2")
    _, composer, data = _setup(graph, 2)
    loss = RNLoss(composer, gamma=0.9, lmbda=0.9)
    assert composer.goal_warmup(True) == ["level1"]
    loss(data.reshape(-1))["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in composer.vertex_groups["level1"].parameters())
    composer.zero_grad()
    composer.goal_warmup(False)
    loss(data.reshape(-1))["loss"].backward()
    assert any(p.grad is not None and p.grad.any() for p in composer.vertex_groups["level1"].parameters())


@pytest.mark.parametrize("build, match", [
    (lambda: RNGraph.tree(4, [2], periods=[1, 5], defaults={"learn": "gradient"}),
     r"vertex 'l1_0': learn='gradient' needs decision period 1"),
    (lambda: RNGraph.tree(4, [2], defaults={"learn": "both"}), r"unknown learn 'both'; choose one of \('rl', "),
])
def test_bad_learning_settings_name_the_vertex(build, match):
    with pytest.raises(GraphError, match=match):
        build()


def test_a_motor_given_gradient_learning_is_refused():
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes["m0"]["learn"] = g.nodes["m1"]["learn"] = "gradient"
    with pytest.raises(GraphError, match=r"vertex 'm0': learn='gradient' .* a motor has no subordinates"):
        RNGraph(g)


def test_trainer_learn_gradient_trains_the_manager_actor_only_through_the_motors(tmp_path):
    cfg = TrainConfig(task="mock", frames=200, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, graph="tree:4", instruct="addressed", learn="gradient",
                      critic="local", eval_every=1, eval_envs=2, out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    manager = trainer.models.composer.vertex_groups["level1"]
    actor = [p.detach().clone() for p in manager.actor.parameters()]
    critic = [p.detach().clone() for p in manager.value_head.parameters()]
    trainer.train()
    assert cfg.method_name == "rn-tree4-addressed-e2e"
    assert all(not torch.equal(a, b) for a, b in zip(actor, manager.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(critic, manager.value_head.parameters()))  # no loss of its own
    assert list(trainer.loss.group_losses) == ["agents"]
    with pytest.raises(ValueError, match=r"--learn must be one of \('rl', 'gradient'\), got 'x'"):
        TrainConfig(learn="x")
