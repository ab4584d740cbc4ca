"""The direction reward (feudal style, **no task knowledge**): a superior's instruction is a direction in a fixed
random projection of its subordinate motor's observation; the motor is rewarded for moving its projected observation
that way over the superior's decision window (FuN's intrinsic reward, Vezhnevets et al., arXiv 1703.01161).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch.nn import functional as F

from torchrl_rn.keys import KEYS
from torchrl_rn.rewards.base import RewardSource, VertexReward
from torchrl_rn.rewards.goal import GoalSpace, gather_goals

__all__ = ["DirectionReward", "DirectionRewardModule"]


@dataclass(frozen=True)
class DirectionReward(GoalSpace, VertexReward):
    """``r_t = c * [cos(z_{t+1} - z_0, g) - cos(z_t - z_0, g)] + beta * r_own``: a motor rewarded for moving its
    projected observation ``z = P o`` in its superior's direction ``g``.

    **Uses no task knowledge**: ``P`` is a fixed Gaussian ``dim x obs_dim`` matrix drawn from a generator seeded with
    ``seed`` (the same for every run with that seed, whatever the global seed), so no observation entry is named.
    ``z_0`` is the projected observation at the step where the superior made the decision in force (its decision
    window's start); the rewards of a window sum to ``c * cos(z_end - z_0, g)``, the cosine of the whole window's
    change (FuN's intrinsic reward as a per-step difference). With a superior that decides every step it is the
    per-step ``c * cos(z_{t+1} - z_t, g)``. A zero change or a zero direction has cosine 0. ``g`` is read from the
    superior's action as a goal of :class:`~torchrl_rn.rewards.GoalReward` is (a ``dim``-entry block per
    subordinate: the superior's ``action_dim`` must be at least ``n * dim``, or ``dim`` per addressed block); with
    several superiors the direction terms are averaged over them. The env applies it at every step
    (:class:`DirectionRewardModule`), carrying each window's ``z_0`` as a state entry
    ``(group, "goal_origin")``.

    Keyword Args:
        dim (int): the size of the projection and of one direction. Defaults to 4.
        c (float): weight of the direction term. beta (float): weight of the motor's own (task) reward.
        seed (int): the projection's seed. Defaults to 0.

    Examples:
        >>> from torchrl_rn.rewards import parse_reward
        >>> parse_reward("direction:4,beta=0.1")
        DirectionReward(dim=4, c=1.0, beta=0.1, seed=0)
        >>> reward = DirectionReward(dim=2)
        >>> reward.projection(3).shape, bool((reward.projection(3) == DirectionReward(dim=2).projection(3)).all())
        (torch.Size([2, 3]), True)
    """

    dim: int = 4
    c: float = 1.0
    beta: float = 0.0
    seed: int = 0
    name: ClassVar[str] = "direction"
    motors_only: ClassVar[bool] = True
    applied_by_env: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (isinstance(self.dim, int) and 1 <= self.dim <= 4096):
            raise ValueError(f"direction reward: dim must be an int in [1, 4096], got {self.dim!r}.")

    def projection(self, obs_dim: int) -> torch.Tensor:
        """The fixed ``[dim, obs_dim]`` projection ``P`` (standard Gaussian entries from a generator seeded with
        ``seed``)."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn(self.dim, obs_dim, generator=generator)

    def __call__(self, z: torch.Tensor, next_z: torch.Tensor, origin: torch.Tensor, goals: torch.Tensor,
                 mask: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """The reward from the projected observations ``z``/``next_z`` ``[..., n, d]``, window origins and goals
        ``[..., n, S, d]`` (``S`` superiors, padded), ``mask`` ``[n, S]`` (real superiors) and ``own``
        ``[..., n, 1]``; returns ``[..., n, 1]``.

        Examples:
            >>> reward = DirectionReward(dim=2, beta=0.5)
            >>> z, next_z = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 1.0]])
            >>> origin, goal = torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[0.0, 3.0]]])
            >>> mask, own = torch.tensor([[True]]), torch.tensor([[2.0]])
            >>> reward(z, next_z, origin, goal, mask, own)  # cos((2, 1), up) - cos((1, 0), up) + 0.5 * 2
            tensor([[1.4472]])
        """
        after = F.cosine_similarity(next_z.unsqueeze(-2) - origin, goals, dim=-1)  # [..., n, S]
        before = F.cosine_similarity(z.unsqueeze(-2) - origin, goals, dim=-1)
        mask = mask.to(after)
        progress = ((after - before) * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1.0)
        return self.c * progress + self.beta * own

    def env_module(self, graph: Any, group: str) -> DirectionRewardModule:
        return DirectionRewardModule(graph, group, self)

    def train_reward(self, own: torch.Tensor, source: RewardSource) -> torch.Tensor:
        """The env's ``vertex_reward``."""
        return source.env_reward()


class DirectionRewardModule(TensorDictModuleBase):
    """A :class:`DirectionReward` bound to a motors' group: reads a transition, writes ``("next", group,
    "vertex_reward")`` and the window origins ``("next", group, "goal_origin")``.

    Reads ``(group, "observation")``, ``(group, "instruction")`` (the superiors' actions in force, in ``I+`` order),
    ``(group, "goal_origin")`` (``[*B, n, S * dim]``, the origins in force before the step: a state entry
    :class:`~torchrl_rn.LevelEnv` carries, zeros where absent), each superior group's ``window_step`` (a superior
    decides at this step where it is 0 or absent), ``("next", group, "observation")`` and ``("next", group,
    "reward")``. Where a superior decides, the window's origin becomes this step's projected observation.

    Args:
        graph (RNGraph): the agent graph. group (str): the group (the motors'). reward (DirectionReward): the function.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_rn import RNGraph
        >>> graph = RNGraph.tree(2, [2], vertex_reward="direction:1")  # the manager's action: a 1-dim direction each
        >>> module = DirectionRewardModule(graph, "agents", DirectionReward(dim=1))
        >>> p = DirectionReward(dim=1).projection(2)  # motor 0 moves along P, motor 1 against it
        >>> td = TensorDict({"agents": {"observation": torch.zeros(2, 2), "instruction": torch.ones(2, 2)},
        ...     "next": {"agents": {"observation": torch.cat([p, -p]), "reward": torch.zeros(2, 1)}}}, [])
        >>> module(td)["next", "agents", "vertex_reward"].flatten()
        tensor([ 1., -1.])
    """

    def __init__(self, graph, group: str, reward: DirectionReward) -> None:
        super().__init__()
        self.group, self.reward = group, reward
        index, mask = graph.goal_index(group, reward.dim)  # where each direction sits in the instruction
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        # each slot's superior group (padded slots: the first), and the superior groups that decide now and then
        self.superior_groups = list(dict.fromkeys(graph.group_of(s) for v in graph.groups[group]
                                                  for s in graph.superiors(v)))
        slot_group = torch.zeros(mask.shape, dtype=torch.long)
        for i, v in enumerate(graph.groups[group]):
            for k, s in enumerate(graph.superiors(v)):
                slot_group[i, k] = self.superior_groups.index(graph.group_of(s))
        self.register_buffer("slot_group", slot_group, persistent=False)
        self.windowed = [g for g in self.superior_groups if graph.period(g) > 1]
        #: the state entries the env carries for this module: field -> entries per vertex
        self.state = {KEYS.goal_origin: mask.shape[1] * reward.dim}
        self._projection: torch.Tensor | None = None
        self.in_keys = [KEYS.of(group, "observation"), KEYS.of(group, "instruction"), KEYS.of(group, "goal_origin"),
                        *(KEYS.of(g, "window_step") for g in self.windowed), KEYS.next(group, "observation"),
                        KEYS.next(group, "reward")]
        self.out_keys = [KEYS.next(group, "vertex_reward"), KEYS.next(group, "goal_origin")]

    def _project(self, obs: torch.Tensor) -> torch.Tensor:
        p = self._projection
        if p is None or p.shape[1] != obs.shape[-1] or p.device != obs.device or p.dtype != obs.dtype:
            p = self._projection = self.reward.projection(obs.shape[-1]).to(device=obs.device, dtype=obs.dtype)
        return obs @ p.T

    def env_step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase, obs: torch.Tensor,
                 instruction: torch.Tensor) -> None:
        """Writes the step's reward and window origins into ``next_tensordict`` (what :class:`~torchrl_rn.LevelEnv`
        calls), from the step's ``obs`` and ``instruction`` and the rest of ``tensordict``."""
        n, s, d = self.index.shape
        decided = torch.ones(*obs.shape[:-2], len(self.superior_groups), dtype=torch.bool, device=obs.device)
        for g in self.windowed:  # a group's vertices decide together
            window = tensordict.get(KEYS.of(g, "window_step"), None)
            if window is not None:
                decided[..., self.superior_groups.index(g)] = window[..., 0, 0] == 0
        decided = decided[..., self.slot_group.to(obs.device)]  # [*B, n, S]
        origin = tensordict.get(KEYS.of(self.group, "goal_origin"), None)
        z = self._project(obs)
        if origin is None:
            origin = obs.new_zeros(*obs.shape[:-1], s * d)
        origin = torch.where(decided.unsqueeze(-1), z.unsqueeze(-2), origin.reshape(*obs.shape[:-1], s, d))
        goals = gather_goals(instruction, self.index)
        next_obs = next_tensordict.get(KEYS.of(self.group, "observation"))
        own = next_tensordict.get(KEYS.of(self.group, "reward"))
        reward = self.reward(z, self._project(next_obs), origin, goals, self.mask.to(obs.device), own)
        next_tensordict.set(KEYS.of(self.group, "vertex_reward"), reward)
        next_tensordict.set(KEYS.of(self.group, "goal_origin"), origin.reshape(*obs.shape[:-1], s * d))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.env_step(tensordict, tensordict.get("next"), tensordict.get(self.in_keys[0]),
                      tensordict.get(self.in_keys[1]))
        return tensordict
