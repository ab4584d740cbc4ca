"""The direction reward (``direction:DIM``): parsing, the window origin the env carries, the reward against a
reference computed step by step from a rollout, batched envs, and the trainer with its warm-up and ``freeze``."""
from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch.nn import functional as F
from torchrl.envs import SerialEnv, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_rn import DirectionReward, GraphComposer, GraphError, LevelEnv, RNGraph, RNTrainer, TrainConfig
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.rewards import parse_reward


@pytest.mark.parametrize("text, expected", [
    ("direction", DirectionReward()),
    ("direction:2", DirectionReward(dim=2)),
    ("direction:3,c=2,beta=0.1,seed=7", DirectionReward(dim=3, c=2.0, beta=0.1, seed=7)),
    ("direction:beta=0.5", DirectionReward(beta=0.5)),
])
def test_parse_direction_reward(text, expected):
    assert parse_reward(text) == expected
    assert parse_reward(str(expected)) == expected  # its string reads back


@pytest.mark.parametrize("text, match", [
    ("direction:0", "dim must be an int in"),
    ("direction:2,seed=x", "seed must be a number"),
    ("direction:scale=2", "unknown argument 'scale'"),
])
def test_bad_direction_strings(text, match):
    with pytest.raises(ValueError, match=match):
        parse_reward(text)


def test_projection_is_fixed_by_its_seed_not_the_global_one():
    torch.manual_seed(1)
    a = DirectionReward(dim=4).projection(18)
    torch.manual_seed(2)
    b = DirectionReward(dim=4).projection(18)
    assert torch.equal(a, b) and a.shape == (4, 18)
    assert not torch.equal(a, DirectionReward(dim=4, seed=1).projection(18))


def test_superiors_are_sized_for_a_direction_per_subordinate_and_managers_refused():
    graph = RNGraph.tree(4, [4], vertex_reward="direction:3")
    assert graph.group_action_dim("level1") == 12
    addressed = RNGraph.tree(4, [4], vertex_reward="direction:3", defaults={"instruct": "addressed"})
    assert addressed.group_action_dim("level1") == 12
    g = nx.DiGraph([("top", "mid"), ("mid", "m0")])
    g.nodes["mid"]["reward"] = "direction"
    with pytest.raises(GraphError, match=r"vertex 'mid': a direction reward applies to motors only"):
        RNGraph(g)


def _reference(data, reward: DirectionReward, graph: RNGraph) -> torch.Tensor:
    """The reward step by step: origin = the projected observation where the manager's decision in force was made."""
    p = reward.projection(data["agents", "observation"].shape[-1])
    z, next_z = data["agents", "observation"] @ p.T, data["next", "agents", "observation"] @ p.T  # [E, T, n, d]
    decided = data.get(("level1", "decided"), torch.ones_like(data["done"]).unsqueeze(-2))[..., 0, 0]  # [E, T]
    n, d = graph.n_agents, reward.dim
    block = [graph.subordinates(graph.superiors(v)[0]).index(v) for v in graph.groups["agents"]]
    out = torch.zeros(*z.shape[:-1], 1)
    for e in range(z.shape[0]):
        start = None
        for t in range(z.shape[1]):
            if decided[e, t]:
                start = t
            origin = z[e, start]
            for i in range(n):
                g = data["agents", "instruction"][e, t, i, block[i] * d:(block[i] + 1) * d]
                after = F.cosine_similarity(next_z[e, t, i] - origin[i], g, dim=-1)
                before = F.cosine_similarity(z[e, t, i] - origin[i], g, dim=-1)
                out[e, t, i, 0] = reward.c * (after - before) + reward.beta * data["next", "agents", "reward"][e, t, i, 0]
    return out


@pytest.mark.parametrize("period", [1, 3])
def test_direction_reward_in_level_env_matches_a_step_by_step_reference(period):
    reward = DirectionReward(dim=2, c=2.0, beta=0.25)
    graph = RNGraph.tree(4, [2], periods=[1, period], vertex_reward=str(reward))
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3, max_steps=4, obs_dim=5, seed=0), LevelEnv(graph))
    check_env_specs(env)
    assert ("agents", "goal_origin") in env.full_state_spec.keys(True, True)
    torch.manual_seed(0)
    data = env.rollout(10, GraphComposer(graph, env, num_cells=8).policy, break_when_any_done=False)
    if period == 1:
        assert ("level1", "decided") not in data.keys(True)  # decides every step
    else:  # windows restart at every reset: episodes of 4 steps, windows of 3
        assert data["level1", "decided"][0, :, 0, 0].tolist() == [True, False, False, True] * 2 + [True, False]
    expected = _reference(data, reward, graph)
    torch.testing.assert_close(data["next", "agents", "vertex_reward"], expected)
    assert expected.abs().sum() > 0


def test_window_rewards_sum_to_the_cosine_of_the_whole_change():
    reward = DirectionReward(dim=2)
    graph = RNGraph.tree(2, [2], periods=[1, 4], vertex_reward=str(reward))
    env = TransformedEnv(MockMultiAgentEnv(2, num_envs=1, max_steps=8, obs_dim=3, seed=1), LevelEnv(graph))
    torch.manual_seed(1)
    data = env.rollout(4, GraphComposer(graph, env, num_cells=8).policy)  # one window of 4 steps
    z = data["agents", "observation"] @ reward.projection(3).T
    end = data["next", "agents", "observation"][0, -1] @ reward.projection(3).T
    goal = torch.stack([data["agents", "instruction"][0, 0, i, 2 * i:2 * i + 2] for i in range(2)])
    whole = F.cosine_similarity(end - z[0, 0], goal, dim=-1)
    torch.testing.assert_close(data["next", "agents", "vertex_reward"][0, :, :, 0].sum(0), whole)


def test_origin_state_survives_a_batched_env_and_partial_resets():
    graph = RNGraph.tree(4, [4], periods=[1, 5], vertex_reward="direction:2")
    env = TransformedEnv(SerialEnv(2, lambda: MockMultiAgentEnv(4, num_envs=1, max_steps=3)), LevelEnv(graph))
    check_env_specs(env)
    td = env.reset()
    td["agents", "goal_origin"] = torch.ones(2, 1, 4, 2)  # one superior, a 2-dim origin
    td["_reset"] = torch.tensor([[True], [False]])
    out = env.transform._reset(td, td.clone())
    assert (out["agents", "goal_origin"][0] == 0).all() and (out["agents", "goal_origin"][1] == 1).all()


def test_trainer_with_direction_goals_warmup_and_a_frozen_manager(tmp_path):
    cfg = TrainConfig(task="mock", frames=300, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, graph="tree:4", instruct="addressed", periods="1,2",
                      vertex_reward="direction:2", goal_warmup=100, freeze="level1", out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    groups = trainer.models.composer.vertex_groups
    before = {g: [p.detach().clone() for p in groups[g].parameters()] for g in groups}
    trainer.train()
    assert trainer.frames == 300
    assert all(torch.equal(a, b) for a, b in zip(before["level1"], groups["level1"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before["agents"], groups["agents"].parameters()))
    assert "frozen-level1" in cfg.method_name


def test_freeze_names_the_graph_groups():
    cfg = TrainConfig(task="mock", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50, freeze="boss")
    with pytest.raises(ValueError, match=r"--freeze 'boss': the graph has no such group; its groups are "
                                         r"\['agents', 'level1'\]"):
        RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    with pytest.raises(ValueError, match="--freeze applies only to --algo rn"):
        TrainConfig(algo="mappo", freeze="level1")
