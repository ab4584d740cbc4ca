from __future__ import annotations

import networkx as nx
import pytest
import torch
from tensordict.nn import TensorDictSequential
from torchrl.envs import TransformedEnv
from torchrl.testing import get_available_devices

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv

from conftest import GRAPHS, make_rn_env


@pytest.mark.parametrize("name", list(GRAPHS))
def test_policy_shapes_and_key_layout(composed, name):
    graph, env, composer = composed(name)
    assert isinstance(composer.policy, TensorDictSequential)
    td = composer.policy(env.reset())
    dims = graph.dims(obs_dim=3)
    for g, members in graph.groups.items():
        n = len(members)
        action_dim = 2 if g == "agents" else 4
        assert td[g, "action"].shape == (3, n, action_dim)
        assert td[g, "action_log_prob"].shape == (3, n)
        assert td[g, "observation"].shape == (3, n, dims[g]["observation"])
        if dims[g]["instruction"]:
            assert td[g, "instruction"].shape == (3, n, dims[g]["instruction"])
        else:
            assert (g, "instruction") not in td.keys(True)
    values = composer.critic(td)
    for g, members in graph.groups.items():
        assert values[g, "state_value"].shape == (3, len(members), 1)


def test_expected_groups_per_graph(composed):
    assert list(composed("flat")[0].groups) == ["agents"]
    assert list(composed("tree2")[0].groups) == ["agents", "level1"]
    assert list(composed("tree3")[0].groups) == ["agents", "level1", "level2"]
    assert composed("dag")[0].superiors("motor_2") == ["l1_0", "l1_1"]


def test_superior_action_is_subordinate_instruction_same_step(composed):
    graph, env, composer = composed("tree3")
    td = composer.policy(env.reset())
    # level2 -> level1 -> motors, all within one call of the policy
    top = td["level2", "action"][:, 0]
    torch.testing.assert_close(td["level1", "instruction"][:, 0], top)
    torch.testing.assert_close(td["level1", "instruction"][:, 1], top)
    for k, sup in enumerate(["l1_0", "l1_0", "l1_1", "l1_1"]):
        j = graph.position(sup)[1]
        torch.testing.assert_close(td["agents", "instruction"][:, k], td["level1", "action"][:, j])


def test_shared_subordinate_gets_both_instructions_in_order(composed):
    graph, env, composer = composed("dag")
    td = composer.policy(env.reset())
    a0, a1 = td["level1", "action"][:, 0], td["level1", "action"][:, 1]
    instr = td["agents", "instruction"]
    torch.testing.assert_close(instr[:, 2], torch.cat([a0, a1], -1))  # motor_2: I+ = [l1_0, l1_1]
    torch.testing.assert_close(instr[:, 0], torch.cat([a0, torch.zeros_like(a0)], -1))  # padded
    torch.testing.assert_close(instr[:, 3], torch.cat([a1, torch.zeros_like(a1)], -1))


def test_addressed_instructions_give_each_subordinate_its_block():
    # a DAG: a -> m0, m1, m2 and b -> m2, m3; a has 3 subordinates and b 2, so the group's action (default size 4,
    # made a multiple of its 3 slots: 6) is cut in blocks of 2; b uses blocks 0 (m2) and 1 (m3) only
    g = nx.DiGraph([("a", "m0"), ("a", "m1"), ("a", "m2"), ("b", "m2"), ("b", "m3")])
    graph = RNGraph(g, defaults={"instruct": "addressed"})
    assert graph.group_action_dim("level1") == 6 and graph.dims(3)["agents"]["instruction"] == 4
    env = make_rn_env(graph)
    td = GraphComposer(graph, env, num_cells=8).policy(env.reset())
    a, b = td["level1", "action"][:, 0], td["level1", "action"][:, 1]
    instr = td["agents", "instruction"]
    zeros = torch.zeros_like(a[:, :2])
    torch.testing.assert_close(instr[:, 0], torch.cat([a[:, 0:2], zeros], -1))
    torch.testing.assert_close(instr[:, 1], torch.cat([a[:, 2:4], zeros], -1))
    torch.testing.assert_close(instr[:, 2], torch.cat([a[:, 4:6], b[:, 0:2]], -1))  # its block of each, in I+ order
    torch.testing.assert_close(instr[:, 3], torch.cat([b[:, 2:4], zeros], -1))


def test_bottom_up_identity_messages(composed):
    graph, env, composer = composed("tree3")
    td = composer.policy(env.reset())
    obs = td["agents", "observation"]
    torch.testing.assert_close(td["level1", "observation"][:, 0], obs[:, :2].flatten(-2))
    torch.testing.assert_close(td["level1", "observation"][:, 1], obs[:, 2:].flatten(-2))
    torch.testing.assert_close(td["level2", "observation"][:, 0], obs.flatten(-2))


def test_mean_and_learned_messages():
    graph = RNGraph.tree(4, [2, 2], vertex_attrs={"phi": "mean"})
    env = make_rn_env(graph)
    td = GraphComposer(graph, env, num_cells=8).policy(env.reset())
    obs = td["agents", "observation"]
    torch.testing.assert_close(td["level1", "message"][:, 0], obs[:, :2].mean(1))
    torch.testing.assert_close(td["level2", "observation"][:, 0], td["level1", "message"].flatten(-2))

    graph = RNGraph.tree(4, [2, 2], defaults={"phi": "learned", "message_dim": 5})
    env = make_rn_env(graph)
    td = GraphComposer(graph, env, num_cells=8).policy(env.reset())
    assert td["agents", "message"].shape == (3, 4, 5)
    assert td["level1", "observation"].shape == (3, 2, 10)
    assert td["level2", "observation"].shape == (3, 1, 10)


def test_discrete_env_actions():
    graph = RNGraph.tree(3, [3])
    env = TransformedEnv(MockMultiAgentEnv(3, num_envs=4, discrete=True, n_actions=5), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    td = env.rollout(3, composer.policy)
    action = td["agents", "action"]
    assert action.shape == env.full_action_spec["agents", "action"].shape[:1] + (3,) + action.shape[2:]
    assert env.full_action_spec["agents", "action"].is_in(action[:, 0])
    assert td["level1", "action"].shape == (4, 3, 1, 4)


def test_spec_mismatch_between_graph_and_env():
    env = make_rn_env(RNGraph.flat(3))
    with pytest.raises(ValueError, match=r"spec mismatch.*3 agents but the graph has 4 motors"):
        GraphComposer(RNGraph.flat(4), env)
    with pytest.raises(KeyError) as err:
        GraphComposer(RNGraph.flat(3, env_group="robots"), env)
    assert "no ('robots', 'observation') entry" in err.value.args[0]


def test_motor_action_dim_must_match_env():
    g = nx.DiGraph()
    g.add_nodes_from(["motor_0", ("motor_1", {"action_dim": 5}), "motor_2"])
    graph = RNGraph(g)  # an RNGraph is frozen: attributes are set before validation
    with pytest.raises(ValueError, match=r"spec mismatch: motor 'motor_1' declares action_dim=5 .* has 2 per agent"):
        GraphComposer(graph, make_rn_env(RNGraph.flat(3)))


_CUDA = [d for d in get_available_devices() if d.type == "cuda"]


@pytest.mark.parametrize(
    "device",
    # meta: any parameter or buffer created without the device lands on the CPU and fails this test, on any machine
    ["meta", *(str(d) for d in _CUDA)]
    + ([] if _CUDA else [pytest.param("cuda", marks=pytest.mark.skip(reason="no CUDA device on this machine"))]),
)
@pytest.mark.parametrize("name", ["tree3", "dag"])
def test_composer_respects_device(device, name):
    graph = GRAPHS[name](4)
    env = make_rn_env(graph, device="cpu" if device == "meta" else device)
    composer = GraphComposer(graph, env, num_cells=16, critic="group", device=device)
    assert composer.device == torch.device(device)
    tensors = dict(composer.named_parameters()) | dict(composer.named_buffers())
    assert list(composer.buffers())
    assert {n: t.device for n, t in tensors.items() if t.device != torch.device(device)} == {}
    if device != "meta":  # a real device: the policy runs there
        td = composer.policy(env.reset())
        assert td[graph.env_group, "action"].device == torch.device(device)
