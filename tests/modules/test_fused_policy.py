"""``FusedPolicy`` against the reference, the composed policy (``GraphComposer.policy``): on every graph shape of the
transform test matrix, with decision periods, the superiors' clock, learned and mean messages, the goal warm-up
(random goals), end-to-end groups and discrete motors, a rollout's every step must write the same keys with equal
values, drawing the same random numbers, under random and deterministic exploration."""
from __future__ import annotations

import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.modules.fused_policy import FusedPolicy

from conftest import shared_dag

N = 4


#: name: (graph, GraphComposer options, goal warm-up on, discrete motors)
CASES = {
    "flat": (lambda: RNGraph.flat(N), {}, False, False),
    "tree2": (lambda: RNGraph.tree(N, [2]), {}, False, False),
    "tree22": (lambda: RNGraph.tree(N, [2, 2]), {}, False, False),
    "dag_root": (lambda: RNGraph.overlapping(N, 2, root=True), {}, False, False),
    "shared_dag": (shared_dag, {}, False, False),
    "tree22_periods_clock": (lambda: RNGraph.tree(N, [2, 2], periods=[2, 3, 4]), {"observe_clock": True}, False,
                             False),
    "dag_root_addressed": (
        lambda: RNGraph.overlapping(N, 2, root=True, vertex_attrs={"instruct": "addressed"}), {}, False, False),
    "tree22_learned": (lambda: RNGraph.tree(N, [2, 2], vertex_attrs={"phi": "learned"}), {}, False, False),
    "tree22_mean": (lambda: RNGraph.tree(N, [2, 2], vertex_attrs={"phi": "mean"}), {}, False, False),
    "tree2_value_norm_group": (lambda: RNGraph.tree(N, [2]), {"value_norm": True, "critic": "group"}, False, False),
    "tree2_goal_warmup": (lambda: RNGraph.tree(N, [2], periods=[1, 2], vertex_reward="goal:pos"), {}, True, False),
    "tree22_end_to_end": (lambda: RNGraph.tree(N, [2, 2], defaults={"learn": "gradient"}), {}, False, False),
    "tree2_discrete": (lambda: RNGraph.tree(N, [2]), {}, False, True),
    "flat_discrete": (lambda: RNGraph.flat(N), {}, False, True),
}


def _setup(case: str):
    make_graph, composer_kwargs, warmup, discrete = CASES[case]
    graph = make_graph()
    env = TransformedEnv(MockMultiAgentEnv(N, num_envs=3, max_steps=4, seed=0, discrete=discrete), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=16, **composer_kwargs)
    if warmup:
        assert composer.goal_warmup(True)
    return env, composer


@pytest.mark.parametrize("exploration", [ExplorationType.RANDOM, ExplorationType.DETERMINISTIC],
                         ids=["random", "deterministic"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_policy_steps_equal_the_composed_policy(case, exploration):
    env, composer = _setup(case)
    fused = FusedPolicy(composer.policy)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(exploration):
        for step in range(7):  # past the mock's episode end: resets and (with periods) held decisions
            torch.manual_seed(step)
            expected = composer.policy(td.clone())
            next_expected = torch.rand(2)  # the generator's state after the step: the same draws were made
            torch.manual_seed(step)
            got = fused(td.clone())
            assert torch.equal(torch.rand(2), next_expected), (case, step)
            assert set(got.keys(True, True)) == set(expected.keys(True, True))
            for key in expected.keys(True, True):
                assert torch.equal(got[key], expected[key]), (case, step, key)
            _, td = env.step_and_maybe_reset(expected)


def test_a_copied_fused_policy_steps_as_the_original():
    """Collector workers get a deep copy or a pickle of the policy: the distributions it keeps between steps are left
    behind and rebuilt, and the copy's steps equal the original's."""
    import copy
    import pickle

    env, composer = _setup("tree2")
    fused = FusedPolicy(composer.policy)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        fused(td.clone())  # keeps its distributions
        for other in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):
            assert other._dists == {}
            torch.manual_seed(0)
            expected = fused(td.clone())
            torch.manual_seed(0)
            got = other(td.clone())
            assert all(torch.equal(got[k], expected[k]) for k in expected.keys(True, True))


def test_fused_policy_of_a_fused_policy_is_the_same_and_other_modules_are_refused():
    _, composer = _setup("tree2")
    fused = FusedPolicy(composer.policy)
    assert FusedPolicy(fused).policy is composer.policy
    with pytest.raises(TypeError, match="FusedPolicy runs a composed policy .* got Linear"):
        FusedPolicy(torch.nn.Linear(2, 2))
