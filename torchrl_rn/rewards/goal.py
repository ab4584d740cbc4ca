"""The goal reward (feudal style, **uses task knowledge**): a superior's instruction is a goal in a slice of its
subordinate motor's observation; the env writes the motor's reward for approaching it, the estimator trains on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from torchrl_rn.keys import KEYS
from torchrl_rn.rewards.base import RewardSource, VertexReward, _spread

__all__ = ["GoalReward", "GoalRewardModule", "GoalSpace", "GOAL_SLICES", "check_goal_room", "gather_goals"]

#: Named observation slices a goal can live in (task knowledge): ``pos`` is an agent's own ``(x, y)`` position, the
#: first two entries of the agent observations of VMAS's balance, navigation and mpe/simple_spread scenarios.
GOAL_SLICES = {"pos": (0, 2)}


class GoalSpace:
    """The hooks every reward whose superior's instruction holds a ``dim``-entry goal per subordinate motor shares
    (:class:`GoalReward`, :class:`~torchrl_rn.rewards.DirectionReward`): where it may sit, the room it needs, and
    that the estimator trains on the env's ``vertex_reward``."""

    name: ClassVar[str]
    dim: int

    def check(self, graph: Any, vertex: Any) -> None:
        """A goal is a motor's, and each superior's action must hold one per subordinate."""
        check_goal_room(graph, vertex, self.dim, self.name)

    def superior_action_dim(self, n_subordinates: int) -> int:
        return self.dim * n_subordinates

    def train_keys(self, group: str) -> list:
        return [KEYS.next(group, "vertex_reward")]


@dataclass(frozen=True)
class GoalReward(GoalSpace, VertexReward):
    """``r = c * (d_prev - d_now) + beta * r_own``: a motor rewarded for approaching its superiors' goal.

    **Uses task knowledge** (which slice of the observation a goal lives in). A superior with ``n`` subordinates
    gives each its own goal: subordinate ``j`` (its ``j``-th in :meth:`~torchrl_rn.RNGraph.subordinates` order)
    reads entries ``[j * d, (j + 1) * d)`` of the superior's action (``d = stop - start``; the superior's
    ``action_dim`` must be at least ``n * d``), scaled by ``scale``; under an ``instruct="addressed"`` superior it
    reads the first ``d`` entries of its own block. The distance is the Euclidean one between the
    slice ``obs[start:stop]`` and the goal, before (``d_prev``, the step's observation) and after (``d_now``, the
    next observation) the step, under the goal in force during the step; with several superiors the distance terms
    are averaged over them.

    With ``normalize``, :class:`~torchrl_rn.GraphGAE` trains on ``c * P / std(P) * std(r_own) + beta * r_own``
    instead, the progress term ``P = d_prev - d_now`` **rescaled to the spread of the vertex's own rewards** in the
    batch (standard deviations over the group's steps in the batch, one of zero counting as 1), as
    :class:`SuperiorAdvantage` does. Why: a motor moves a few hundredths of a unit per step, so ``P`` is tiny next to
    a task reward such as spread's (about -7 per agent and step), and ``beta`` then decides alone what the motor
    learns; scaled, ``c`` and ``beta`` weigh two terms of like spread. The ``vertex_reward`` entry
    :class:`~torchrl_rn.LevelEnv` writes stays unscaled (``c * P + beta * r_own``): the scale is a property of a
    batch, applied where the batch is.

    Keyword Args:
        start, stop (int): the observation slice ``[start, stop)``.
        c (float): weight of the progress term. beta (float): weight of the vertex's own (task) reward.
        scale (float): goal = ``scale * action`` (actions are in ``[-1, 1]``).
        normalize (bool): rescale the progress term to the batch spread of the vertex's own rewards (in
            :class:`~torchrl_rn.GraphGAE`). Defaults to ``False``.

    Examples:
        >>> from torchrl_rn.rewards import parse_reward
        >>> parse_reward("goal:pos,beta=0.1")
        GoalReward(start=0, stop=2, c=1.0, beta=0.1, scale=1.0, normalize=False)
        >>> str(parse_reward("goal:pos,beta=0.5,normalize=true"))
        'goal:0-2,c=1.0,beta=0.5,scale=1.0,normalize=true'
    """

    start: int = 0
    stop: int = 2
    c: float = 1.0
    beta: float = 0.0
    scale: float = 1.0
    normalize: bool = False
    name: ClassVar[str] = "goal"
    motors_only: ClassVar[bool] = True
    applied_by_env: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.stop, int) and 0 <= self.start < self.stop):
            raise ValueError(f"goal reward: the observation slice must be 0 <= start < stop, got "
                             f"{self.start}-{self.stop}.")

    def __str__(self) -> str:
        text = f"goal:{self.start}-{self.stop},c={self.c},beta={self.beta},scale={self.scale}"
        return text + ",normalize=true" if self.normalize else text  # unchanged for the runs made before the option

    @property
    def dim(self) -> int:
        """Size of one goal."""
        return self.stop - self.start

    def __call__(self, obs: torch.Tensor, next_obs: torch.Tensor, goals: torch.Tensor, mask: torch.Tensor,
                 own: torch.Tensor) -> torch.Tensor:
        """The reward from ``obs``/``next_obs`` ``[..., n, o]``, goals ``[..., n, S, d]`` (``S`` superiors, padded),
        ``mask`` ``[n, S]`` (real superiors) and ``own`` ``[..., n, 1]``; returns ``[..., n, 1]``."""
        goals = self.scale * goals
        here = obs[..., self.start:self.stop].unsqueeze(-2)
        there = next_obs[..., self.start:self.stop].unsqueeze(-2)
        progress = (here - goals).norm(dim=-1) - (there - goals).norm(dim=-1)  # [..., n, S]
        mask = mask.to(progress)
        progress = (progress * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1.0)
        return self.c * progress + self.beta * own

    def rescaled(self, shaped: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """A batch's reward with ``normalize``: ``shaped`` (this function's ``c * P + beta * r_own`` over the
        batch) with its progress term rescaled to the spread of ``own`` (the batch's own rewards, same shape).

        Examples:
            >>> goal = GoalReward(0, 2, c=2.0, beta=0.5, normalize=True)
            >>> own = torch.tensor([1.0, 3.0, -1.0, 1.0])  # spread 1.633
            >>> progress = torch.tensor([0.05, -0.05, 0.15, 0.05])  # spread 0.0816: scaled by 20
            >>> goal.rescaled(goal.c * progress + goal.beta * own, own)
            tensor([ 2.5000, -0.5000,  5.5000,  2.5000])
        """
        if not self.normalize or self.c == 0:  # no progress term to rescale
            return shaped
        progress = (shaped - self.beta * own) / self.c  # P
        return self.c * progress / _spread(progress) * _spread(own) + self.beta * own

    @classmethod
    def _leading_args(cls, args: list[str], text: str) -> dict[str, Any]:
        if not args or "=" in args[0]:
            raise ValueError(f"vertex reward {text!r}: a goal needs its observation slice first, e.g. goal:0-2 or "
                             f"goal:pos (named slices: {sorted(GOAL_SLICES)}).")
        start, stop = _slice(args.pop(0), text)
        return {"start": start, "stop": stop}

    def check_observation(self, group: str, size: int) -> None:
        if self.stop > size:
            raise ValueError(f"group {group!r}: goal reward {str(self)!r} reads observation entries "
                             f"{self.start}-{self.stop}, but the observation has {size}.")

    def env_module(self, graph: Any, group: str) -> GoalRewardModule:
        return GoalRewardModule(graph, group, self)

    def train_reward(self, own: torch.Tensor, source: RewardSource) -> torch.Tensor:
        """The env's ``c * P + beta * own``, its progress term rescaled with ``normalize`` (:meth:`rescaled`)."""
        return self.rescaled(source.env_reward(), own)


def check_goal_room(graph: Any, vertex: Any, dim: int, kind: str) -> None:
    """Raises ``ValueError`` (naming the vertex) unless ``vertex`` is a motor and each of its superiors' actions
    holds a ``dim``-entry goal per subordinate (one per addressed block); ``kind`` names the reward in the message."""
    v = vertex
    if graph.level(v) != 0:
        raise ValueError(f"vertex {v!r}: a {kind} reward applies to motors only (its goal lives in the env's "
                         f"observation), but {v!r} is at level {graph.level(v)}.")
    for s in graph.superiors(v):
        n, have = len(graph.subordinates(s)), graph.group_action_dim(graph.group_of(s))
        if graph.attr(s, "instruct") == "addressed":
            slots = graph._slots(graph.group_of(s))
            if have // slots < dim:
                raise ValueError(
                    f"vertex {s!r}: its addressed blocks of {have // slots} entries (action_dim {have} / "
                    f"{slots} subordinates) cannot hold a {dim}-dim goal ({kind} reward of {v!r}); set its "
                    f"action_dim >= {dim * slots}."
                )
            continue
        if have < dim * n:
            raise ValueError(
                f"vertex {s!r}: its action_dim {have} cannot hold a {dim}-dim goal for each of its {n} "
                f"subordinates ({kind} reward of {v!r}); set its action_dim >= {dim * n}."
            )


def gather_goals(instruction: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Each vertex's goal from each superior, ``[..., n, S, d]``, read from its ``instruction`` ``[..., n, o+]`` at
    ``index`` ``[n, S, d]`` (:meth:`~torchrl_rn.RNGraph.goal_index`)."""
    n, s, d = index.shape
    flat = index.to(instruction.device).reshape(n, s * d).expand(*instruction.shape[:-1], s * d)
    return instruction.gather(-1, flat).reshape(*instruction.shape[:-1], s, d)


def _slice(text: str, spec: str) -> tuple[int, int]:
    if text in GOAL_SLICES:
        return GOAL_SLICES[text]
    start, dash, stop = text.partition("-")
    try:
        if not dash:
            raise ValueError(text)
        return int(start), int(stop)
    except ValueError:
        raise ValueError(f"vertex reward {spec!r}: cannot read the observation slice {text!r}; give START-STOP "
                         f"(e.g. 0-2) or one of {sorted(GOAL_SLICES)}.") from None


class GoalRewardModule(TensorDictModuleBase):
    """A :class:`GoalReward` bound to a motors' group: reads a transition, writes ``("next", group,
    "vertex_reward")``.

    Reads ``(group, "observation")``, ``(group, "instruction")`` (the superiors' actions in force, concatenated in
    ``I+`` order, as :class:`~torchrl_rn.GraphComposer`'s policy writes them), ``("next", group, "observation")``
    and ``("next", group, "reward")``. :class:`~torchrl_rn.LevelEnv` applies it at every step; it also runs on
    collected data (e.g. to relabel a batch with another goal reward).

    Args:
        graph (RNGraph): the agent graph. group (str): the group (the motors'). reward (GoalReward): the function.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_rn import RNGraph
        >>> from torchrl_rn.rewards import GoalReward
        >>> graph = RNGraph.tree(2, [2])  # one manager; its action holds motor 0's goal then motor 1's
        >>> module = GoalRewardModule(graph, "agents", GoalReward(0, 2))
        >>> td = TensorDict({"agents": {"observation": torch.zeros(2, 3), "instruction": torch.tensor(
        ...     [[1.0, 0.0, 0.0, 1.0]] * 2)}, "next": {"agents": {"observation": torch.tensor(
        ...     [[0.5, 0.0, 0.0], [0.0, -1.0, 0.0]]), "reward": torch.zeros(2, 1)}}}, [])
        >>> module(td)["next", "agents", "vertex_reward"].flatten()  # (1 - 0.5), (1 - 2)
        tensor([ 0.5000, -1.0000])
    """

    def __init__(self, graph, group: str, reward: GoalReward) -> None:
        super().__init__()
        self.group, self.reward = group, reward
        index, mask = graph.goal_index(group, reward.dim)  # where each goal sits in the instruction
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.in_keys = [KEYS.of(group, "observation"), KEYS.of(group, "instruction"), KEYS.next(group, "observation"),
                        KEYS.next(group, "reward")]
        self.out_keys = [KEYS.next(group, "vertex_reward")]
        #: the state entries the env carries for this module (none)
        self.state: dict[str, int] = {}

    def compute(self, obs: torch.Tensor, instruction: torch.Tensor, next_obs: torch.Tensor,
                own: torch.Tensor) -> torch.Tensor:
        """The reward ``[..., n, 1]`` from the step's tensors (``instruction`` ``[..., n, o+]``)."""
        goals = gather_goals(instruction, self.index)
        return self.reward(obs, next_obs, goals, self.mask.to(obs.device), own)

    def env_step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase, obs: torch.Tensor,
                 instruction: torch.Tensor) -> None:
        """Writes the step's reward into ``next_tensordict`` (what :class:`~torchrl_rn.LevelEnv` calls), from the
        step's ``obs`` and ``instruction``."""
        next_tensordict.set(KEYS.of(self.group, "vertex_reward"), self.compute(
            obs, instruction, next_tensordict.get(KEYS.of(self.group, "observation")),
            next_tensordict.get(KEYS.of(self.group, "reward"))))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set(self.out_keys[0], self.compute(*(tensordict.get(key) for key in self.in_keys)))
        return tensordict
