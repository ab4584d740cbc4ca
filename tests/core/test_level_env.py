from __future__ import annotations

import networkx as nx
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_rn import GraphComposer, GraphError, LevelEnv, LevelView, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv

from conftest import GRAPHS, make_rn_env


def step_on_target(env: TransformedEnv):
    """One step where every motor plays its target: the mock env then pays agent k exactly k + 1."""
    td = env.reset()
    action_dim = env.full_action_spec["agents", "action"].shape[-1]
    td["agents", "action"] = td["agents", "observation"][..., :action_dim].clone()
    return env.step(td)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_graph_transform_passes_check_env_specs(name):
    check_env_specs(make_rn_env(GRAPHS[name](4)))


def test_graph_transform_discrete_passes_check_env_specs():
    check_env_specs(make_rn_env(RNGraph.tree(3, [2]), discrete=True))


def test_motor_rewards_are_the_env_rewards():
    td = step_on_target(make_rn_env(RNGraph.tree(4, [2])))
    torch.testing.assert_close(td["next", "agents", "reward"][0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_psi_sum_tree():
    td = step_on_target(make_rn_env(RNGraph.tree(4, [2, 2])))
    torch.testing.assert_close(td["next", "level1", "reward"][0, :, 0], torch.tensor([3.0, 7.0]))
    torch.testing.assert_close(td["next", "level2", "reward"][0, :, 0], torch.tensor([10.0]))


def test_share_split_on_shared_subordinate():
    # l1_0 -> motors 0, 1, 2 and l1_1 -> motors 2, 3: motor 2's reward 3 is split in halves
    td = step_on_target(make_rn_env(RNGraph.overlapping(4, 2, root=True)))
    torch.testing.assert_close(td["next", "level1", "reward"][0, :, 0], torch.tensor([1 + 2 + 1.5, 1.5 + 4]))
    torch.testing.assert_close(td["next", "level2", "reward"][0, :, 0], torch.tensor([10.0]))


def test_share_copy_and_psi_mean():
    g = nx.DiGraph()
    g.add_edges_from([("l1_0", "m0"), ("l1_0", "m1"), ("l1_0", "m2"), ("l1_1", "m2"), ("l1_1", "m3")])
    g.nodes["m2"]["share"] = "copy"
    g.nodes["l1_1"]["psi"] = "mean"
    td = step_on_target(make_rn_env(RNGraph(g, n_agents=4)))
    torch.testing.assert_close(td["next", "level1", "reward"][0, :, 0], torch.tensor([1 + 2 + 3.0, (3 + 4) / 2]))


def test_callable_psi():
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1"), ("boss", "m2")])
    g.nodes["boss"]["psi"] = lambda r: r.max(-1).values - r.min(-1).values
    td = step_on_target(make_rn_env(RNGraph(g, n_agents=3)))
    torch.testing.assert_close(td["next", "level1", "reward"][:, 0, 0], torch.full((3,), 2.0))


def test_dones_expanded_and_instruction_carried(composed):
    graph, env, composer = composed("tree3")
    td = env.rollout(6, composer.policy, break_when_any_done=False)  # mock episodes last 5 steps
    for g, members in graph.groups.items():
        expected = td["next", "done"].unsqueeze(-2).expand(3, 6, len(members), 1)
        assert torch.equal(td["next", g, "done"], expected)
    assert td["next", "done"][:, 4].all() and not td["next", "done"][:, :4].any()
    torch.testing.assert_close(td["next", "agents", "instruction"], td["agents", "instruction"])
    torch.testing.assert_close(td["next", "level1", "instruction"], td["level1", "instruction"])


def test_tag_view_level1_and_stack(composed):
    graph, env, composer = composed("tree3")
    view1 = TransformedEnv(MockMultiAgentEnv(4, num_envs=3), LevelView(graph, level=1, lower_policy=composer))
    check_env_specs(view1)
    assert list(view1.full_action_spec.keys(True, True)) == [("level1", "action")]
    td = view1.rand_step(view1.reset())
    nxt = td["next"]
    torch.testing.assert_close(nxt["level1", "observation"], nxt["agents", "observation"].reshape(3, 2, 6))
    motor = nxt["agents", "reward"][..., 0]
    torch.testing.assert_close(nxt["level1", "reward"][..., 0], motor.reshape(3, 2, 2).sum(-1))

    view2 = TransformedEnv(view1, LevelView(graph, level=2, lower_policy=composer))
    check_env_specs(view2)
    assert list(view2.full_action_spec.keys(True, True)) == [("level2", "action")]
    rollout = view2.rollout(3, composer.actor("level2"))
    assert rollout["next", "level2", "reward"].shape == (3, 3, 1, 1)
    torch.testing.assert_close(rollout["next", "level2", "reward"][..., 0, 0],
                               rollout["next", "level1", "reward"][..., 0].sum(-1))


def test_tag_view_errors(composed):
    graph, _, composer = composed("tree2")
    with pytest.raises(TypeError, match="lower_policy=GraphComposer"):
        LevelView(graph, level=1)
    for level in (2, 0, True, 1.0):  # a parameter error, not a graph error
        with pytest.raises(ValueError, match=r"level must be an int in \[1, 1\]") as err:
            LevelView(graph, level=level, lower_policy=composer)
        assert type(err.value) is ValueError
    with pytest.raises(TypeError, match="lower_policy=GraphComposer.*got TensorDictSequential"):
        LevelView(graph, level=1, lower_policy=composer.policy)
    skip = RNGraph(nx.DiGraph([("top", "mid"), ("mid", "m0"), ("top", "m1")]))
    skip_env = make_rn_env(skip)
    with pytest.raises(GraphError, match="edge 'top' -> 'm1' skips a level"):
        LevelView(skip, level=1, lower_policy=GraphComposer(skip, skip_env, num_cells=4))


def test_tag_view_spec_mismatch_with_lower_policy(composed):
    graph, _, composer = composed("tree2")  # composed for 3-dim observations and 2-dim actions
    wider = TransformedEnv(MockMultiAgentEnv(4, num_envs=3, obs_dim=5), LevelView(graph, level=1, lower_policy=composer))
    with pytest.raises(ValueError, match=r"spec mismatch: the env's \('agents', 'observation'\) has size 5"):
        wider.full_observation_spec
    other = TransformedEnv(MockMultiAgentEnv(4, num_envs=3, action_dim=3), LevelView(graph, level=1, lower_policy=composer))
    with pytest.raises(ValueError, match=r"spec mismatch: the env's \('agents', 'action'\) has shape \(3, 4, 3\)"):
        other.full_action_spec


def test_vmas_balance_graph_transform():
    pytest.importorskip("vmas")
    from torchrl_rn.envs import make_env

    graph = RNGraph.tree(4, [2])
    env = TransformedEnv(make_env("vmas/balance", n_agents=4, num_envs=2, max_steps=10), LevelEnv(graph))
    check_env_specs(env)
    td = env.rollout(3, GraphComposer(graph, env, num_cells=8).policy)
    motor = td["next", "agents", "reward"][..., 0]
    torch.testing.assert_close(td["next", "level1", "reward"][..., 0], motor.reshape(2, 3, 2, 2).sum(-1))


class PerAgentDoneEnv(MockMultiAgentEnv):
    """Like PettingZoo through TorchRL: per-agent flags in the group (agent k is done after k + 1 steps), team
    flags at the root (done when every agent is), and a root ``truncated``."""

    def __init__(self, n_agents: int, **kwargs) -> None:
        super().__init__(n_agents, max_steps=n_agents, **kwargs)
        flag = Categorical(2, (*self.batch_size, 1), dtype=torch.bool)
        agent_flag = Categorical(2, (*self._agent_batch, 1), dtype=torch.bool)
        self.full_done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(),
            agents=Composite(done=agent_flag.clone(), terminated=agent_flag.clone(), shape=self._agent_batch),
            shape=self.batch_size,
        )

    def _flags(self, td: TensorDict) -> TensorDict:
        per_agent = (self.count.unsqueeze(-1) >= torch.arange(1, self.n_agents + 1)).unsqueeze(-1)
        td["agents", "done"] = per_agent
        td["agents", "terminated"] = per_agent.clone()
        td["truncated"] = torch.zeros_like(td["done"])
        return td

    def _reset(self, tensordict=None, **kwargs):
        return self._flags(super()._reset(tensordict, **kwargs))

    def _step(self, tensordict):
        return self._flags(super()._step(tensordict))


def test_per_agent_done_flags_pass_through():
    graph = RNGraph.tree(3, [2])
    env = TransformedEnv(PerAgentDoneEnv(3, num_envs=2), LevelEnv(graph))
    check_env_specs(env)
    assert ("level1", "truncated") in env.full_done_spec.keys(True, True)
    td = env.rollout(3, break_when_any_done=False)["next"]
    # agent k is done from step k + 1 on: the env's per-agent flags, not the root's broadcast
    steps = torch.arange(1, 4).unsqueeze(-1)
    expected = (steps >= torch.arange(1, 4)).expand(2, 3, 3).unsqueeze(-1)
    for key in ("done", "terminated"):
        assert torch.equal(td["agents", key], expected)
        assert not torch.equal(td["agents", key], td[key].unsqueeze(-2).expand(2, 3, 3, 1))
    # groups without flags of their own get the team's, truncated included
    for key in ("done", "terminated", "truncated"):
        assert torch.equal(td["level1", key], td[key].unsqueeze(-2).expand(2, 3, 2, 1))


def test_tag_view_does_not_own_the_lower_policy(composed):
    graph, _, composer = composed("tree3")
    view = LevelView(graph, level=1, lower_policy=composer)
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3), view)
    assert view.composer is composer
    assert list(view.parameters()) == [] and list(env.parameters()) == []
    assert env.state_dict().keys() == TransformedEnv(MockMultiAgentEnv(4, num_envs=3)).state_dict().keys()
    # a reference: the view acts with the policy's current weights
    td = env.reset()
    td["level1", "action"] = torch.zeros(3, 2, 4)
    from tensordict.nn import InteractionType, set_interaction_type

    with set_interaction_type(InteractionType.DETERMINISTIC):
        before = env.transform.inv(td)["agents", "action"]
        with torch.no_grad():
            for p in composer.actor("agents").parameters():
                p.add_(0.5)
        after = env.transform.inv(td)["agents", "action"]
    assert not torch.equal(before, after)


def test_level_env_refuses_the_tag_view_arguments_naming_level_view(composed):
    graph, _, composer = composed("tree2")
    with pytest.raises(TypeError, match=r"LevelEnv takes no level, lower_policy: .*LevelView\(graph, level=l, "):
        LevelEnv(graph, level=1, lower_policy=composer)
    with pytest.raises(TypeError, match="LevelView"):
        LevelEnv(graph, level=1)
