from __future__ import annotations

import sys

import pytest
import torch
from torchrl.data import Bounded, Categorical
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_rn import LevelEnv, RNGraph, RNTrainer
from torchrl_rn.envs import DEFAULT_N_AGENTS, MockMultiAgentEnv, make_env, vmas_scenarios
from torchrl_rn.train import TrainConfig


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("num_envs", [1, 8])
def test_mock_specs(discrete, num_envs):
    check_env_specs(MockMultiAgentEnv(3, num_envs=num_envs, discrete=discrete, seed=0))


def test_mock_reward_is_hand_computable():
    env = MockMultiAgentEnv(3, num_envs=2, seed=0)
    td = env.reset()
    target = td["agents", "observation"][..., :2].clone()
    td["agents", "action"] = target
    torch.testing.assert_close(env.step(td)["next", "agents", "reward"][..., 0], torch.tensor([[1.0, 2.0, 3.0]] * 2))
    td["agents", "action"] = (target + 0.5).clamp(-1, 1)  # mean |a - t| is 0.5 where unclamped
    off = (td["agents", "action"] - target).abs().mean(-1)
    expected = torch.arange(1.0, 4.0) * (1 - off)
    torch.testing.assert_close(env.step(td)["next", "agents", "reward"][..., 0], expected)
    # half a unit off on the first of 2 dims (towards 0, so never clipped): mean |a - t| = 0.25, reward 0.75 (k + 1)
    action = target.clone()
    action[..., 0] -= 0.5 * target[..., 0].sign()
    td["agents", "action"] = action
    torch.testing.assert_close(env.step(td)["next", "agents", "reward"][..., 0], torch.tensor([[0.75, 1.5, 2.25]] * 2))


def test_mock_observation_is_fixed_within_an_episode_and_shows_the_agent():
    env = MockMultiAgentEnv(3, num_envs=2, obs_dim=4, max_steps=4, seed=0)
    obs = env.rollout(4)["agents", "observation"]
    assert obs.shape == (2, 4, 3, 4)
    assert (obs == obs[:, :1]).all()
    torch.testing.assert_close(obs[0, 0, :, 2], torch.tensor([0.0, 1 / 3, 2 / 3]))  # agent index / n_agents
    assert (obs[..., 3] == 0).all() and obs[..., :2].abs().max() <= 1


def test_mock_seed_none_leaves_the_global_generator_alone():
    torch.manual_seed(7)
    a = MockMultiAgentEnv(2, num_envs=3).reset()["agents", "observation"], torch.rand(3)
    torch.manual_seed(7)
    b = MockMultiAgentEnv(2, num_envs=3).reset()["agents", "observation"], torch.rand(3)
    torch.testing.assert_close(a, b)


def test_mock_discrete_reward():
    env = MockMultiAgentEnv(2, num_envs=4, discrete=True, n_actions=3, seed=1)
    td = env.reset()
    cls = ((td["agents", "observation"][..., 0] + 1) / 2 * 2).round().long()
    td["agents", "action"] = cls
    torch.testing.assert_close(env.step(td)["next", "agents", "reward"][..., 0], torch.tensor([[1.0, 2.0]] * 4))
    td["agents", "action"] = (cls + 1) % 3
    assert env.step(td)["next", "agents", "reward"].abs().sum() == 0


def test_mock_episode_length_and_partial_reset():
    env = MockMultiAgentEnv(2, num_envs=3, max_steps=2, seed=0)
    td = env.rollout(2, break_when_any_done=False)
    assert td["next", "done"][:, -1].all() and not td["next", "done"][:, 0].any()
    td = env.reset()
    td["agents", "action"] = torch.zeros(3, 2, 2)
    before = env.step(td)["next", "agents", "observation"].clone()
    out = env.reset(td.empty().set("_reset", torch.tensor([[True], [False], [False]])))
    assert env.count.tolist() == [0, 1, 1]  # only env 0 restarted its episode
    torch.testing.assert_close(env._observation()[1:], before[1:])  # envs 1, 2 kept their targets
    torch.testing.assert_close(out["agents", "observation"][0], env._observation()[0])


def test_mock_seeding():
    a = MockMultiAgentEnv(2, num_envs=4, seed=3).reset()["agents", "observation"]
    b = MockMultiAgentEnv(2, num_envs=4, seed=3).reset()["agents", "observation"]
    c = MockMultiAgentEnv(2, num_envs=4, seed=4).reset()["agents", "observation"]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("scenario", ["balance", "simple_spread", "navigation"])
def test_vmas_tasks(scenario):
    env = make_env(f"vmas/{scenario}", num_envs=2, max_steps=5)
    check_env_specs(env)
    assert env.full_action_spec["agents", "action"].shape[1] == DEFAULT_N_AGENTS[scenario]
    assert make_env(f"vmas/{scenario}", n_agents=2, num_envs=2).full_action_spec["agents", "action"].shape[1] == 2


@pytest.mark.parametrize("scenario", ["simple_spread", "navigation"])
def test_vmas_time_limit_is_a_truncation_not_a_termination(scenario):
    # VmasEnv(max_steps=...) would mark the horizon as terminated and GAE would never bootstrap there
    env = make_env(f"vmas/{scenario}", num_envs=2, max_steps=4, seed=0)
    td = env.rollout(8, break_when_any_done=False)
    truncated = td["next", "truncated"].squeeze(-1)
    assert truncated[:, [3, 7]].all() and truncated.sum() == 4
    assert torch.equal(td["next", "done"].squeeze(-1), truncated)
    assert not td["next", "terminated"].any()
    assert td["next", "step_count"][:, 4].squeeze(-1).tolist() == [1, 1]  # a new episode after the limit


def test_make_env_passes_options_through():
    env = make_env("mock", n_agents=5, num_envs=3, max_steps=2, seed=1, obs_dim=6, action_dim=3)
    assert env.full_observation_spec["agents", "observation"].shape == (3, 5, 6)
    assert env.full_action_spec["agents", "action"].shape == (3, 5, 3)
    assert env.rollout(10).shape == (3, 2)  # stops at max_steps
    discrete = make_env("mock", n_agents=2, num_envs=1, continuous_actions=False)
    assert discrete.full_action_spec["agents", "action"].shape == (1, 2)
    vmas = make_env("vmas/balance", n_agents=3, num_envs=2, seed=0, max_steps=3)
    assert vmas.rollout(10).shape == (2, 3)


def test_vmas_seed():
    def first_obs(seed):
        return make_env("vmas/navigation", num_envs=2, seed=seed).reset()["agents", "observation"]

    assert torch.equal(first_obs(0), first_obs(0)) and not torch.equal(first_obs(0), first_obs(1))


def test_vmas_scenarios_listed():
    assert {"balance", "simple_spread", "navigation", "transport", "wheel", "give_way"} <= set(vmas_scenarios())


@pytest.mark.parametrize("gym_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_gym_single_agent_group(gym_id, num_envs):
    env = make_env(f"gym/{gym_id}", num_envs=num_envs, max_steps=4, seed=0)
    check_env_specs(env)
    obs_dim = 3 if gym_id == "Pendulum-v1" else 4
    assert env.full_observation_spec["agents"].shape == (num_envs, 1)
    assert env.full_observation_spec["agents", "observation"].shape == (num_envs, 1, obs_dim)
    assert env.full_reward_spec["agents", "reward"].shape == (num_envs, 1, 1)
    action = env.full_action_spec["agents", "action"]
    assert action.shape == ((num_envs, 1, 1) if gym_id == "Pendulum-v1" else (num_envs, 1))
    assert set(env.done_keys) == {"done", "terminated", "truncated"}
    td = env.rollout(10, break_when_any_done=False)
    assert td["next", "agents", "reward"].shape == (num_envs, 10, 1, 1)
    if gym_id == "Pendulum-v1":  # never terminates: truncated at max_steps, every env together
        assert td["next", "truncated"][:, 3::4].all() and td["next", "done"].sum() == 2 * num_envs


def test_gym_seed_and_partial_reset():
    def first_obs(seed):
        return make_env("gym/CartPole-v1", num_envs=2, seed=seed).reset()["agents", "observation"]

    assert torch.equal(first_obs(0), first_obs(0)) and not torch.equal(first_obs(0), first_obs(1))
    env = make_env("gym/CartPole-v1", num_envs=2, seed=0)
    td = env.reset()
    for _ in range(5):
        td["agents", "action"] = torch.ones(2, 1, dtype=torch.long)
        td = env.step(td)["next"]
    moved = td["agents", "observation"].clone()
    assert (moved[:, 0, 1] > 0.2).all()  # pushed right 5 times: cart velocity well above the reset range
    # as in a rollout: the reset input carries the last observation, which TorchRL keeps where "_reset" is False
    out = env.reset(td.clone().set("_reset", torch.tensor([[True], [False]])))
    assert out["agents", "observation"][0].abs().max() <= 0.05  # CartPole resets within +-0.05
    torch.testing.assert_close(out["agents", "observation"][1], moved[1])
    td = out.set(("agents", "action"), torch.ones(2, 1, dtype=torch.long))
    after = env.step(td)["next", "agents", "observation"]
    assert after[0, 0, 1].abs() < 0.5 and after[1, 0, 1] > moved[1, 0, 1]  # env 1 really kept its episode going


def test_bad_tasks_name_the_task():
    with pytest.raises(ValueError, match="unknown task 'vmas/nope': no VMAS scenario 'nope'"):
        make_env("vmas/nope")
    with pytest.raises(ValueError, match="unknown task 'atari/pong'"):
        make_env("atari/pong")
    with pytest.raises(ValueError, match=r"task 'vmas/balance' cannot take n_agents=1"):
        make_env("vmas/balance", n_agents=1)
    with pytest.raises(ValueError, match=r"task 'mock' cannot take n_agents=0"):
        make_env("mock", n_agents=0)
    with pytest.raises(ValueError, match=r"task 'vmas/navigation' cannot take n_agents=-1"):
        make_env("vmas/navigation", n_agents=-1)
    with pytest.raises(ValueError, match=r"unknown task 'gym/NoSuchEnv-v0'"):
        make_env("gym/NoSuchEnv-v0")
    with pytest.raises(ValueError, match=r"task 'gym/Pendulum-v1' cannot take n_agents=2"):
        make_env("gym/Pendulum-v1", n_agents=2)
    with pytest.raises(ValueError, match=r"Known: .*balance"):
        make_env("vmas/nope")


# ---------------------------------------------------------------------- PettingZoo (MPE from mpe2)
def test_pettingzoo_simple_spread_specs():
    env = make_env("pettingzoo/simple_spread_v3", n_agents=3, num_envs=4, max_steps=25, seed=0)
    check_env_specs(env)
    assert env.batch_size == (4,)
    assert list(env.full_observation_spec.keys()) == ["agents"]  # every agent in the one group "agents"
    assert env.full_observation_spec["agents", "observation"].shape == (4, 3, 18)
    action = env.full_action_spec["agents", "action"]
    assert isinstance(action, Bounded) and action.shape == (4, 3, 5)  # continuous by default
    assert (action.space.low == 0).all() and (action.space.high == 1).all()
    assert env.full_reward_spec["agents", "reward"].shape == (4, 3, 1)
    for key in ("done", "terminated", "truncated"):
        assert env.full_done_spec[key].shape == (4, 1)
    td = env.rollout(3)
    assert td["next", "agents", "reward"].shape == (4, 3, 3, 1) and (td["next", "agents", "reward"] != 0).all()
    # the family-qualified name (TorchRL's PettingZooEnv task form) and the agent count / action kind options
    other = make_env("pettingzoo/mpe/simple_spread_v3", n_agents=2, num_envs=1, continuous_actions=False)
    assert other.full_observation_spec["agents", "observation"].shape == (1, 2, 12)  # 18 - the 3rd agent, landmark
    discrete = other.full_action_spec["agents", "action"]
    assert isinstance(discrete, Categorical) and discrete.shape == (1, 2) and discrete.n == 5
    check_env_specs(other)


def test_pettingzoo_seed():
    def first_obs(seed):
        return make_env("pettingzoo/simple_spread_v3", num_envs=2, seed=seed).reset()["agents", "observation"]

    a = first_obs(0)
    assert torch.equal(a, first_obs(0)) and not torch.equal(a, first_obs(1))
    assert not torch.equal(a[0], a[1])  # the vectorised copies are seeded apart


def test_pettingzoo_max_steps_truncates_and_sets_the_root_done():
    env = make_env("pettingzoo/simple_spread_v3", n_agents=3, num_envs=2, max_steps=3, seed=0)
    assert env.rollout(10).shape == (2, 3)  # stops at max_steps
    td = env.rollout(7, break_when_any_done=False)
    done = td["next", "done"]
    assert done.shape == (2, 7, 1)
    assert done[:, [2, 5]].all() and done.sum() == 4  # every episode ends after 3 steps, then restarts
    assert torch.equal(td["next", "truncated"], done) and not td["next", "terminated"].any()


def test_pettingzoo_level_env_and_trainer(tmp_path):
    graph = RNGraph.tree(4, [2])
    env = TransformedEnv(make_env("pettingzoo/simple_spread_v3", n_agents=4, num_envs=2, max_steps=5, seed=0),
                         LevelEnv(graph))
    check_env_specs(env)
    assert env.full_reward_spec["level1", "reward"].shape == (2, 2, 1)
    cfg = TrainConfig(task="pettingzoo/simple_spread_v3", n_agents=4, graph="tree:2", frames=100, frames_per_batch=50,
                      max_steps=5, minibatch_size=50, epochs=1, num_cells=8, manager_cells=8, eval_every=2,
                      eval_envs=2, logger="csv", out=str(tmp_path / "run"))
    history = RNTrainer(cfg, progress=False).train()
    assert [r["frames"] for r in history] == [50, 100]
    assert all(r["train_return"] < 0 for r in history)  # simple_spread's reward is a negative distance


def test_pettingzoo_errors_name_the_task(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown task 'pettingzoo/nope_v1': no PettingZoo env 'nope_v1'\. Known: .*"
                                         r"mpe/simple_spread_v3"):
        make_env("pettingzoo/nope_v1")
    with pytest.raises(ValueError, match=r"unknown task 'pettingzoo/sisl/simple_spread_v3'"):
        make_env("pettingzoo/sisl/simple_spread_v3")  # the family must be the env's own
    with pytest.raises(ValueError, match=r"task 'pettingzoo/simple_adversary_v3': its agents cannot form one group: "
                                         r"'agent_0' has .*\(10,\).* but 'adversary_0' has .*\(8,\)"):
        make_env("pettingzoo/simple_adversary_v3", num_envs=1)  # adversaries see 8 features, good agents 10
    with pytest.raises(ValueError, match=r"task 'pettingzoo/tictactoe_v3' has no parallel API"):
        make_env("pettingzoo/tictactoe_v3", num_envs=1)
    with pytest.raises(ValueError, match=r"task 'pettingzoo/classic/rps_v2' has OneHot observations of shape \(4,\) "
                                         r"\(torch.int64\) per agent; torchrl-rn needs one flat float vector"):
        make_env("pettingzoo/classic/rps_v2", num_envs=1)  # one-hot integer observations
    with pytest.raises(ValueError, match=r"task 'pettingzoo/simple_v3' cannot take n_agents=3: it has 1 agent"):
        make_env("pettingzoo/simple_v3", n_agents=3, num_envs=1)
    monkeypatch.setitem(sys.modules, "chess", None)  # as if pettingzoo[classic] were not installed
    for cached in [m for m in sys.modules if m.startswith("pettingzoo.classic.chess")]:
        monkeypatch.delitem(sys.modules, cached)
    with pytest.raises(ImportError, match=r"task 'pettingzoo/chess_v6' needs .* pip install 'pettingzoo\[classic\]'"):
        make_env("pettingzoo/chess_v6", num_envs=1)
    monkeypatch.setitem(sys.modules, "mpe2", None)
    with pytest.raises(ValueError, match=r"unknown task 'pettingzoo/simple_spread_v3'.*need pip install mpe2"):
        make_env("pettingzoo/simple_spread_v3")
    monkeypatch.setitem(sys.modules, "pettingzoo", None)
    with pytest.raises(ImportError, match=r"task 'pettingzoo/simple_spread_v3' needs PettingZoo, which is not "
                                          r"installed: pip install pettingzoo mpe2"):
        make_env("pettingzoo/simple_spread_v3")


def test_pettingzoo_without_max_cycles_is_truncated_by_a_step_counter(monkeypatch):
    # a parallel env with no max_cycles argument (here simple_spread with a 1000-step limit hidden inside)
    import types

    from mpe2 import simple_spread_v3

    import torchrl_rn.envs.tasks as envs

    def parallel_env(N=3, continuous_actions=False):
        return simple_spread_v3.parallel_env(N=N, continuous_actions=continuous_actions, max_cycles=1000)

    unlimited = types.SimpleNamespace(parallel_env=parallel_env)
    monkeypatch.setattr(envs, "_pettingzoo_module", lambda task, name: unlimited)
    env = make_env("pettingzoo/simple_spread_v3", n_agents=3, num_envs=2, max_steps=4, seed=0)
    check_env_specs(env)
    td = env.rollout(9, break_when_any_done=False)
    done = td["next", "done"]
    assert done[:, [3, 7]].all() and done.sum() == 4  # truncated after 4 steps, then restarted
    assert torch.equal(td["next", "truncated"], done) and not td["next", "terminated"].any()
