"""Vertex reward functions: the ``R`` of a vertex's tuple, chosen per vertex (graph attribute ``reward``).

Every vertex of an :class:`~torchrl_rn.RNGraph` is trained on a reward. By default it is :class:`PsiReward`: the
env's reward for a motor and ``psi`` of its subordinates' rewards for the vertices above (routed by
:class:`~torchrl_rn.LevelEnv`). Three other functions ship, for vertices that have superiors:

* :class:`SuperiorAdvantage` (HAVEN / HiMPo style, needs no task knowledge): ``r = alpha * r_own + (1 - alpha) *
  A_sup``, with ``A_sup`` the advantage of the superiors' decisions in force at that step, averaged over the
  vertex's superiors. It needs the superiors' advantages, so :class:`~torchrl_rn.GraphGAE` applies it, top-down,
  just before the vertex's own GAE.
* :class:`GoalReward` (feudal style, **uses task knowledge**: which part of the observation a goal lives in): a
  superior's instruction is a goal in a slice of its subordinate motor's observation, and the motor is rewarded
  for closing the distance, ``r = c * (d_prev - d_now) + beta * r_own``. It is a function of the motor's own
  transition, so :class:`~torchrl_rn.LevelEnv` applies it (through :class:`GoalRewardModule`) at every env step
  and writes it as ``("next", group, "vertex_reward")``: the group's ``reward`` entry keeps the task's reward (what
  evaluation and ``psi`` routing read), ``vertex_reward`` is what :class:`~torchrl_rn.GraphGAE` trains on (with
  ``normalize``, its progress term rescaled per batch to the spread of the motor's own rewards).

* :class:`DirectionReward` (feudal style, needs no task knowledge): a superior's instruction is a direction in a
  fixed random projection ``z = P o`` of the motor's observation, and the motor is rewarded for moving ``z`` that way
  over the superior's decision window (FuN's intrinsic reward). The env applies it as it applies a goal
  (:class:`DirectionRewardModule`), carrying each window's start as a state entry.

A reward is given as an object of these classes or as a short string (:func:`parse_reward`): ``"psi"``,
``"advantage"`` / ``"advantage:0.5"`` / ``"advantage:alpha=0.5,normalize=false"``, ``"goal:0-2"`` /
``"goal:pos,c=1,beta=0.1,scale=1,normalize=true"`` (``pos`` is ``0-2``, the agent's own position in VMAS
scenarios' observations), ``"direction"`` / ``"direction:4,beta=0.1,seed=0"``.
The builders and the CLI give one to every vertex that has superiors (``vertex_reward=`` / ``--vertex-reward``).
"""
from __future__ import annotations

from torchrl_rn.rewards.base import RewardSource, VertexReward
from torchrl_rn.rewards.direction import DirectionReward, DirectionRewardModule
from torchrl_rn.rewards.goal import GOAL_SLICES, GoalReward, GoalRewardModule
from torchrl_rn.rewards.parse import REWARD_HELP, as_reward, parse_reward
from torchrl_rn.rewards.psi import PsiReward
from torchrl_rn.rewards.superior_advantage import SuperiorAdvantage

__all__ = ["VertexReward", "RewardSource", "PsiReward", "SuperiorAdvantage", "GoalReward", "GoalRewardModule",
           "DirectionReward", "DirectionRewardModule", "parse_reward", "as_reward", "GOAL_SLICES", "REWARD_HELP"]
