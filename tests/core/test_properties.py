"""Property-based tests: any agent DAG is either a working Reinforcement Network or refused by name.

Hypothesis draws DAGs of 1 to 4 levels (shared subordinates, skipped levels, per-level ``phi`` and ``action_dim``,
per-vertex ``psi`` and ``share``, implicit or explicit agent bindings) and sometimes breaks them (a cycle, an unbound
sink, two motors on one agent, an unknown option, a manager bound to an agent). Each graph must either validate,
compose, pass TorchRL's ``check_env_specs`` inside ``SerialEnv`` workers, step (with hand-checked routed rewards, also
in the TAG view of level 1 where the graph is layered), give RNLoss's ``out_keys`` with totals that sum the groups'
terms, and back-propagate, or raise a :class:`GraphError` that names one of its vertices.
"""
from __future__ import annotations

import networkx as nx
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torchrl.envs import SerialEnv, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_rn import GraphComposer, GraphError, LevelEnv, LevelView, RNGraph, RNLoss
from torchrl_rn.envs import MockMultiAgentEnv

BREAKS = [None, None, None, "cycle", "unbound_sink", "duplicate_agent", "bad_option", "agent_on_manager"]


@st.composite
def agent_dags(draw) -> tuple[nx.DiGraph, int]:
    """A random (possibly broken) agent DAG and its number of env agents."""
    n_agents = draw(st.integers(1, 5))
    n_levels = draw(st.integers(1, 4))
    g = nx.DiGraph()
    motors = [f"m{k}" for k in range(n_agents)]
    g.add_nodes_from(motors)
    below, all_below = motors, list(motors)
    for level in range(1, n_levels):
        phi = draw(st.sampled_from(["identity", "mean", "learned"]))
        action_dim = draw(st.integers(1, 3))
        names = []
        for i in range(draw(st.integers(1, 3))):
            name = f"v{level}_{i}"
            # at least one subordinate from the level just below; others from any lower level (shared, skipping)
            subs = [draw(st.sampled_from(below))]
            subs += draw(st.lists(st.sampled_from(all_below), max_size=3, unique=True))
            g.add_node(name, phi=phi, action_dim=action_dim, psi=draw(st.sampled_from(["sum", "mean"])))
            g.add_edges_from((name, s) for s in dict.fromkeys(subs))
            names.append(name)
        below = names
        all_below += names
    for v in g.nodes:
        if g.in_degree(v) > 1:
            g.nodes[v]["share"] = draw(st.sampled_from(["split", "copy"]))
    explicit = draw(st.booleans())
    if explicit:
        for k, m in zip(draw(st.permutations(range(n_agents))), motors):
            g.nodes[m]["agent"] = k
    managers = [v for v in g.nodes if v not in motors]
    brk = draw(st.sampled_from(BREAKS))
    if brk == "cycle":
        top = managers[-1] if managers else motors[0]
        g.add_edge(draw(st.sampled_from(sorted(nx.descendants(g, top)) or [top])), top)
    elif brk == "unbound_sink":
        g.add_node("idle")
        if managers:
            g.add_edge(draw(st.sampled_from(managers)), "idle")
    elif brk == "duplicate_agent" and explicit and n_agents > 1:
        g.nodes[motors[1]]["agent"] = g.nodes[motors[0]]["agent"]
    elif brk == "bad_option":
        g.nodes[draw(st.sampled_from(list(g.nodes)))][draw(st.sampled_from(["phi", "psi", "share"]))] = "nonsense"
    elif brk == "agent_on_manager" and managers:
        g.nodes[draw(st.sampled_from(managers))]["agent"] = 0
    return g, n_agents


def hand_rewards(g: nx.DiGraph, graph: RNGraph, motor_reward: torch.Tensor) -> dict:
    """Every vertex's reward from its attributes: psi (sum or mean) of its subordinates' shared rewards."""
    rewards = {m: motor_reward[..., k] for k, m in enumerate(graph.motors)}
    for v in reversed(list(nx.topological_sort(g))):
        if v in rewards:
            continue
        shared = [rewards[s] / (g.in_degree(s) if g.nodes[s].get("share", "split") == "split" else 1)
                  for s in g.successors(v)]
        total = sum(shared)
        rewards[v] = total / len(shared) if g.nodes[v].get("psi", "sum") == "mean" else total
    return rewards


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(agent_dags())
def test_random_dag_validates_composes_steps_and_backpropagates_or_is_refused_by_name(dag):
    g, n_agents = dag
    try:
        graph = RNGraph(g, n_agents=n_agents)
    except GraphError as err:
        named = [v for v in g.nodes if repr(v) in str(err) or f"{v} ->" in str(err)]
        assert named, f"GraphError names no vertex of the graph: {err}"
        event("refused")
        return
    event(f"trained a {graph.depth + 1}-level graph")
    assert sorted(graph.vertex_order) == sorted(g.nodes)
    env = TransformedEnv(MockMultiAgentEnv(n_agents, num_envs=2, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    loss = RNLoss(composer)
    if graph.depth:  # LevelEnv in batched-env workers: every group's specs non-empty and matching what a step gives
        serial = SerialEnv(2, lambda: TransformedEnv(MockMultiAgentEnv(n_agents, num_envs=1, seed=0), LevelEnv(graph)))
        check_env_specs(serial, seed=0)
        serial.close()
    with torch.no_grad():  # as a collector does
        data = env.rollout(3, composer.policy)
        loss.value_estimator(data)
    # the step routed every vertex's reward as its attributes say
    nxt = data["next"]
    expected = hand_rewards(g, graph, nxt[graph.env_group, "reward"][..., 0])
    for group, members in graph.groups.items():
        for i, v in enumerate(members):
            torch.testing.assert_close(nxt[group, "reward"][..., i, 0], expected[v], msg=f"reward of {v!r}")
    if graph.depth and graph.is_layered():  # TAG's view of level 1 embeds the motors' policy in the env
        view = TransformedEnv(MockMultiAgentEnv(n_agents, num_envs=2, seed=0),
                              LevelView(graph, level=1, lower_policy=composer))
        (top,) = graph.groups_at(1)
        event("TAG view")
        with torch.no_grad():
            nxt = view.rollout(2, composer.actor(top))["next"]
        expected = hand_rewards(g, graph, nxt[graph.env_group, "reward"][..., 0])
        for i, v in enumerate(graph.groups[top]):
            torch.testing.assert_close(nxt[top, "reward"][..., i, 0], expected[v], msg=f"TAG view reward of {v!r}")
    out = loss(data)
    assert set(loss.out_keys) <= set(out.keys(True, True))
    for term in ("loss_objective", "loss_critic", "loss_entropy"):  # totals beside the per-group terms
        torch.testing.assert_close(out[term], sum(out[g, term] for g in graph.groups), msg=term)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for group in graph.groups:
        grads = [p.grad for p in composer.actor(group).parameters()]
        assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads), group
