"""Decision periods (issue 10, section 2): a vertex group that decides every k steps and holds its action in between.

Graph attribute and builders, the held state in LevelEnv, the hold in the composed policy, the semi-Markov GAE
(hand-computed, episodes ending mid-window by termination and by truncation), RNLoss on decision rows only, the
trainer option, and a plain TorchRL loop.
"""
from __future__ import annotations

import networkx as nx
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.collectors import Collector
from torchrl.envs import ParallelEnv, SerialEnv, TransformedEnv
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from torchrl_rn import GraphComposer, GraphGAE, LevelEnv, LevelView, RNGraph, RNLoss
from torchrl_rn.objectives import semi_markov_gae
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.graph import GraphError


def _rollout(env, steps, policy):
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):  # sampled, as a collector does
        return env.rollout(steps, policy, break_when_any_done=False)


def _env(graph, *, num_envs=2, max_steps=7, seed=0, n_agents=4):
    return TransformedEnv(MockMultiAgentEnv(n_agents, num_envs=num_envs, max_steps=max_steps, seed=seed),
                          LevelEnv(graph))


# ---------------------------------------------------------------------------------------------------- graph
def test_periods_per_level_from_builders_and_spec():
    tree = RNGraph.tree(8, [2, 2], periods=[1, 5, 10])
    assert [tree.period(g) for g in tree.groups] == [1, 5, 10]
    assert RNGraph.from_spec("tree:2", 4, periods=[1, 5]).period("level1") == 5
    assert RNGraph.from_spec("dag:2+root", 4, periods=[1, 3, 6]).period("level2") == 6
    assert RNGraph.flat(3, periods=[2]).period("agents") == 2
    assert RNGraph.tree(4, [2]).period("level1") == 1  # default
    # a vertex's own attribute wins over its level's entry
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes["boss"]["period"] = 4
    assert RNGraph(g).period("level1") == 4
    assert RNGraph(g, periods=[1, 2]).period("level1") == 4


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
def test_bad_vertex_period_names_the_vertex(bad):
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes["boss"]["period"] = bad
    with pytest.raises(GraphError, match=r"vertex 'boss': period must be a positive int"):
        RNGraph(g)


def test_group_with_two_periods_names_the_group():
    g = nx.DiGraph([("a", "m0"), ("b", "m1")])
    g.nodes["a"]["period"] = 2
    with pytest.raises(GraphError, match=r"group 'level1' has inconsistent period"):
        RNGraph(g)


@pytest.mark.parametrize(("periods", "match"), [([1], "gives 1 period"), ([1, 5, 5], "gives 3 period"),
                                                ([1, 0], "level 1 must be a positive int")])
def test_bad_periods_option(periods, match):
    with pytest.raises(GraphError, match=match):
        RNGraph.tree(4, [2], periods=periods)


def test_period_one_changes_no_key():
    """Periods do not change the keys a flat or period-1 graph produces."""
    for plain, ones in ((RNGraph.tree(4, [2]), RNGraph.tree(4, [2], periods=[1, 1])),
                        (RNGraph.flat(4), RNGraph.flat(4, periods=[1]))):
        envs = [_env(plain), _env(ones)]
        assert envs[0].full_observation_spec == envs[1].full_observation_spec
        assert envs[0].full_state_spec == envs[1].full_state_spec
        torch.manual_seed(0)
        a = envs[0].rollout(3, GraphComposer(plain, envs[0], num_cells=8).policy)
        torch.manual_seed(0)
        b = envs[1].rollout(3, GraphComposer(ones, envs[1], num_cells=8).policy)
        assert set(a.keys(True, True)) == set(b.keys(True, True))
        assert all((a[k] == b[k]).all() for k in a.keys(True, True))


# ---------------------------------------------------------------------------------------------------- env + policy
def test_held_instruction_over_windows_and_episode_end_mid_window():
    graph = RNGraph.tree(4, [2], periods=[1, 3])
    env = _env(graph, max_steps=7)
    check_env_specs(env)
    composer = GraphComposer(graph, env, num_cells=8)
    data = _rollout(env, 10, composer.policy)
    # episodes of 7 steps: windows 3, 3, then 1 (the episode ends mid-window), then a fresh window after the reset
    expected = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    window = data["level1", "window_step"]
    assert (window == expected.view(1, -1, 1, 1)).all()
    decided = data["level1", "decided"]
    assert decided.dtype == torch.bool and (decided == (window == 0)).all()
    action, log_prob = data["level1", "action"], data["level1", "action_log_prob"]
    for t in range(10):
        last = max(s for s in range(t + 1) if expected[s] == 0)  # the decision in force
        assert torch.equal(action[:, t], action[:, last])
        assert (log_prob[:, t] == 0).all() == (t != last)  # a held action is deterministic: log-prob 0
    # a step's held action is carried into "next" and the motors read the held instruction
    assert torch.equal(data["next", "level1", "held_action"], action)
    assert torch.equal(data["agents", "instruction"][:, :, :2], action[:, :, :1].expand(-1, -1, 2, -1))
    # the fresh samples at the held steps were different (so the hold, not chance, repeats them)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        fresh = composer.actor("level1")(data.select(*composer.actor("level1").in_keys).clone())
    assert not torch.equal(fresh["level1", "action"][:, 1], action[:, 1])


def test_motors_with_a_period_repeat_their_env_action():
    graph = RNGraph.tree(4, [2], periods=[2, 3])
    env = _env(graph, max_steps=5)
    check_env_specs(env)
    data = _rollout(env, 6, GraphComposer(graph, env, num_cells=8).policy)
    assert data["agents", "window_step"][0, :, 0, 0].tolist() == [0, 1, 0, 1, 0, 0]
    action = data["agents", "action"]
    assert torch.equal(action[:, 1], action[:, 0]) and torch.equal(action[:, 3], action[:, 2])
    assert not torch.equal(action[:, 2], action[:, 1])


def test_window_state_in_batched_envs_and_partial_reset():
    graph = RNGraph.tree(4, [2], periods=[1, 3])
    batched = SerialEnv(2, lambda: _env(graph))
    check_env_specs(batched)
    assert ("level1", "window_step") in batched.full_state_spec.keys(True, True)
    env = _env(graph)
    td = env.reset()
    for _ in range(2):
        td = env.rand_step(td)
        td = td["next"].clone()
    assert (td["level1", "window_step"] == 2).all()
    td["_reset"] = torch.tensor([[True], [False]])
    out = env.reset(td)
    assert out["level1", "window_step"][:, 0, 0].tolist() == [0, 2]  # a fresh window only where the env reset
    assert torch.equal(out["level1", "held_action"][1], td["level1", "held_action"][1])


def _period_env():  # module level: ParallelEnv pickles it
    return _env(RNGraph.tree(4, [2], periods=[1, 3]), max_steps=7)


@pytest.mark.parametrize("batched", [SerialEnv, pytest.param(ParallelEnv, marks=pytest.mark.slow)])
def test_held_instruction_inside_batched_env_workers(batched):
    # a worker gets only the action and state entries of a step: the held instruction must travel as state
    env = batched(2, _period_env)
    try:
        composer = GraphComposer(RNGraph.tree(4, [2], periods=[1, 3]), env, num_cells=8)
        data = _rollout(env, 8, composer.policy)
    finally:
        env.close()
    assert data["level1", "window_step"][0, 0, :, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    action = data["level1", "action"]
    for held, decision in ((1, 0), (2, 0), (4, 3), (5, 3)):
        assert torch.equal(action[:, :, held], action[:, :, decision])
    assert torch.equal(data["agents", "instruction"][..., :2, :], action[..., :1, :].expand(2, 2, 8, 2, 4))


def test_tag_view_refuses_periods():
    graph = RNGraph.tree(4, [2], periods=[1, 3])
    composer = GraphComposer(graph, _env(graph), num_cells=8)
    with pytest.raises(GraphError, match="TAG view does not support decision periods yet: group 'level1'"):
        LevelView(graph, level=1, lower_policy=composer)


def test_subordinates_observe_the_steps_left_to_their_superiors_decision():
    graph = RNGraph.tree(4, [2], periods=[1, 4])
    env = _env(graph, max_steps=6)
    composer = GraphComposer(graph, env, num_cells=8, observe_clock=True)
    assert ("agents", "superior_clock") in composer.actor("agents").in_keys
    assert ("agents", "superior_clock") in composer.value_head("agents").in_keys
    data = _rollout(env, 8, composer.policy)
    # level1's windows: 0 1 2 3 | 0 1 (episode end) | 0 1; steps left / period
    expected = torch.tensor([4, 3, 2, 1, 4, 3, 4, 3]) / 4
    assert torch.allclose(data["agents", "superior_clock"], expected.view(1, 8, 1, 1).expand(2, 8, 4, 1))
    # the motors' policy reads it
    td = data[:, :1].clone()
    loc = composer.actor("agents")(td.clone())["agents", "loc"]
    td["agents", "superior_clock"] = td["agents", "superior_clock"] * 0.25
    assert not torch.allclose(composer.actor("agents")(td)["agents", "loc"], loc)
    # the critic computes it on "next" data too, and the loss trains with it
    loss = RNLoss(composer)
    out = loss(data)
    (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
    # a graph without periods: the option changes no key
    plain = RNGraph.tree(4, [2])
    env = _env(plain)
    keys = set(_rollout(env, 2, GraphComposer(plain, env, num_cells=8, observe_clock=True).policy).keys(True, True))
    assert keys == set(_rollout(env, 2, GraphComposer(plain, env, num_cells=8).policy).keys(True, True))


# ---------------------------------------------------------------------------------------------------- GAE
def _col(*x, dtype=torch.float):
    return torch.tensor(x, dtype=dtype).view(-1, 1)


def test_semi_markov_gae_hand_computed_windows():
    # gamma 0.5, lambda 0.5, period 3, 6 steps, decisions at 0 and 3, the batch ends mid-episode
    v = _col(10, 0, 0, 20, 0, 0)
    nv = _col(0, 0, 20, 0, 0, 8)
    r = _col(1, 2, 3, 4, 5, 6)
    no = _col(0, 0, 0, 0, 0, 0, dtype=torch.bool)
    adv, target = semi_markov_gae(0.5, 0.5, v, nv, r, no, no, _col(1, 0, 0, 1, 0, 0, dtype=torch.bool), time_dim=0)
    # decision 3: R = 4 + .5*5 + .25*6 = 8, bootstrap .125 * V'(5)=8 -> 9; A = 9 - 20
    # decision 0: R = 1 + .5*2 + .25*3 = 2.75, + .125 * V'(2)=20, + .125 * lambda * A_3 -> 4.5625; A = 4.5625 - 10
    assert torch.allclose(adv.flatten(), torch.tensor([-5.4375, 0, 0, -11.0, 0, 0]))
    assert torch.allclose(target.flatten(), torch.tensor([4.5625, 0, 0, 9.0, 0, 0]))  # held steps: target = value


@pytest.mark.parametrize(("terminated", "expected_a0"), [(True, 2.0 - 10), (False, 2.0 + 0.25 * 99 - 10)])
def test_semi_markov_gae_episode_ends_mid_window(terminated, expected_a0):
    # period 3; the episode ends after 2 steps (done at t=1) and a new one starts at t=2 with a decision
    v = _col(10, 0, 30, 0, 0)
    nv = _col(0, 99, 0, 0, 8)
    r = _col(1, 2, 3, 4, 5)
    done = _col(0, 1, 0, 0, 0, dtype=torch.bool)
    term = done & terminated
    adv, target = semi_markov_gae(0.5, 0.5, v, nv, r, done, term, _col(1, 0, 1, 0, 0, dtype=torch.bool), time_dim=0)
    # decision 0: a window of 2 steps: R = 1 + .5*2 = 2, discount gamma**2 = .25; bootstrap V' = 99 only on
    # truncation; nothing chained past the episode's end. decision 2: R = 3 + .5*4 + .25*5 = 6.25, + .125 * 8
    assert torch.allclose(adv.flatten(), torch.tensor([expected_a0, 0, 7.25 - 30, 0, 0]))
    assert torch.allclose(target.flatten(), torch.tensor([expected_a0 + 10, 0, 7.25, 0, 0]))


def test_semi_markov_gae_with_every_step_deciding_is_torchrl_gae():
    torch.manual_seed(0)
    v, nv, r = torch.randn(3, 9, 2, 1), torch.randn(3, 9, 2, 1), torch.randn(3, 9, 2, 1)
    term, trunc = torch.rand(3, 9, 2, 1) < 0.15, torch.rand(3, 9, 2, 1) < 0.15
    expected = vec_generalized_advantage_estimate(0.9, 0.8, v, nv, r, term | trunc, term, time_dim=1)
    got = semi_markov_gae(0.9, 0.8, v, nv, r, term | trunc, term, torch.ones(3, 9, 2, 1, dtype=torch.bool),
                          time_dim=1)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def _value_from(field):
    """A graph critic that reads each group's value from ``(g, field)``: values set by hand."""
    return TensorDictSequential(*(TensorDictModule(lambda x: x, [(g, field)], [(g, "state_value")])
                                  for g in ("agents", "level1")))


def test_graph_gae_credits_the_period_group_semi_markov():
    graph = RNGraph.tree(2, [2], periods=[1, 2])
    T = 4
    v_agents, v_boss = torch.randn(1, T + 1, 2, 1), torch.tensor([10.0, 0, 20, 0, 6]).view(1, T + 1, 1, 1)
    r_agents = torch.randn(1, T, 2, 1)
    r_boss = torch.tensor([1.0, 2, 3, 4]).view(1, T, 1, 1)
    done = torch.tensor([False, True, False, False]).view(1, T, 1)  # a truncation at t=1 (done, not terminated)
    data = TensorDict({
        "agents": TensorDict({"v": v_agents[:, :T]}, [1, T, 2]),
        "level1": TensorDict({"v": v_boss[:, :T], "decided": torch.tensor([1, 0, 1, 0]).bool().view(1, T, 1, 1)},
                             [1, T, 1]),
        "next": TensorDict({
            "agents": TensorDict({"v": v_agents[:, 1:], "reward": r_agents}, [1, T, 2]),
            "level1": TensorDict({"v": v_boss[:, 1:], "reward": r_boss}, [1, T, 1]),
            "done": done, "terminated": torch.zeros_like(done),
        }, [1, T]),
    }, [1, T])
    gae = GraphGAE(graph, gamma=0.5, lmbda=0.5, value_network=_value_from("v"))
    gae(data)
    # level1: decision 0 holds 2 steps and the episode is truncated: 1 + .5*2 + .25 * V'(1) = 2 + .25*20 = 7
    # decision 2: 3 + .5*4 + .25 * 6 = 6.5
    assert torch.allclose(data["level1", "advantage"].flatten(), torch.tensor([7.0 - 10, 0, 6.5 - 20, 0]))
    assert torch.allclose(data["level1", "value_target"].flatten(), torch.tensor([7.0, 0, 6.5, 0]))
    # the period-1 motors: exactly TorchRL's GAE
    expected = vec_generalized_advantage_estimate(
        0.5, 0.5, v_agents[:, :T], v_agents[:, 1:], r_agents, done.unsqueeze(-2).expand(1, T, 2, 1),
        torch.zeros(1, T, 2, 1, dtype=torch.bool), time_dim=1)
    assert torch.equal(data["agents", "advantage"], expected[0])
    # without the decision marks (and without the window state) the group cannot be credited
    del data["level1", "decided"]
    with pytest.raises(KeyError, match="'level1', 'decided'"):
        gae(data)


# ---------------------------------------------------------------------------------------------------- loss
def test_rnloss_trains_a_period_group_on_its_decision_rows_only():
    torch.manual_seed(0)
    graph = RNGraph.tree(4, [2], periods=[1, 3])
    env = _env(graph, max_steps=7)
    composer = GraphComposer(graph, env, num_cells=8)
    loss = RNLoss(composer, entropy_coeff=0.1)
    assert ("level1", "decided") in loss.in_keys and ("agents", "decided") not in loss.in_keys
    data = _rollout(env, 10, composer.policy)
    loss.value_estimator(data)
    torch.manual_seed(1)  # TanhNormal's entropy is a sampled estimate
    out = loss(data)
    rows = data["level1", "decided"][..., 0, 0]
    reference = ClipPPOLoss(composer.actor("level1"), composer.value_head("level1"), entropy_coeff=0.1,
                            loss_critic_type="smooth_l1", functional=False)
    reference.set_keys(**{name: ("level1", field) for name, field in (
        ("action", "action"), ("sample_log_prob", "action_log_prob"), ("value", "state_value"),
        ("advantage", "advantage"), ("value_target", "value_target"))})
    torch.manual_seed(1)
    loss.group_losses["agents"](data)  # RNLoss runs the motors' loss (and its entropy samples) first
    expected = reference(data[rows])
    for term in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(out["level1", term], expected[term])
    # weighting (advantage 0 on held rows) instead of selecting would average over all rows: a different loss
    assert not torch.allclose(out["level1", "loss_critic"], reference(data)["loss_critic"])
    # the held rows' advantages do not reach the loss
    data["level1", "advantage"][~rows] = 1e3
    torch.testing.assert_close(loss(data)["level1", "loss_objective"], out["level1", "loss_objective"])


def test_rnloss_without_a_decision_in_the_batch_gives_zero_terms():
    graph = RNGraph.tree(4, [2], periods=[1, 3])
    env = _env(graph, max_steps=7)
    composer = GraphComposer(graph, env, num_cells=8)
    loss = RNLoss(composer)
    data = _rollout(env, 6, composer.policy)
    loss.value_estimator(data)
    held = data[:, [1, 2, 4, 5]]  # no decision of level1 in these rows
    out = loss(held)
    assert out["level1", "loss_objective"] == 0 and out["level1", "loss_critic"] == 0
    (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
    assert composer.actor("agents").module[0].module.mlp[0].params.grad is not None


# ---------------------------------------------------------------------------------------------------- scripts
def test_plain_torchrl_loop_with_a_period_5_manager():
    torch.manual_seed(0)
    graph = RNGraph.tree(4, [2], periods=[1, 5])
    env = _env(graph, num_envs=4, max_steps=12)
    composer = GraphComposer(graph, env, num_cells=16)
    loss = RNLoss(composer, gamma=0.9, lmbda=0.9)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    collector = Collector(env, composer.policy, frames_per_batch=96, total_frames=288)
    windows = []
    for data in collector:  # the README's loop
        windows.append(data["level1", "window_step"][0, :, 0, 0])
        with torch.no_grad():
            loss.value_estimator(data)  # semi-Markov for level1, over the whole batch's windows
        assert (data["level1", "advantage"][~data["level1", "decided"]] == 0).all()
        for batch in data.reshape(-1).split(32):  # flattened rows: RNLoss picks level1's decisions in each
            vals = loss(batch)
            total = vals["loss_objective"] + vals["loss_critic"] + vals["loss_entropy"]
            assert torch.isfinite(total)
            total.backward()
            optim.step()
            optim.zero_grad()
        collector.update_policy_weights_()
    collector.shutdown()
    # the window carries over collector batches (24 steps per batch, episodes of 12: 5, 5, 2)
    assert torch.cat(windows).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1] * 6


def test_trainer_option_periods(tmp_path):
    from torchrl_rn import RNTrainer
    from torchrl_rn.train import TrainConfig

    cfg = TrainConfig(task="mock", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, eval_every=1, eval_envs=2, logger="", graph="tree:2",
                      periods="1,5", observe_clock=True, out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(3, num_envs=n, seed=seed, max_steps=5),
                        progress=False)
    assert trainer.graph.period("level1") == 5 and cfg.method_name == "rn-tree2-p1-5"
    assert ("agents", "superior_clock") in trainer.composer.actor("agents").in_keys
    assert len(trainer.train()) == 1
    for bad in ("0,5", "x", "1,,5"):
        with pytest.raises(ValueError, match="--periods must be positive ints"):
            TrainConfig(periods=bad)
    with pytest.raises(ValueError, match="--periods applies only to --algo rn"):
        TrainConfig(algo="mappo", periods="1,5")
    with pytest.raises(ValueError, match="--observe-clock applies only to --algo rn"):
        TrainConfig(algo="ippo", observe_clock=True)
    with pytest.raises(GraphError, match="periods"):
        RNTrainer(TrainConfig(task="mock", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50,
                              periods="1,5,5", logger="", out=str(tmp_path / "bad")),
                  env_fn=lambda n, seed: MockMultiAgentEnv(3, num_envs=n, seed=seed, max_steps=5), progress=False)
