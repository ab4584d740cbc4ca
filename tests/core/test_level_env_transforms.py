"""LevelEnv through TorchRL's ``TransformBase`` test matrix (``test/transforms/_transforms_common.py``).

Every graph shape, and the TAG view where the graph is layered, is run as TorchRL runs its own transforms: in a
single env, inside ``SerialEnv``/``ParallelEnv`` workers, on top of them, inside a ``Compose``, without an env, in a
model, in a replay buffer, inverted, cloned and through ``state_dict``. Each test also checks a value: routed rewards
against the hand-computed ``psi`` of the subordinates' rewards.
"""
from __future__ import annotations

import functools
import itertools
import multiprocessing

import networkx as nx
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, set_interaction_type
from torch import nn
from torchrl.data import Composite, LazyTensorStorage, ReplayBuffer
from torchrl.envs import Compose, ParallelEnv, RewardSum, SerialEnv, StepCounter, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_rn import GraphComposer, LevelEnv, LevelView, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv

from conftest import shared_dag

N_AGENTS, NUM_ENVS = 4, 2
#: ParallelEnv workers are forked where the platform can: a spawned worker re-imports torch (~20 s a worker here)
MP_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


SHAPES = {
    "flat": lambda: RNGraph.flat(N_AGENTS),
    "tree2": lambda: RNGraph.tree(N_AGENTS, [2]),
    "tree22": lambda: RNGraph.tree(N_AGENTS, [2, 2]),
    "dag": lambda: RNGraph.overlapping(N_AGENTS, 2),
    "dag_root": lambda: RNGraph.overlapping(N_AGENTS, 2, root=True),
    "shared_dag": shared_dag,
    # decision periods add state entries (window_step, held_action); motors with a period hold env actions
    "tree2_periods": lambda: RNGraph.tree(N_AGENTS, [2], periods=[1, 3]),
    "tree22_periods": lambda: RNGraph.tree(N_AGENTS, [2, 2], periods=[2, 3, 4]),
    # addressed instructions: each subordinate reads its own block of its superiors' actions
    "dag_root_addressed": lambda: RNGraph.overlapping(N_AGENTS, 2, root=True, vertex_attrs={"instruct": "addressed"}),
}
#: (shape, level) of the TAG views: layered graphs only, stacked up to their depth
VIEWS = [("tree2", 1), ("tree22", 1), ("tree22", 2), ("dag", 1), ("dag_root", 1), ("dag_root", 2)]


def base_env(**kwargs) -> MockMultiAgentEnv:
    return MockMultiAgentEnv(N_AGENTS, num_envs=NUM_ENVS, **kwargs)


def expected_rewards(graph: RNGraph, motor_reward: torch.Tensor) -> dict:
    """Every vertex's reward by hand: psi="sum" of its subordinates' rewards, each split among its superiors."""
    g = graph.nx
    rewards = {m: motor_reward[..., k] for k, m in enumerate(graph.motors)}
    for v in reversed(list(nx.topological_sort(g))):
        if v not in rewards:
            rewards[v] = sum(rewards[s] / g.in_degree(s) for s in g.successors(v))
    return rewards


def assert_routed(graph: RNGraph, nxt: TensorDict, groups=None) -> None:
    """Each manager's reward in ``nxt`` is the hand-computed psi of its subordinates' rewards."""
    expected = expected_rewards(graph, nxt["agents", "reward"][..., 0])
    groups = [g for g in graph.groups if g != "agents"] if groups is None else groups
    for g in groups:
        for i, v in enumerate(graph.groups[g]):
            torch.testing.assert_close(nxt[g, "reward"][..., i, 0], expected[v], msg=f"reward of {v!r}")


def assert_dones(graph: RNGraph, nxt: TensorDict, groups=None) -> None:
    for g in groups or graph.groups:
        n = len(graph.groups[g])
        for key in ("done", "terminated"):
            root = nxt[key]
            assert torch.equal(nxt[g, key], root.unsqueeze(-2).expand(*root.shape[:-1], n, 1)), (g, key)


def check_composed_rollout(graph: RNGraph, env) -> TensorDict:
    """``check_env_specs``, then a 3-step rollout driven by the composed policy whose routed rewards and done flags
    match the hand computation; closes ``env``. Returns the rollout."""
    try:
        check_env_specs(env)
        td = env.rollout(3, GraphComposer(graph, env, num_cells=8).policy)
        assert_routed(graph, td["next"])
        assert_dones(graph, td["next"])
        return td
    finally:
        env.close()


def assert_no_empty_specs(env) -> None:
    """What TorchRL's batched envs reject ("has empty specs"): no Composite without an entry."""
    for spec in (env.full_observation_spec, env.full_reward_spec, env.full_done_spec, env.full_action_spec):
        for key in spec.keys(True):
            if isinstance(spec[key], Composite):
                assert list(spec[key].keys()), f"empty spec at {key}"


def graph_env(graph: RNGraph, **kwargs) -> TransformedEnv:
    return TransformedEnv(base_env(**kwargs), LevelEnv(graph))


def composer_for(graph: RNGraph) -> GraphComposer:
    return GraphComposer(graph, graph_env(graph), num_cells=8)


def view_env(graph: RNGraph, level: int, composer: GraphComposer, env=None) -> TransformedEnv:
    """The TAG view of ``level``, stacked on the views below it (on ``env`` or a fresh mock env)."""
    env = base_env() if env is None else env
    for lvl in range(1, level + 1):
        env = TransformedEnv(env, LevelView(graph, level=lvl, lower_policy=composer))
    return env


def step_on_target(env) -> TensorDict:
    """One step where every motor plays its target: the mock env then pays agent k exactly k + 1."""
    td = env.reset()
    action_dim = env.full_action_spec["agents", "action"].shape[-1]
    td["agents", "action"] = td["agents", "observation"][..., :action_dim].clone()
    return env.step(td)


# ---------------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("shape", list(SHAPES))
def test_single_trans_env_check(shape):
    graph = SHAPES[shape]()
    env = graph_env(graph)
    check_env_specs(env)
    assert_no_empty_specs(env)
    td = env.rollout(3, composer_for(graph).policy)
    assert_routed(graph, td["next"])
    assert_dones(graph, td["next"])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_serial_trans_env_check(shape):
    graph = SHAPES[shape]()
    env = SerialEnv(2, lambda: graph_env(graph))
    td = check_composed_rollout(graph, env)  # the composed policy drives it
    assert td.batch_size == (2, NUM_ENVS, 3)


@pytest.mark.parametrize(("shape", "level"), VIEWS)
def test_serial_trans_env_check_tag_view(shape, level):
    graph = SHAPES[shape]()
    composer = composer_for(graph)
    env = SerialEnv(2, lambda: view_env(graph, level, composer))
    try:
        check_env_specs(env)
        top = graph.groups_at(level)[0]
        assert list(env.full_action_spec.keys(True, True)) == [(top, "action")]
        td = env.rollout(3, composer.actor(top))
        assert_routed(graph, td["next"], groups=[g for lvl in range(1, level + 1) for g in graph.groups_at(lvl)])
    finally:
        env.close()


@pytest.mark.parametrize("shape", ["tree22", "shared_dag"])
def test_parallel_trans_env_check(shape):
    graph = SHAPES[shape]()
    env = ParallelEnv(2, functools.partial(graph_env, graph), mp_start_method=MP_START)
    td = check_composed_rollout(graph, env)  # the composed policy drives it
    assert td.batch_size == (2, NUM_ENVS, 3)


def test_parallel_trans_env_check_tag_view():
    graph = SHAPES["tree22"]()
    composer = composer_for(graph)
    # each worker runs its own copy of the motors' policy
    env = ParallelEnv(2, functools.partial(view_env, graph, 1, composer), mp_start_method=MP_START)
    try:
        check_env_specs(env)
        td = env.rollout(3, composer.actor("level1"))
        assert_routed(graph, td["next"], groups=["level1"])
    finally:
        env.close()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_trans_serial_env_check(shape):
    graph = SHAPES[shape]()
    env = TransformedEnv(SerialEnv(2, base_env), LevelEnv(graph))
    check_composed_rollout(graph, env)


def test_trans_serial_env_check_tag_view():
    graph = SHAPES["dag_root"]()
    composer = composer_for(graph)
    env = view_env(graph, 2, composer, env=SerialEnv(2, base_env))
    try:
        check_env_specs(env)
        td = env.rollout(3, composer.actor("level2"))
        assert_routed(graph, td["next"], groups=["level1", "level2"])
    finally:
        env.close()


@pytest.mark.parametrize("shape", ["shared_dag"])
def test_trans_parallel_env_check(shape):
    graph = SHAPES[shape]()
    env = TransformedEnv(ParallelEnv(2, base_env, mp_start_method=MP_START), LevelEnv(graph))
    check_composed_rollout(graph, env)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_transform_no_env(shape):
    graph = SHAPES[shape]()
    t = LevelEnv(graph)
    # the specs transform without a parent env ...
    out = t.transform_observation_spec(base_env().full_observation_spec.clone())
    dims = graph.dims(3)
    for g in graph.groups:
        if dims[g]["instruction"]:
            assert out[g, "instruction"].shape == (NUM_ENVS, len(graph.groups[g]), dims[g]["instruction"])
        else:
            assert (g, "instruction") not in out.keys(True, True)
    reward = t.transform_reward_spec(base_env().full_reward_spec.clone())
    assert sorted(k[0] for k in reward.keys(True, True)) == sorted(graph.groups)
    # ... but the data needs the env's step: calling the transform on a tensordict is refused
    td = base_env().reset()
    with pytest.raises(RuntimeError, match="LevelEnv cannot be executed without a parent environment"):
        t(td)


@pytest.mark.parametrize(
    ("shape", "order"),
    [(s, ("level", "sum", "count")) for s in SHAPES]
    + [("shared_dag", order) for order in itertools.permutations(["level", "sum", "count"])][1:],
)
def test_transform_compose(shape, order):
    graph = SHAPES[shape]()
    make = {"level": lambda: LevelEnv(graph), "sum": RewardSum, "count": StepCounter}
    env = TransformedEnv(base_env(max_steps=5), Compose(*(make[k]() for k in order)))
    check_env_specs(env)
    assert_no_empty_specs(env)
    td = env.rollout(5, composer_for(graph).policy)  # one whole episode
    nxt = td["next"]
    assert_routed(graph, nxt)
    torch.testing.assert_close(nxt["step_count"][0, :, 0], torch.arange(1, 6))
    # RewardSum sums the rewards the env has where it sits: every group's after LevelEnv, the motors' before
    summed = list(graph.groups) if order.index("sum") > order.index("level") else ["agents"]
    for g in graph.groups:
        if g in summed:
            torch.testing.assert_close(nxt[g, "episode_reward"], nxt[g, "reward"].cumsum(1))
        else:
            assert (g, "episode_reward") not in nxt.keys(True, True)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_transform_env(shape):
    graph = SHAPES[shape]()
    env = graph_env(graph)
    assert env.transform.parent is not None
    nxt = step_on_target(env)["next"]
    torch.testing.assert_close(nxt["agents", "reward"][..., 0], torch.arange(1.0, 5.0).expand(NUM_ENVS, 4))
    assert_routed(graph, nxt)
    if shape == "tree22":  # by hand: l1 = (1 + 2, 3 + 4), l2 = 10
        torch.testing.assert_close(nxt["level1", "reward"][0, :, 0], torch.tensor([3.0, 7.0]))
        torch.testing.assert_close(nxt["level2", "reward"][0, :, 0], torch.tensor([10.0]))
    if shape == "shared_dag":  # motor_2 split between a and b, motor_3 between b and root
        torch.testing.assert_close(nxt["level1", "reward"][0, :, 0], torch.tensor([1 + 2 + 1.5, 1.5 + 2.0]))
        torch.testing.assert_close(nxt["level2", "reward"][0, :, 0], torch.tensor([4.5 + 3.5 + 2.0]))


@pytest.mark.parametrize("shape", ["tree2", "shared_dag"])
def test_transform_model(shape):
    model = nn.Sequential(LevelEnv(SHAPES[shape]()), nn.Identity())
    with pytest.raises(RuntimeError, match="cannot be executed without a parent environment"):
        model(base_env().reset())


@pytest.mark.parametrize("shape", list(SHAPES))
def test_transform_rb(shape):
    # TorchRL's matrix: "if not supposed to work with a RB, test that an error will be raised"
    graph = SHAPES[shape]()
    data = graph_env(graph).rollout(3).reshape(-1)
    rb = ReplayBuffer(storage=LazyTensorStorage(10), batch_size=2)
    rb.append_transform(LevelEnv(graph))
    rb.extend(data)  # the inverse of the graph transform is the identity
    assert len(rb) == 6
    with pytest.raises(RuntimeError, match="LevelEnv cannot be executed without a parent environment"):
        rb.sample()


@pytest.mark.parametrize(("shape", "level"), VIEWS)
def test_transform_inverse(shape, level):
    # the TAG view's inverse turns the exposed level's actions into the actions of the level below it
    graph = SHAPES[shape]()
    composer = composer_for(graph)
    env = view_env(graph, level, composer)
    check_env_specs(env)
    top, below = graph.groups_at(level)[0], graph.groups_at(level - 1)[0]
    td = env.reset()
    td[top, "action"] = env.full_action_spec[top, "action"].rand()
    with set_interaction_type(InteractionType.DETERMINISTIC):
        out = env.transform.inv(td)
        # the level below is instructed with its superiors' actions, concatenated in superior order
        for i, v in enumerate(graph.groups[below]):
            sups = [graph.groups[top].index(s) for s in graph.superiors(v)]
            instruction = torch.cat([td[top, "action"][:, j] for j in sups], -1)
            width = instruction.shape[-1]
            torch.testing.assert_close(out[below, "instruction"][:, i, :width], instruction)
        expected = composer.actor(below)(out.clone().exclude((below, "action")))
    assert (top, "action") in out.keys(True, True)
    torch.testing.assert_close(out[below, "action"], expected[below, "action"])
    # and a step with it routes the rewards up to the view's level
    nxt = env.step(td)["next"]
    assert_routed(graph, nxt, groups=[g for lvl in range(1, level + 1) for g in graph.groups_at(lvl)])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_transform_clone(shape):
    graph = SHAPES[shape]()
    env = graph_env(graph)
    t = env.transform
    clone = t.clone()
    assert clone is not t and clone.parent is None and t.parent is not None
    other = TransformedEnv(base_env(obs_dim=5), clone)  # a clone goes into another env
    check_env_specs(other)
    assert_routed(graph, step_on_target(other)["next"])
    assert_routed(graph, step_on_target(env)["next"])  # the original still works in its own


@pytest.mark.parametrize("shape", list(SHAPES))
def test_transform_state_dict(shape):
    graph = SHAPES[shape]()
    env = TransformedEnv(base_env(), Compose(LevelEnv(graph), RewardSum()))
    env.rollout(2)
    state = env.state_dict()
    assert not any("LevelEnv" in k or "composer" in k for k in state)  # the graph transform holds no tensors
    fresh = TransformedEnv(base_env(), Compose(LevelEnv(graph), RewardSum()))
    fresh.load_state_dict(state)
    check_env_specs(fresh)
    assert_routed(graph, step_on_target(fresh)["next"])


@pytest.mark.parametrize(("shape", "level"), [("tree22", 2), ("dag", 1)])
def test_tag_view_clone_and_state_dict(shape, level):
    graph = SHAPES[shape]()
    composer = composer_for(graph)
    env = view_env(graph, level, composer)
    # the view refers to the lower policy without owning it: no policy weights in the env's state
    assert list(env.parameters()) == []
    state = env.state_dict()
    assert not any(k.endswith(("weight", "bias")) for k in state), list(state)
    fresh = view_env(graph, level, composer)
    fresh.load_state_dict(state)
    # a clone acts with the same policy in another env
    view = env.transform[-1] if isinstance(env.transform, Compose) else env.transform  # nested views are unwrapped
    clone = view.clone()
    assert clone.composer is composer and clone.parent is None
    other = TransformedEnv(view_env(graph, level - 1, composer), clone)
    check_env_specs(other)
    top = graph.groups_at(level)[0]
    nxt = other.rollout(2, composer.actor(top))["next"]
    assert_routed(graph, nxt, groups=[g for lvl in range(1, level + 1) for g in graph.groups_at(lvl)])
