"""Vertex reward functions (issue 10, section 3): parsing, graph validation, the superior's advantage as reward in
GraphGAE (hand-computed: a DAG subordinate with two superiors, a period-2 superior whose episode ends mid-window),
goal rewards in LevelEnv (hand-computed on a point-mass env), the trainer option and a short run.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import networkx as nx
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import check_env_specs
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from torchrl_rn import GraphComposer, GraphGAE, LevelEnv, RNGraph, RNLoss, RNTrainer, TrainConfig
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.graph import GraphError
from torchrl_rn.rewards import (
    GoalReward,
    GoalRewardModule,
    PsiReward,
    SuperiorAdvantage,
    VertexReward,
    parse_reward,
)
from torchrl_rn.graph import superior_weights
from torchrl_rn.modules import RandomGoals
from torchrl_rn.objectives import hold_decisions


# ---------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, expected", [
    ("psi", PsiReward()),
    ("advantage", SuperiorAdvantage(0.5, True)),
    ("advantage:0.25", SuperiorAdvantage(0.25, True)),
    ("advantage:0.25,false", SuperiorAdvantage(0.25, False)),
    ("advantage:normalize=no", SuperiorAdvantage(0.5, False)),
    ("goal:pos", GoalReward(0, 2)),
    ("goal:2-5,2,0.1", GoalReward(2, 5, c=2.0, beta=0.1)),
    ("goal:0-2,beta=0.5,scale=3", GoalReward(0, 2, beta=0.5, scale=3.0)),
    ("goal:pos,normalize=true", GoalReward(0, 2, normalize=True)),
    ("goal:0-2,1,0,1,yes", GoalReward(0, 2, normalize=True)),
])
def test_parse_reward(text, expected):
    assert parse_reward(text) == expected
    assert parse_reward(str(expected)) == expected  # the string form reads back


@pytest.mark.parametrize("text, match", [
    ("q", "unknown vertex reward 'q'"),
    ("advantage:2", "alpha must be in"),
    ("advantage:x", "alpha must be a number"),
    ("advantage:gamma=1", "unknown argument 'gamma'"),
    ("goal", "needs its observation slice"),
    ("goal:feet", "cannot read the observation slice 'feet'"),
    ("goal:3-1", "0 <= start < stop"),
])
def test_bad_reward_strings(text, match):
    with pytest.raises(ValueError, match=match):
        parse_reward(text)


# ---------------------------------------------------------------------------------------------------- graph
def test_builders_give_non_roots_the_vertex_reward():
    tree = RNGraph.from_spec("tree:2,2", 4, vertex_reward="advantage:0.3")
    assert tree.group_reward("agents") == tree.group_reward("level1") == SuperiorAdvantage(0.3)
    assert tree.group_reward("level2") == PsiReward()  # the root keeps psi
    assert RNGraph.tree(4, [2]).group_reward("agents") == PsiReward()  # default
    goal = RNGraph.tree(4, [2, 2], vertex_reward="goal:pos")  # a goal reward goes to the motors only
    assert goal.group_reward("agents") == GoalReward(0, 2) and goal.group_reward("level1") == PsiReward()
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes["m0"]["reward"] = g.nodes["m1"]["reward"] = "psi"  # a vertex's own attribute wins
    assert RNGraph(g, vertex_reward="advantage").group_reward("agents") == PsiReward()


@pytest.mark.parametrize("where, value, match", [
    ("m0", "bonus", r"vertex 'm0': unknown vertex reward 'bonus'"),
    ("boss", "advantage", r"vertex 'boss': reward 'advantage:alpha=0.5,normalize=True' needs superiors"),
    ("m0", "goal:0-3", r"vertex 'boss': its action_dim 4 cannot hold a 3-dim goal for each of its 2 subordinates"),
    ("m0", 3, r"vertex 'm0': a vertex reward must be a string or a VertexReward"),
])
def test_bad_vertex_reward_names_the_vertex(where, value, match):
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes[where]["reward"] = value
    g.nodes["m1"]["reward"] = value if where == "m0" else "psi"
    g.nodes["boss"]["action_dim"] = 4  # set by hand: too small for two 3-dim goals
    with pytest.raises(GraphError, match=match):
        RNGraph(g)


def test_goal_reward_sizes_the_superiors_instruction_unless_set():
    # one manager over 4 motors with 2-dim goals needs 8 entries; the default (4) grows, an explicit value is kept
    assert RNGraph.tree(4, [4], vertex_reward="goal:pos").group_action_dim("level1") == 8
    assert RNGraph.tree(4, [2], vertex_reward="goal:pos").group_action_dim("level1") == 4
    assert RNGraph.tree(4, [4]).group_action_dim("level1") == 4  # no goal reward: the default
    # 5 motors under managers of 3 and 2: the group takes the larger need (3 x 2), so it stays one size
    assert RNGraph.tree(5, [3], vertex_reward="goal:pos").group_action_dim("level1") == 6
    assert RNGraph.tree(4, [4], vertex_reward="goal:pos", vertex_attrs={"action_dim": 9}).group_action_dim(
        "level1") == 9
    with pytest.raises(GraphError, match=r"vertex 'l1_0': its action_dim 5 cannot hold"):
        RNGraph.tree(4, [4], vertex_reward="goal:pos", vertex_attrs={"action_dim": 5})


def test_group_with_two_rewards_and_goal_above_motors_are_refused():
    g = nx.DiGraph([("boss", "m0"), ("boss", "m1")])
    g.nodes["m0"]["reward"] = "advantage"
    with pytest.raises(GraphError, match=r"group 'agents' has inconsistent reward"):
        RNGraph(g)
    g = nx.DiGraph([("top", "mid"), ("mid", "m0")])
    g.nodes["mid"]["reward"] = "goal:0-1"
    with pytest.raises(GraphError, match=r"vertex 'mid': a goal reward applies to motors only"):
        RNGraph(g)
    with pytest.raises(GraphError, match=r"vertex_reward: unknown vertex reward 'x'"):
        RNGraph.tree(4, [2], vertex_reward="x")


def test_superior_weights_average_over_superiors():
    graph = RNGraph(_dag_edges(), periods=[1, 2])
    sources, w = superior_weights(graph, "agents")
    assert sources == ["level1"]
    assert torch.equal(w, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))


def test_hold_decisions_cuts_at_episode_ends_and_batch_start():
    value = torch.tensor([7.0, 9.0, 1.0, 9.0, 2.0, 9.0, 3.0])
    decided = torch.tensor([False, False, True, False, True, False, True])
    done = torch.tensor([False, False, False, True, False, False, False])
    # step 0-1: no decision of theirs in the batch (0); 3 keeps step 2's; 5 keeps 4's (a new episode decided at 4)
    held = hold_decisions(value, decided, done, time_dim=0)
    assert held.tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    # an episode that starts without a decision (done at 3, no decision at 4) holds nothing from before the done
    decided[4] = False
    assert hold_decisions(value, decided, done, time_dim=0).tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0]


# ---------------------------------------------------------------------------------------------------- GraphGAE
def _dag_edges(**motor_attrs) -> nx.DiGraph:
    """a -> m0, a -> m1, b -> m1, b -> m2: m1 has two superiors."""
    g = nx.DiGraph([("a", "m0"), ("a", "m1"), ("b", "m1"), ("b", "m2")])
    for m in ("m0", "m1", "m2"):
        g.nodes[m].update(motor_attrs)
    return g


def _constant_critic(values: dict[str, float]) -> TensorDictModule:
    """A critic whose value is a constant per group, read off the groups' observations' shapes."""
    groups = list(values)

    def critic(*obs):
        return tuple(torch.full_like(o[..., :1], values[g]) for g, o in zip(groups, obs))

    return TensorDictModule(critic, [(g, "observation") for g in groups], [(g, "state_value") for g in groups])


def _batch(motor_reward, superior_reward, done, decided) -> TensorDict:
    """One env, time first: motor rewards [T, 3], superior rewards [T, 2], team done [T], level1 decided [T]."""
    steps = len(done)
    done = torch.tensor(done).view(1, steps, 1)
    obs = {"agents": {"observation": torch.zeros(1, steps, 3, 1)}, "level1": {"observation": torch.zeros(1, steps, 2, 1)}}
    return TensorDict({
        **obs,
        "level1": {**obs["level1"], "decided": torch.tensor(decided).view(1, steps, 1, 1).expand(1, steps, 2, 1)},
        "next": {
            "agents": {**obs["agents"], "reward": torch.tensor(motor_reward).view(1, steps, 3, 1)},
            "level1": {**obs["level1"], "reward": torch.tensor(superior_reward).view(1, steps, 2, 1)},
            "done": done, "terminated": done.clone(),
        },
    }, [1, steps])


def _dag_gae(reward: str, *, motor_value=0.0):
    graph = RNGraph(_dag_edges(reward=reward), periods=[1, 2])
    critic = _constant_critic({"agents": motor_value, "level1": 1.0})
    return GraphGAE(graph, gamma=0.5, lmbda=1.0, value_network=critic)


# 5 steps; the team episode terminates at step 2, inside the superiors' second window (decided at 0, 2, 3: the
# window opened at 2 is cut after one step, and the new episode decides at 3)
_SUP_REWARD = [[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]]  # a, b
_DONE = [False, False, True, False, False]
_DECIDED = [True, False, True, True, False]


def test_advantage_reward_dag_with_period_two_superiors_hand_computed():
    data = _batch([[1.0] * 3] * 5, _SUP_REWARD, _DONE, _DECIDED)
    out = _dag_gae("advantage:alpha=0.5,normalize=false")(data)
    # superiors (V = 1, gamma 0.5, lambda 1), semi-Markov returns Z from the last step back:
    #   a: Z4 = 5 + .5*1 = 5.5; Z3 = 4 + .5*5.5 = 6.75; Z2 = 3 (terminated); Z1 = 2 + .5*(1 + (3 - 1)) = 3.5;
    #      Z0 = 1 + .5*3.5 = 2.75  ->  A = Z - 1 at decisions 0, 2, 3: 1.75, 2, 5.75
    #   b: Z4 = .5; Z3 = 1.25; Z2 = 0; Z1 = 1 + .5*(1 + (0 - 1)) = 1; Z0 = .5  ->  A: -.5, -1, .25
    sup_adv = out["level1", "advantage"][0, :, :, 0]
    torch.testing.assert_close(sup_adv[:, 0], torch.tensor([1.75, 0.0, 2.0, 5.75, 0.0]))
    torch.testing.assert_close(sup_adv[:, 1], torch.tensor([-0.5, 0.0, -1.0, 0.25, 0.0]))
    # held over the windows: a [1.75, 1.75, 2, 5.75, 5.75], b [-.5, -.5, -1, .25, .25]; m1 averages both
    mixed = {  # 0.5 * own reward (1) + 0.5 * A_sup
        0: [1.375, 1.375, 1.5, 3.375, 3.375],
        1: [0.8125, 0.8125, 0.75, 2.0, 2.0],  # A_sup = [.625, .625, .5, 3, 3]
        2: [0.25, 0.25, 0.0, 0.625, 0.625],
    }
    # m1 by hand (V = 0, gamma * lambda = .5, terminated at 2): A4 = 2; A3 = 2 + 1 = 3; A2 = .75;
    # A1 = .8125 + .375 = 1.1875; A0 = .8125 + .59375 = 1.40625
    motor_adv = out["agents", "advantage"][0, :, :, 0]
    torch.testing.assert_close(motor_adv[:, 1], torch.tensor([1.40625, 1.1875, 0.75, 3.0, 2.0]))
    done = torch.tensor(_DONE).view(5, 1)
    for m, reward in mixed.items():
        expected, _ = vec_generalized_advantage_estimate(0.5, 1.0, torch.zeros(5, 1), torch.zeros(5, 1),
                                                          torch.tensor(reward).view(5, 1), done, done, time_dim=0)
        torch.testing.assert_close(motor_adv[:, m], expected[:, 0])
    # the data's rewards are not rewritten: a second call gives the same advantages
    assert torch.equal(out["next", "agents", "reward"], torch.ones(1, 5, 3, 1))
    torch.testing.assert_close(_dag_gae("advantage:alpha=0.5,normalize=false")(out)["agents", "advantage"][0, :, :, 0],
                               motor_adv)


def test_advantage_reward_normalised_by_the_batch_spread_of_each_superior_group():
    data = _batch([[0.0] * 3] * 5, _SUP_REWARD, _DONE, _DECIDED)
    out = _dag_gae("advantage:alpha=0")(data)  # normalize=True by default; alpha 0: the reward is A_sup only
    scale = torch.tensor([1.75, 2.0, 5.75, -0.5, -1.0, 0.25]).std()  # both superiors' advantages at decisions
    held_a = torch.tensor([1.75, 1.75, 2.0, 5.75, 5.75]) / scale
    expected, _ = vec_generalized_advantage_estimate(0.5, 1.0, torch.zeros(5, 1), torch.zeros(5, 1),
                                                      held_a.view(5, 1), torch.tensor(_DONE).view(5, 1),
                                                      torch.tensor(_DONE).view(5, 1), time_dim=0)
    torch.testing.assert_close(out["agents", "advantage"][0, :, 0, 0], expected[:, 0])


def test_advantage_reward_takes_the_spread_of_the_subordinates_own_rewards():
    own = [[0.0, 2.0, 4.0], [0.0, 2.0, 4.0], [0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # spread 1.97
    data = _batch(own, _SUP_REWARD, _DONE, _DECIDED)
    out = _dag_gae("advantage:alpha=0.5")(data)
    scale = torch.tensor([1.75, 2.0, 5.75, -0.5, -1.0, 0.25]).std()  # both superiors' advantages at decisions
    spread = torch.tensor(own).std()  # the motors' own rewards over the batch
    held_a = torch.tensor([1.75, 1.75, 2.0, 5.75, 5.75]) / scale * spread  # motor 0's only superior is a
    reward = 0.5 * torch.tensor(own)[:, 0] + 0.5 * held_a
    expected, _ = vec_generalized_advantage_estimate(0.5, 1.0, torch.zeros(5, 1), torch.zeros(5, 1),
                                                      reward.view(5, 1), torch.tensor(_DONE).view(5, 1),
                                                      torch.tensor(_DONE).view(5, 1), time_dim=0)
    torch.testing.assert_close(out["agents", "advantage"][0, :, 0, 0], expected[:, 0])


def test_advantage_reward_with_alpha_one_is_plain_psi():
    data = _batch([[1.0, 2.0, 3.0]] * 5, _SUP_REWARD, _DONE, _DECIDED)
    plain = _dag_gae("psi", motor_value=0.5)(data.clone())
    alpha1 = _dag_gae("advantage:1", motor_value=0.5)(data.clone())
    for g in ("agents", "level1"):
        for field in ("advantage", "value_target"):
            torch.testing.assert_close(alpha1[g, field], plain[g, field])


def test_advantage_reward_three_levels_top_down():
    """level1 is trained on its mixed reward, and the motors see level1's advantage of that mixed reward."""
    graph = RNGraph.tree(2, [1, 1], vertex_reward="advantage:alpha=0.5,normalize=false")  # l2 -> l1 -> m0, l2 -> ..
    groups = ["agents", "level1", "level2"]
    critic = _constant_critic({g: 0.0 for g in groups})
    steps = 2
    data = TensorDict({g: {"observation": torch.zeros(steps, len(graph.groups[g]), 1)} for g in groups}, [steps])
    data["next"] = data.clone()
    for g, r in zip(groups, ([1.0, 1.0], [2.0, 0.0], [4.0, 2.0])):
        data["next", g, "reward"] = torch.tensor(r).view(steps, 1, 1).expand(steps, len(graph.groups[g]), 1).clone()
    data["next", "done"] = data["next", "terminated"] = torch.zeros(steps, 1, dtype=torch.bool)
    out = GraphGAE(graph, gamma=1.0, lmbda=1.0, value_network=critic)(data)
    # level2 (root, psi): A = [4 + 2, 2] = [6, 2]; level1: r = .5*[2, 0] + .5*[6, 2] = [4, 1] -> A = [5, 1];
    # motors: r = .5*[1, 1] + .5*[5, 1] = [3, 1] -> A = [4, 1]
    torch.testing.assert_close(out["level2", "advantage"][:, 0, 0], torch.tensor([6.0, 2.0]))
    torch.testing.assert_close(out["level1", "advantage"][:, 0, 0], torch.tensor([5.0, 1.0]))
    torch.testing.assert_close(out["agents", "advantage"][:, 0, 0], torch.tensor([4.0, 1.0]))


def test_advantage_reward_runs_in_rnloss_on_a_rollout():
    graph = RNGraph.tree(4, [2], periods=[1, 3], vertex_reward="advantage:0.5")
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2, max_steps=4), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    with torch.no_grad():
        data = env.rollout(7, composer.policy, break_when_any_done=False)
    loss = RNLoss(composer, gamma=0.9, lmbda=0.9)
    with torch.no_grad():
        loss.value_estimator(data)
    plain = GraphGAE(RNGraph.tree(4, [2], periods=[1, 3]), gamma=0.9, lmbda=0.9, value_network=composer.critic)
    reference = plain(data.clone())
    # the managers (roots) are unchanged; the motors' advantages are not
    torch.testing.assert_close(data["level1", "advantage"], reference["level1", "advantage"])
    assert not torch.allclose(data["agents", "advantage"], reference["agents", "advantage"])
    out = loss(data.reshape(-1))
    assert torch.isfinite(sum(v for k, v in out.items() if k.startswith("loss_")))


# ---------------------------------------------------------------------------------------------------- goals
def test_goal_module_dag_motor_averages_its_superiors_goals():
    # a's action: [goal of m0 | goal of m1], b's: [goal of m1 | goal of m2]; m1's instruction is a's then b's
    graph = RNGraph(_dag_edges(reward="goal:0-2,c=2,beta=0.5"))
    module = GoalRewardModule(graph, "agents", graph.group_reward("agents"))
    a, b = torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 3.0, 3.0])
    instruction = torch.stack([torch.cat([a, torch.zeros(4)]), torch.cat([a, b]), torch.cat([b, torch.zeros(4)])])
    obs = torch.zeros(3, 2)
    next_obs = torch.tensor([[0.5, 0.0], [0.0, 0.5], [3.0, 0.0]])
    reward = module.compute(obs, instruction, next_obs, torch.ones(3, 1))[:, 0]
    # m0: goal (1, 0): 1 -> .5, progress .5; m1: goal (0, 1): 1 -> .5 (+.5) and goal (0, -1): 1 -> 1.5 (-.5), mean 0;
    # m2: goal (3, 3): sqrt(18) -> 3; reward = 2 * progress + .5 * 1
    expected = torch.tensor([2 * 0.5, 0.0, 2 * (18 ** 0.5 - 3.0)]) + 0.5
    torch.testing.assert_close(reward, expected)


def test_goal_module_under_addressed_superiors_reads_each_block():
    # addressed: a's action is [block of m0 | block of m1], b's [block of m1 | block of m2], blocks of 2 entries, and
    # each motor's instruction holds only its own blocks (m1: a's second, then b's first)
    g = _dag_edges(reward="goal:0-2")
    for v in ("a", "b"):
        g.nodes[v]["instruct"] = "addressed"
    graph = RNGraph(g)
    module = GoalRewardModule(graph, "agents", graph.group_reward("agents"))
    instruction = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0], [3.0, 3.0, 0.0, 0.0]])
    next_obs = torch.tensor([[0.5, 0.0], [0.0, 0.5], [3.0, 0.0]])
    reward = module.compute(torch.zeros(3, 2), instruction, next_obs, torch.zeros(3, 1))[:, 0]
    # the same goals as the broadcast test above: m0 +.5; m1 (0, 1) +.5 and (0, -1) -.5, mean 0; m2 sqrt(18) - 3
    torch.testing.assert_close(reward, torch.tensor([0.5, 0.0, 18 ** 0.5 - 3.0]))


class _PointEnv(EnvBase):
    """Agents are points: observation = position (starts at 0), action = displacement, agent reward 1 per step."""

    batch_locked = True

    def __init__(self, n_agents=2, num_envs=1, max_steps=10):
        super().__init__(batch_size=torch.Size([num_envs]))
        shape, self.max_steps = (num_envs, n_agents), max_steps
        self.full_observation_spec = Composite(agents=Composite(observation=Unbounded((*shape, 2)), shape=shape),
                                               shape=(num_envs,))
        self.full_action_spec = Composite(agents=Composite(action=Bounded(-1.0, 1.0, (*shape, 2)), shape=shape),
                                          shape=(num_envs,))
        self.full_reward_spec = Composite(agents=Composite(reward=Unbounded((*shape, 1)), shape=shape),
                                          shape=(num_envs,))
        self.full_done_spec = Composite(done=Categorical(2, (num_envs, 1), dtype=torch.bool),
                                        terminated=Categorical(2, (num_envs, 1), dtype=torch.bool), shape=(num_envs,))

    def _reset(self, td):
        self.pos, self.t = torch.zeros(self.full_observation_spec["agents", "observation"].shape), 0
        agents = TensorDict({"observation": self.pos.clone()}, self.pos.shape[:-1])
        return TensorDict({"agents": agents, "done": torch.zeros(*self.batch_size, 1,
                           dtype=torch.bool), "terminated": torch.zeros(*self.batch_size, 1, dtype=torch.bool)},
                          self.batch_size)

    def _step(self, td):
        self.pos, self.t = self.pos + td["agents", "action"], self.t + 1
        done = torch.full((*self.batch_size, 1), self.t >= self.max_steps)
        agents = TensorDict({"observation": self.pos.clone(), "reward": torch.ones(*self.pos.shape[:-1], 1)},
                            self.pos.shape[:-1])
        return TensorDict({"agents": agents, "done": done, "terminated": done.clone()}, self.batch_size)

    def _set_seed(self, seed):
        return seed


class _FixedPolicy(TensorDictModuleBase):
    """The manager sets goals (0.5, 0) for motor 0 and (0, -0.5) for motor 1; the motors move (.25, 0), (0, -.25)."""

    in_keys = [("agents", "observation")]
    out_keys = [("level1", "action"), ("agents", "instruction"), ("agents", "action")]

    def forward(self, td):
        goal = torch.tensor([0.5, 0.0, 0.0, -0.5])
        td["level1", "action"] = goal.expand(*td.batch_size, 1, 4).clone()
        td["agents", "instruction"] = goal.expand(*td.batch_size, 2, 4).clone()
        td["agents", "action"] = torch.tensor([[0.25, 0.0], [0.0, -0.25]]).expand(*td.batch_size, 2, 2).clone()
        return td


def test_goal_reward_in_level_env_hand_computed():
    graph = RNGraph.tree(2, [2], vertex_reward="goal:pos,c=2,beta=0.1")
    env = TransformedEnv(_PointEnv(), LevelEnv(graph))
    check_env_specs(env)
    assert ("agents", "vertex_reward") in env.full_reward_spec.keys(True, True)
    data = env.rollout(3, _FixedPolicy())
    # each motor's distance to its goal goes .5 -> .25 -> 0 -> .25: progress .25, .25, -.25; reward 2 * p + .1 * 1
    expected = torch.tensor([0.6, 0.6, -0.4]).view(1, 3, 1, 1).expand(1, 3, 2, 1)
    torch.testing.assert_close(data["next", "agents", "vertex_reward"], expected)
    # the task's reward is kept, and psi routes it (not the goal reward) to the manager
    assert torch.equal(data["next", "agents", "reward"], torch.ones(1, 3, 2, 1))
    assert torch.equal(data["next", "level1", "reward"], torch.full((1, 3, 1, 1), 2.0))
    # GraphGAE trains the motors on the goal reward
    critic = _constant_critic({"agents": 0.0, "level1": 0.0})
    data["level1", "observation"] = data["next", "level1", "observation"] = torch.zeros(1, 3, 1, 1)
    out = GraphGAE(graph, gamma=0.5, lmbda=1.0, value_network=critic)(data)
    torch.testing.assert_close(out["agents", "advantage"][0, :, 0, 0], torch.tensor([0.6 + 0.5 * 0.4, 0.4, -0.4]))


@pytest.mark.parametrize("normalize, expected", [
    # c * P + beta * own, as LevelEnv wrote it
    (False, [[0.6, 1.4], [-0.2, 0.6]]),
    # c * P has spread 0.1633 and own 1.633: the progress term is scaled by 10, to [[2, -2], [6, 2]]
    (True, [[2.5, -0.5], [5.5, 2.5]]),
])
def test_goal_reward_normalize_rescales_the_progress_term_in_graph_gae(normalize, expected):
    graph = RNGraph.tree(2, [2], vertex_reward=f"goal:pos,c=2,beta=0.5,normalize={normalize}")
    own = torch.tensor([[1.0, 3.0], [-1.0, 1.0]]).view(1, 2, 2, 1)  # [env, T, motor, 1]
    progress = torch.tensor([[0.05, -0.05], [0.15, 0.05]]).view(1, 2, 2, 1)
    obs = {"agents": {"observation": torch.zeros(1, 2, 2, 2)}, "level1": {"observation": torch.zeros(1, 2, 1, 1)}}
    done = torch.ones(1, 2, 1, dtype=torch.bool)  # one-step episodes
    data = TensorDict({**obs, "next": {
        "agents": {**obs["agents"], "reward": own, "vertex_reward": 2 * progress + 0.5 * own},
        "level1": {**obs["level1"], "reward": own.sum(-2, keepdim=True)},
        "done": done, "terminated": done.clone()}}, [1, 2])
    critic = _constant_critic({"agents": 0.0, "level1": 0.0})
    out = GraphGAE(graph, gamma=0.5, lmbda=1.0, value_network=critic)(data)  # one step, V 0: advantage = reward
    torch.testing.assert_close(out["agents", "advantage"][0, :, :, 0], torch.tensor(expected))
    # the data's vertex reward is not rewritten
    torch.testing.assert_close(out["next", "agents", "vertex_reward"], 2 * progress + 0.5 * own)


def test_goal_reward_observation_slice_checked_against_the_env():
    graph = RNGraph.tree(2, [2], vertex_reward="goal:1-3")
    with pytest.raises(GraphError, match=r"group 'agents': goal reward .* reads observation entries 1-3, but the "
                                         r"observation has 2"):
        TransformedEnv(_PointEnv(), LevelEnv(graph)).observation_spec


def test_goal_reward_with_a_composer_policy_and_default_keys_unchanged():
    plain = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(RNGraph.tree(4, [2])))
    graph = RNGraph.tree(4, [2], vertex_reward="goal:pos")
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
    data = env.rollout(3, GraphComposer(graph, env, num_cells=8).policy)
    assert data["next", "agents", "vertex_reward"].shape == (2, 3, 4, 1)
    extra = set(env.full_reward_spec.keys(True, True)) - set(plain.full_reward_spec.keys(True, True))
    assert extra == {("agents", "vertex_reward")}


# ---------------------------------------------------------------------------------------------------- goal warm-up
def _without_random_goals(composer: GraphComposer) -> TensorDictSequential:
    return TensorDictSequential(*[m for m in composer.policy.module if not isinstance(m, RandomGoals)])


def test_goal_warmup_gives_held_random_goals_and_leaves_the_superiors_untrained():
    graph = RNGraph.tree(4, [2], periods=[1, 2], vertex_reward="goal:pos")
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3, max_steps=10), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8)
    assert composer.warming_up == []

    def rollout(policy):
        torch.manual_seed(0)
        env.set_seed(0)
        with torch.no_grad():
            return env.rollout(6, policy, break_when_any_done=False)

    # inactive, the warm-up changes nothing and draws no random numbers
    plain = rollout(composer.policy)
    assert (plain == rollout(_without_random_goals(composer))).all()

    assert composer.goal_warmup(True) == ["level1"]
    data = rollout(composer.policy)
    goals = data["level1", "action"]  # [envs, time, managers, 4]
    assert not torch.allclose(goals, plain["level1", "action"])
    assert goals.abs().max() <= 1 and goals.std() > 0.4  # uniform on [-1, 1]: std 0.58 (the actor's: about 0.1)
    torch.testing.assert_close(goals[:, 1::2], goals[:, 0::2])  # held over the period-2 window
    torch.testing.assert_close(data["agents", "instruction"][:, :, 0], goals[:, :, 0])  # motor 0 reads its manager

    loss = RNLoss(composer, gamma=0.9, lmbda=0.9)
    out = loss(data.reshape(-1))
    assert all(out["level1", k] == 0 for k in out["level1"].keys() if k.startswith("loss_"))
    out["loss"].backward()
    managers = composer.vertex_groups["level1"]
    assert all(p.grad is None or not p.grad.any() for p in managers.parameters())
    assert any(p.grad is not None and p.grad.any() for p in composer.vertex_groups["agents"].parameters())

    composer.goal_warmup(False)
    out = loss(data.reshape(-1))
    assert out["level1", "loss_objective"] != 0 and composer.warming_up == []


def test_trainer_goal_warmup_trains_the_managers_after_it(tmp_path):
    cfg = TrainConfig(task="mock", frames=300, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, periods="1,2", vertex_reward="goal:pos", goal_warmup=200,
                      out=str(tmp_path / "run"))
    assert cfg.method_name == "rn-tree2-p1-2-rgoalpos-w200"
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    history = trainer.train()
    manager_loss = [row["level1/loss_objective"] for row in history]
    assert manager_loss[:2] == [0.0, 0.0] and manager_loss[2] != 0.0
    assert all(row["agents/loss_objective"] != 0.0 for row in history)
    assert trainer.composer.warming_up == []


def test_goal_warmup_option_errors():
    with pytest.raises(ValueError, match=r"--goal-warmup must be >= 0"):
        TrainConfig(vertex_reward="goal:pos", goal_warmup=-1)
    with pytest.raises(ValueError, match=r"--goal-warmup applies only to --algo rn"):
        TrainConfig(algo="mappo", goal_warmup=100)
    cfg = TrainConfig(task="mock", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50, goal_warmup=100)
    with pytest.raises(ValueError, match=r"--goal-warmup 100: no vertex of --graph 'tree:2' is trained on a goal"):
        RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)


# ---------------------------------------------------------------------------------------------------- trainer
def test_config_vertex_reward_option():
    assert TrainConfig(vertex_reward="advantage:0.5", periods="1,5").method_name == "rn-tree2-p1-5-radvantage0.5"
    assert TrainConfig().method_name == "rn-tree2"
    assert TrainConfig(graph="tree:4", instruct="addressed", periods="1,5").method_name == "rn-tree4-addressed-p1-5"
    with pytest.raises(ValueError, match=r"--vertex-reward: unknown vertex reward 'bonus'"):
        TrainConfig(vertex_reward="bonus")
    with pytest.raises(ValueError, match=r"--vertex-reward applies only to --algo rn"):
        TrainConfig(algo="mappo", vertex_reward="advantage")


@pytest.mark.parametrize("reward", [
    "advantage:0.5", "goal:pos,beta=0.1", "goal:pos,beta=0.1,normalize=true",
])
def test_trainer_runs_with_vertex_reward(tmp_path, reward):
    cfg = TrainConfig(task="mock", frames=200, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, periods="1,2", vertex_reward=reward, out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    assert trainer.graph.group_reward("agents") == parse_reward(reward)
    trainer.train()
    assert trainer.frames == 200


# ---------------------------------------------------------------------------------------------------- learners per level
def _depends_on_other_vertex(head, td, group) -> bool:
    """Whether vertex 0's value changes when vertex 1's observation does (a critic centralised over the group)."""
    v = head(td.clone())[group, "state_value"][:, 0]
    other = td.clone()
    other[group, "observation"][:, 1] += 1.0
    return not torch.allclose(v, head(other)[group, "state_value"][:, 0])


@pytest.mark.parametrize("critic", [["group", "local"], {"agents": "group"}])
def test_critic_scope_per_level_or_group(critic):
    graph = RNGraph.tree(4, [2])
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8, critic=critic)
    with torch.no_grad():
        td = composer.policy(env.reset())
        assert _depends_on_other_vertex(composer.value_head("agents"), td, "agents")  # MAPPO-style motors
        assert not _depends_on_other_vertex(composer.value_head("level1"), td, "level1")  # local managers
        plain = GraphComposer(graph, env, num_cells=8, critic="local")
        assert not _depends_on_other_vertex(plain.value_head("agents"), td, "agents")


def test_critic_per_group_errors():
    graph = RNGraph.tree(4, [2])
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
    with pytest.raises(KeyError, match=r"critic names unknown group\(s\) \['boss'\]"):
        GraphComposer(graph, env, num_cells=8, critic={"boss": "group"})
    with pytest.raises(ValueError, match=r"critic \['group'\] gives 1 scope\(s\) but the graph has 2 level\(s\)"):
        GraphComposer(graph, env, num_cells=8, critic=["group"])


def test_loss_class_per_group():
    from torchrl.objectives import ClipPPOLoss, MAPPOLoss

    graph = RNGraph.tree(4, [2])
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8, critic=["group", "local"])
    loss = RNLoss(composer, loss_cls={"agents": MAPPOLoss})
    assert type(loss.group_losses["agents"]) is MAPPOLoss and type(loss.group_losses["level1"]) is ClipPPOLoss
    with pytest.raises(KeyError, match=r"loss_cls names unknown group\(s\) \['boss'\]"):
        RNLoss(composer, loss_cls={"boss": MAPPOLoss})


def test_config_level_critics(tmp_path):
    cfg = TrainConfig(level_critics="group,local")
    assert cfg.critic_setting == ["group", "local"] and cfg.method_name == "rn-tree2-cgroup-local"
    assert TrainConfig().critic_setting == "group"
    with pytest.raises(ValueError, match=r"--level-critics takes one of \('local', 'group'\) per level"):
        TrainConfig(level_critics="group,central")
    with pytest.raises(ValueError, match=r"--level-critics applies only to --algo rn"):
        TrainConfig(algo="ippo", level_critics="group,local")
    cfg = TrainConfig(task="mock", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=1,
                      num_cells=8, manager_cells=8, critic="local", level_critics="group,local",
                      out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    td = trainer.env.reset()
    with torch.no_grad():
        td = trainer.policy(td)
        assert _depends_on_other_vertex(trainer.composer.value_head("agents"), td, "agents")
        assert not _depends_on_other_vertex(trainer.composer.value_head("level1"), td, "level1")


@dataclasses.dataclass(frozen=True)
class _Doubled(VertexReward):
    """A reward kind the library does not know: trained on twice the routed reward."""

    name: ClassVar[str] = "doubled"

    def train_reward(self, own, source):
        return 2 * own


def test_a_new_reward_kind_plugs_in_through_its_hooks():
    graph = RNGraph.tree(2, [2], vertex_reward=_Doubled())
    assert graph.reward("motor_0") == _Doubled() and graph.reward("l1_0") == PsiReward()
    own = torch.tensor([[1.0, 3.0], [-1.0, 1.0]]).view(1, 2, 2, 1)
    obs = {"agents": {"observation": torch.zeros(1, 2, 2, 2)}, "level1": {"observation": torch.zeros(1, 2, 1, 1)}}
    done = torch.ones(1, 2, 1, dtype=torch.bool)  # one-step episodes, V 0: advantage = reward
    data = TensorDict({**obs, "next": {"agents": {**obs["agents"], "reward": own},
                                       "level1": {**obs["level1"], "reward": own.sum(-2, keepdim=True)},
                                       "done": done, "terminated": done.clone()}}, [1, 2])
    critic = _constant_critic({"agents": 0.0, "level1": 0.0})
    out = GraphGAE(graph, gamma=0.5, lmbda=1.0, value_network=critic)(data)
    torch.testing.assert_close(out["agents", "advantage"], 2 * own)
    torch.testing.assert_close(out["level1", "advantage"], own.sum(-2, keepdim=True))
