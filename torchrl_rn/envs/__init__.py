"""The environment side of a Reinforcement Network: :class:`LevelEnv` (the graph transform), :class:`LevelView`
(TAG's view of one level), task factories (:mod:`~torchrl_rn.envs.tasks`: :func:`make_env`) and test envs
(:mod:`~torchrl_rn.envs.mock`)."""
from __future__ import annotations

from torchrl_rn.envs.level_env import LevelEnv
from torchrl_rn.envs.mock import MockMultiAgentEnv, SingleAgentGroup
from torchrl_rn.envs.tag_view import LevelView
from torchrl_rn.envs.tasks import DEFAULT_N_AGENTS, PETTINGZOO_FAMILIES, make_env, pettingzoo_tasks, vmas_scenarios
from torchrl_rn.keys import ENV_GROUP

__all__ = ["LevelEnv", "LevelView", "make_env", "MockMultiAgentEnv", "SingleAgentGroup", "DEFAULT_N_AGENTS",
           "ENV_GROUP", "vmas_scenarios", "pettingzoo_tasks", "PETTINGZOO_FAMILIES"]
