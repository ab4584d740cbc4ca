from __future__ import annotations

import json
import pickle

import networkx as nx
import pytest
import torch

from torchrl_rn import GraphError, RNGraph


def test_cycle_error_names_the_cycle():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "m")])
    # the cycle's vertices in order, from whichever vertex networkx starts at, and nothing else
    rotations = "|".join(" -> ".join([*r, r[0]]) for r in (("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")))
    with pytest.raises(GraphError, match=rf"the agent graph has a cycle: ({rotations})\. An RN graph must be acyclic"):
        RNGraph(g)


def test_self_loop_is_a_cycle():
    with pytest.raises(GraphError, match="cycle: x -> x"):
        RNGraph(nx.DiGraph([("x", "x")]))


def test_env_agent_without_motor():
    with pytest.raises(GraphError, match=r"env agent\(s\) \[2, 3\] have no motor"):
        RNGraph(nx.DiGraph([("b", "m0"), ("b", "m1")]), n_agents=4)


def test_env_agent_with_two_motors():
    g = nx.DiGraph([("b", "m0"), ("b", "m1")])
    nx.set_node_attributes(g, {"m0": 0, "m1": 0}, "agent")
    with pytest.raises(GraphError, match=r"env agent 0 is driven by several motors \['m0', 'm1'\]"):
        RNGraph(g, n_agents=2)


def test_too_many_motors_for_env():
    with pytest.raises(GraphError, match="3 motor.*2 agent"):
        RNGraph(nx.DiGraph([("b", "m0"), ("b", "m1"), ("b", "m2")]), n_agents=2)


def test_vertex_without_path_to_env():
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1"), ("boss", "idle")])
    nx.set_node_attributes(g, {"m0": 0, "m1": 1}, "agent")
    with pytest.raises(GraphError, match="vertex 'idle' has no path to the environment"):
        RNGraph(g, n_agents=2)


def test_internal_vertex_bound_to_agent():
    g = nx.DiGraph([("boss", "m0")])
    g.nodes["boss"]["agent"] = 0
    with pytest.raises(GraphError, match="vertex 'boss' is bound to env agent 0 but has subordinates"):
        RNGraph(g)


@pytest.mark.parametrize(
    ("attr", "value", "match"),
    [
        ("phi", "attention", "vertex 'boss': unknown phi 'attention'"),
        ("psi", "max", "vertex 'boss': unknown psi 'max'"),
        ("share", "half", "vertex 'boss': unknown share 'half'"),
        ("colour", "red", r"vertex 'boss' has unknown attribute\(s\) \['colour'\]"),
        ("action_dim", 0, "vertex 'boss': action_dim must be a positive int"),
    ],
)
def test_unknown_option(attr, value, match):
    g = nx.DiGraph([("boss", "m0")])
    g.nodes["boss"][attr] = value
    with pytest.raises(GraphError, match=match):
        RNGraph(g)


def test_inconsistent_dims_in_a_group():
    g = nx.DiGraph([("a", "m0"), ("b", "m1")])
    g.nodes["a"]["action_dim"] = 2
    g.nodes["b"]["action_dim"] = 3
    with pytest.raises(GraphError, match="group 'level1' has inconsistent action_dim"):
        RNGraph(g)


def test_mean_over_subordinates_of_different_sizes():
    g = nx.DiGraph([("top", "mid"), ("top", "m1"), ("mid", "m0")])
    g.nodes["top"]["phi"] = "mean"
    with pytest.raises(GraphError, match="vertex 'top' uses phi='mean' over subordinates from groups"):
        RNGraph(g)


def test_group_spanning_levels():
    g = nx.DiGraph([("top", "mid"), ("mid", "m0")])
    g.nodes["top"]["group"] = "managers"
    g.nodes["mid"]["group"] = "managers"
    with pytest.raises(GraphError, match="group 'managers' mixes levels"):
        RNGraph(g)


def test_unknown_graph_spec(tmp_path):
    with pytest.raises(GraphError, match="unknown graph spec 'star'"):
        RNGraph.from_spec("star", 4)
    with pytest.raises(GraphError, match="cannot read graph spec 'tree:x'"):
        RNGraph.from_spec("tree:x", 4)
    with pytest.raises(GraphError, match=r"cannot read graph file '.*missing\.json'"):
        RNGraph.from_spec(str(tmp_path / "missing.json"), 2)


def test_order_of_superiors_and_subordinates_follows_edge_insertion(tmp_path):
    g = nx.DiGraph()
    g.add_edges_from([("b", "m1"), ("b", "m0"), ("a", "m0"), ("b", "m2")])
    graph = RNGraph(g)
    assert graph.subordinates("b") == ["m1", "m0", "m2"]
    assert graph.superiors("m0") == ["b", "a"]
    # explicit "order" edge attributes win
    g2 = nx.DiGraph()
    g2.add_edge("b", "m1", order=1)
    g2.add_edge("b", "m0", order=0)
    assert RNGraph(g2).subordinates("b") == ["m0", "m1"]
    # the order survives a node-link JSON file read by from_spec, with the vertices' attributes
    g = nx.DiGraph()
    g.add_edges_from([("boss", "m1"), ("boss", "m0"), ("aide", "m1")])
    g.nodes["boss"]["psi"] = "mean"
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(nx.node_link_data(g, edges="edges")))
    graph = RNGraph.from_spec(str(path), 2)
    assert graph.groups == {"agents": ["m1", "m0"], "level1": ["boss", "aide"]}
    assert graph.subordinates("boss") == ["m1", "m0"] and graph.superiors("m1") == ["boss", "aide"]
    assert graph.attr("boss", "psi") == "mean" and graph.attr("aide", "psi") == "sum"


def test_levels_groups_and_motor_binding():
    graph = RNGraph.tree(5, [2, 2])
    assert graph.groups == {
        "agents": [f"motor_{k}" for k in range(5)],
        "level1": ["l1_0", "l1_1", "l1_2"],
        "level2": ["l2_0", "l2_1"],
    }
    assert graph.subordinates("l1_2") == ["motor_4"]
    assert graph.depth == 2 and graph.is_layered()
    explicit = nx.DiGraph([("b", "x"), ("b", "y")])
    nx.set_node_attributes(explicit, {"x": 1, "y": 0}, "agent")
    assert RNGraph(explicit).motors == ["y", "x"]


def test_dims_pad_to_the_widest_vertex():
    dag = RNGraph.overlapping(4, 2)  # l1_0 -> motors 0,1,2 ; l1_1 -> motors 2,3
    dims = dag.dims(obs_dim=3)
    assert dims["level1"] == {"observation": 9, "message": 9, "instruction": 0, "n": 2}
    assert dims["agents"]["instruction"] == 8  # motor_2 has two superiors of action_dim 4


def test_reward_weights_split_and_copy():
    dag = RNGraph.overlapping(4, 2)
    sources, w = dag.reward_weights("level1")
    assert sources == ["agents"]
    torch.testing.assert_close(w, torch.tensor([[1.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.5, 1.0]]))
    g = nx.DiGraph([("a", "m0"), ("b", "m0"), ("a", "m1"), ("b", "m1")])
    g.nodes["m0"]["share"] = "copy"
    g.nodes["a"]["psi"] = "mean"
    g.nodes["b"]["psi"] = "mean"
    _, w = RNGraph(g).reward_weights("level1")
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.25], [0.5, 0.25]]))


def test_adjacency_neighbourhoods():
    chain = RNGraph(nx.DiGraph([("a", "b"), ("b", "c")]))
    assert chain.vertex_order == ["c", "b", "a"]
    up = chain.adjacency("up")
    torch.testing.assert_close(up, torch.tensor([[0.0, 1, 0], [0, 0, 1], [0, 0, 0]]))
    torch.testing.assert_close(chain.adjacency("down"), up.T)
    torch.testing.assert_close(chain.adjacency("both"), up + up.T)
    with pytest.raises(ValueError, match="unknown neighbourhood"):
        chain.adjacency("sideways")
    # a DAG with a shared motor and a root, checked by hand; group_of in the same vertex order
    graph = RNGraph.overlapping(4, 2, root=True)
    assert [graph.group_of(v) for v in graph.vertex_order] == ["agents"] * 4 + ["level1"] * 2 + ["level2"]
    with pytest.raises(KeyError):
        graph.group_of("nobody")
    down = graph.adjacency("down")
    # by hand: l1_0 -> motors 0, 1, 2; l1_1 -> motors 2, 3; l2_0 -> l1_0, l1_1 (indices 4, 5, 6)
    expected = torch.zeros(7, 7)
    for sup, subs in {4: [0, 1, 2], 5: [2, 3], 6: [4, 5]}.items():
        expected[sup, subs] = 1.0
    torch.testing.assert_close(down, expected)
    torch.testing.assert_close(graph.adjacency("up"), expected.T)
    torch.testing.assert_close(graph.adjacency(), expected + expected.T)


@pytest.mark.parametrize(("n_agents", "n_managers", "fit"), [(5, 4, "1, 2, 3, 5"), (7, 6, "1, 2, 3, 4, 7")])
def test_overlapping_gives_every_manager_subordinates(n_agents, n_managers, fit):
    # ceil blocks: 5 motors in blocks of 2 give a 4th manager none, and it would then pass for a motor
    with pytest.raises(GraphError, match=rf"leave manager 'l1_{n_managers - 1}' without subordinates; manager "
                                         rf"counts that fit {n_agents} agents: {fit}\.$"):
        RNGraph.overlapping(n_agents, n_managers)
    for m in map(int, fit.split(", ")):
        graph = RNGraph.overlapping(n_agents, m)
        assert graph.groups["level1"] == [f"l1_{i}" for i in range(m)]
        assert all(graph.subordinates(v) for v in graph.groups["level1"])
        assert graph.motors == [f"motor_{k}" for k in range(n_agents)]


def test_bad_dag_spec_names_the_spec():
    with pytest.raises(GraphError, match=r"^graph spec 'dag:4' for 5 agents: 4 managers over 5 motors .*: 1, 2, 3, 5"):
        RNGraph.from_spec("dag:4", 5)
    with pytest.raises(GraphError, match=r"^graph spec 'dag:9\+root' for 5 agents: n_managers must be in \[1, "):
        RNGraph.from_spec("dag:9+root", 5)
    assert RNGraph.from_spec("dag:3+root", 5).depth == 2


def test_graph_is_frozen_after_validation():
    graph = RNGraph.tree(4, [2])
    with pytest.raises(nx.NetworkXError, match="Frozen graph can't be modified"):
        graph.nx.add_edge("l1_0", "motor_3")
    with pytest.raises(TypeError, match=r"frozen after validation: edit a copy \(graph.nx.copy\(\)\)"):
        graph.nx.nodes["motor_0"]["group"] = "other"
    with pytest.raises(TypeError, match="frozen after validation"):
        graph.nx.edges["l1_0", "motor_0"]["order"] = 5
    with pytest.raises(TypeError, match="frozen after validation"):
        graph.nx.nodes["l1_0"].update(phi="mean")
    clone = pickle.loads(pickle.dumps(graph))  # as ParallelEnv workers receive it
    assert clone.groups == graph.groups and clone.nx.frozen
    with pytest.raises(TypeError, match="frozen after validation"):
        clone.nx.nodes["motor_0"]["agent"] = 3
    g = nx.DiGraph([("b", "m0"), ("b", "m1")])
    frozen = RNGraph(g)
    g.add_edge("b", "m2")  # the caller's graph stays the caller's
    assert frozen.motors == ["m0", "m1"] and frozen.nx.number_of_nodes() == 3
    editable = frozen.nx.copy()  # a copy is an ordinary graph again, to edit and validate anew
    editable.add_edge("b", "m2")
    editable.nodes["b"]["phi"] = "mean"
    assert RNGraph(editable).attr("b", "phi") == "mean"


def test_skipping_edges_names_the_edge():
    skip = RNGraph(nx.DiGraph([("top", "mid"), ("mid", "m0"), ("top", "m1")]))
    assert not skip.is_layered() and skip.skipping_edges() == [("top", "m1")]
    assert RNGraph.overlapping(4, 2, root=True).is_layered()


def test_instruction_slices_and_addressed_action_sizes():
    broadcast = RNGraph.tree(4, [2])
    assert broadcast.instruction_slice("l1_0", "motor_1") == (0, 4)
    addressed = RNGraph.tree(4, [2], vertex_attrs={"instruct": "addressed"})
    assert [addressed.instruction_slice("l1_1", m) for m in ("motor_2", "motor_3")] == [(0, 2), (2, 4)]
    assert addressed.dims(5)["agents"]["instruction"] == 2
    # the default size 4 becomes the smallest multiple of the slots: tree:3 -> 6, tree:8 -> 8
    assert RNGraph.tree(3, [3], vertex_attrs={"instruct": "addressed"}).group_action_dim("level1") == 6
    assert RNGraph.tree(8, [8], vertex_attrs={"instruct": "addressed"}).group_action_dim("level1") == 8
    # with goal rewards the block holds the goal first: 4 motors x 2 entries
    goals = RNGraph.tree(4, [4], vertex_attrs={"instruct": "addressed"}, vertex_reward="goal:pos")
    assert goals.group_action_dim("level1") == 8 and goals.instruction_slice("l1_0", "motor_3") == (6, 8)


def test_addressed_instruction_errors_name_the_vertex():
    with pytest.raises(GraphError, match=r"vertex 'l1_0': instruct='addressed' cuts its action_dim 4 into one block "
                                         r"for each of its 3 subordinates; set action_dim to a multiple of 3"):
        RNGraph.tree(3, [3], vertex_attrs={"instruct": "addressed", "action_dim": 4})
    with pytest.raises(GraphError, match=r"vertex 'l1_0': unknown instruct 'shout'"):
        RNGraph.tree(4, [2], vertex_attrs={"instruct": "shout"})
    with pytest.raises(GraphError, match=r"vertex 'l1_0': its addressed blocks of 1 entries \(action_dim 4 / 4 "
                                         r"subordinates\) cannot hold a 2-dim goal .* set its action_dim >= 8"):
        RNGraph.tree(4, [4], vertex_attrs={"instruct": "addressed", "action_dim": 4}, vertex_reward="goal:pos")
    g = nx.DiGraph([("a", "m0"), ("b", "m1")])
    g.nodes["a"]["instruct"] = "addressed"
    with pytest.raises(GraphError, match=r"group 'level1' has inconsistent instruct"):
        RNGraph(g)


def test_a_graph_wide_mean_message_default_reaches_the_motors_harmlessly():
    """``rn train --phi mean`` gives every vertex phi='mean' (motors too): a motor's mean is its observation."""
    graph = RNGraph.from_spec("tree:2", 4, defaults={"phi": "mean"})
    dims = graph.dims(6)
    assert dims["agents"]["message"] == 6 and dims["level1"]["observation"] == 12 and dims["level1"]["message"] == 6
