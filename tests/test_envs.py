from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_rn.envs import DEFAULT_N_AGENTS, MockMultiAgentEnv, make_env


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


def test_bad_tasks_name_the_task():
    with pytest.raises(ValueError, match="unknown task 'vmas/nope': no VMAS scenario 'nope'"):
        make_env("vmas/nope")
    with pytest.raises(ValueError, match="unknown task 'atari/pong'"):
        make_env("atari/pong")
    with pytest.raises(ValueError, match=r"task 'vmas/balance' cannot take n_agents=1"):
        make_env("vmas/balance", n_agents=1)
