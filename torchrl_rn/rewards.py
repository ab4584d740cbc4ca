"""Vertex reward functions: the ``R`` of a vertex's tuple, chosen per vertex (graph attribute ``reward``).

Every vertex of an :class:`~torchrl_rn.RNGraph` is trained on a reward. By default it is :class:`PsiReward`: the
env's reward for a motor and ``psi`` of its subordinates' rewards for the vertices above (routed by
:class:`~torchrl_rn.LevelEnv`). Two other functions ship, for vertices that have superiors:

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

A reward is given as an object of these classes or as a short string (:func:`parse_reward`): ``"psi"``,
``"advantage"`` / ``"advantage:0.5"`` / ``"advantage:alpha=0.5,normalize=false"``, ``"goal:0-2"`` /
``"goal:pos,c=1,beta=0.1,scale=1,normalize=true"`` (``pos`` is ``0-2``, the agent's own position in VMAS
scenarios' observations).
The builders and the CLI give one to every vertex that has superiors (``vertex_reward=`` / ``--vertex-reward``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

__all__ = ["VertexReward", "PsiReward", "SuperiorAdvantage", "GoalReward", "GoalRewardModule", "parse_reward",
           "as_reward", "hold_decisions", "superior_weights", "GOAL_SLICES", "REWARD_HELP"]

#: Named observation slices a goal can live in (task knowledge): ``pos`` is an agent's own ``(x, y)`` position, the
#: first two entries of the agent observations of VMAS's balance, navigation and mpe/simple_spread scenarios.
GOAL_SLICES = {"pos": (0, 2)}

REWARD_HELP = ("psi (default: env reward for motors, psi of subordinates' rewards above), advantage[:ALPHA] "
               "(alpha * own reward + (1 - alpha) * the superiors' advantage, per-batch scaled), or "
               "goal:SLICE[,c=C,beta=B,scale=S,normalize=N] (the superior's instruction is a goal in observation "
               "slice SLICE, 'START-STOP' or 'pos' = VMAS's agent position; reward c * (d_prev - d_now) + beta * own "
               "reward, the first term per-batch scaled to the own reward's spread with normalize=true; uses task "
               "knowledge)")


@dataclass(frozen=True)
class VertexReward:
    """Base class of a vertex reward function (frozen: a graph compares its vertices' rewards by value).

    ``stage`` says who applies it: ``"env"`` (:class:`~torchrl_rn.LevelEnv`, from a transition) or ``"estimator"``
    (:class:`~torchrl_rn.GraphGAE`, which needs other vertices' advantages).
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = "env"
    needs_superiors: ClassVar[bool] = True

    def __str__(self) -> str:
        args = ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.name}:{args}" if args else self.name


@dataclass(frozen=True)
class PsiReward(VertexReward):
    """The default: a motor's reward is the env's, a vertex above gets ``psi`` of its subordinates' rewards.

    Examples:
        >>> parse_reward("psi")
        PsiReward()
    """

    name: ClassVar[str] = "psi"
    needs_superiors: ClassVar[bool] = False


@dataclass(frozen=True)
class SuperiorAdvantage(VertexReward):
    """``r = alpha * r_own + (1 - alpha) * A_sup``: the superiors' advantage as the subordinate's reward.

    ``A_sup`` at step ``t`` is, for each superior, the advantage of its decision in force at ``t`` (with a decision
    period: its last decision's, held over its window, and 0 before its first decision in the batch), averaged over
    the vertex's superiors. :class:`~torchrl_rn.GraphGAE` computes the superiors' (unmixed) advantages first, so
    the superiors' advantage is **detached** (no gradient flows into the superiors' critics from a subordinate's
    reward) and, with ``normalize`` (default), **rescaled to the spread of the vertex's own rewards**: divided by
    its standard deviation over the batch (per superior group, over its decision steps; not centred), then
    multiplied by the standard deviation of the subordinate group's own rewards in the batch (left at unit scale
    where those are all alike). Why scaled: a superior's advantage is on the scale of a window of returns and
    drifts as its critic learns, while ``r_own`` is a per-step reward; matching the two spreads makes ``alpha`` the
    weight of two comparable signals through training. (A first version left the term at unit spread, which
    drowns a small per-step reward: on balance, alpha 0.5 then did not learn at all.) Why not centred: the sign is
    the message (a decision better than the superior's critic expected rewards the subordinates that carried it
    out), and GAE's advantages are near zero-mean already.

    Args:
        alpha (float): weight of the vertex's own reward, in ``[0, 1]``; ``1`` is :class:`PsiReward`.
        normalize (bool): rescale ``A_sup`` to the batch spread of the vertex's own rewards. Defaults to ``True``.

    Examples:
        >>> SuperiorAdvantage(0.25)(torch.tensor([1.0]), torch.tensor([2.0]))  # 0.25 * 1 + 0.75 * 2
        tensor([1.7500])
        >>> parse_reward("advantage:alpha=0.5,normalize=false")
        SuperiorAdvantage(alpha=0.5, normalize=False)
    """

    alpha: float = 0.5
    normalize: bool = True
    name: ClassVar[str] = "advantage"
    stage: ClassVar[str] = "estimator"

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"advantage reward: alpha must be in [0, 1], got {self.alpha!r}.")

    def __call__(self, own: torch.Tensor, superior_advantage: torch.Tensor) -> torch.Tensor:
        return self.alpha * own + (1.0 - self.alpha) * superior_advantage


@dataclass(frozen=True)
class GoalReward(VertexReward):
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


def _spread(x: torch.Tensor) -> torch.Tensor:
    """The standard deviation of ``x``'s entries, or 1 where they are all alike (or only one): a scale to divide or
    multiply by."""
    spread = x.std() if x.numel() > 1 else x.new_ones(())
    return torch.where(spread > 1e-6, spread, torch.ones_like(spread))


_CLASSES = {cls.name: cls for cls in (PsiReward, SuperiorAdvantage, GoalReward)}


def parse_reward(text: str) -> VertexReward:
    """A reward function from its string: ``name[:arg,arg,key=value,...]`` (positional args in field order).

    Raises:
        ValueError: an unknown name, argument or value, naming it.

    Examples:
        >>> parse_reward("advantage:0.25")
        SuperiorAdvantage(alpha=0.25, normalize=True)
        >>> parse_reward("goal:2-4,c=2")
        GoalReward(start=2, stop=4, c=2.0, beta=0.0, scale=1.0, normalize=False)
    """
    name, _, rest = str(text).strip().partition(":")
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown vertex reward {text!r}; choose psi, advantage[:ALPHA] or goal:SLICE[,...].")
    fields = [f for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    args = [a.strip() for a in rest.split(",")] if rest.strip() else []
    if cls is GoalReward:
        if not args or "=" in args[0]:
            raise ValueError(f"vertex reward {text!r}: a goal needs its observation slice first, e.g. goal:0-2 or "
                             f"goal:pos (named slices: {sorted(GOAL_SLICES)}).")
        values["start"], values["stop"] = _slice(args.pop(0), text)
        fields = fields[2:]
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if not eq:
            if i >= len(fields) or any("=" in a for a in args[:i]):
                raise ValueError(f"vertex reward {text!r}: unexpected argument {arg!r}.")
            key, value = fields[i].name, arg
        field = next((f for f in dataclasses.fields(cls) if f.name == key.strip()), None)
        if field is None:
            raise ValueError(f"vertex reward {text!r}: unknown argument {key!r}; {cls.name} takes "
                             f"{[f.name for f in dataclasses.fields(cls)]}.")
        values[field.name] = _value(value.strip(), field, text)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"vertex reward {text!r}: {err}") from None


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


def _value(text: str, field: dataclasses.Field, spec: str) -> Any:
    kind = {"alpha": float, "c": float, "beta": float, "scale": float, "normalize": bool}.get(field.name, int)
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"vertex reward {spec!r}: {field.name} must be true or false, got {text!r}.")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"vertex reward {spec!r}: {field.name} must be a number, got {text!r}.") from None


def as_reward(value: Any) -> VertexReward:
    """A :class:`VertexReward` from itself or its string (see :func:`parse_reward`)."""
    if isinstance(value, VertexReward):
        return value
    if isinstance(value, str):
        return parse_reward(value)
    raise ValueError(f"a vertex reward must be a string or a VertexReward, got {type(value).__name__}.")


# ---------------------------------------------------------------------------------------------- estimator helpers
def superior_weights(graph, group: str) -> tuple[list[str], torch.Tensor]:
    """``(superior groups, W)`` with ``A_sup = W @ A_sources`` averaging each of ``group``'s vertices' superiors.

    ``A_sources`` concatenates the listed groups' per-vertex values; row ``i`` weights vertex ``i``'s superiors
    ``1 / len(superiors)`` each.

    Examples:
        >>> from torchrl_rn import RNGraph
        >>> superior_weights(RNGraph.overlapping(4, 2), "agents")[1]
        tensor([[1.0000, 0.0000],
                [1.0000, 0.0000],
                [0.5000, 0.5000],
                [0.0000, 1.0000]])
    """
    members = graph.groups[group]
    order = list(graph.groups)
    sources = sorted({graph.group_of(s) for v in members for s in graph.superiors(v)}, key=order.index)
    start, offset = {}, 0
    for g in sources:
        start[g], offset = offset, offset + len(graph.groups[g])
    w = torch.zeros(len(members), offset)
    for i, v in enumerate(members):
        sups = graph.superiors(v)
        for s in sups:
            g, j = graph.position(s)
            w[i, start[g] + j] += 1.0 / len(sups)
    return sources, w


def hold_decisions(value: torch.Tensor, decided: torch.Tensor, done: torch.Tensor, *, time_dim: int) -> torch.Tensor:
    """Each step's value of the decision in force: ``value`` at the last decision step at or before it, in the same
    episode; 0 where no decision of the episode lies in the data (a batch that starts mid-window).

    ``decided`` and ``done`` broadcast to ``value``; an episode starts after a ``done`` step.

    Examples:
        >>> v = torch.tensor([1.0, 9.0, 2.0, 9.0, 9.0])
        >>> hold_decisions(v, torch.tensor([True, False, True, False, False]),
        ...                torch.tensor([False, False, False, True, False]), time_dim=0)
        tensor([1., 1., 2., 2., 0.])
    """
    time_dim = time_dim % value.ndim
    decided = decided.bool().expand_as(value)
    done = done.bool().expand_as(value)
    steps = value.shape[time_dim]
    starts = torch.zeros_like(done)
    starts.narrow(time_dim, 1, steps - 1).copy_(done.narrow(time_dim, 0, steps - 1))  # the step after a done
    marker = decided | starts
    shape = [1] * value.ndim
    shape[time_dim] = steps
    index = torch.arange(steps, device=value.device).view(shape).expand_as(value)
    last = torch.where(marker, index, torch.full_like(index, -1)).cummax(time_dim).values
    picked = last.clamp_min(0)
    held = value.gather(time_dim, picked)
    valid = (last >= 0) & decided.gather(time_dim, picked)
    return torch.where(valid, held, torch.zeros_like(held))


# ---------------------------------------------------------------------------------------------- goal module
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
        members = graph.groups[group]
        d = reward.dim
        n_sup = max(len(graph.superiors(v)) for v in members)
        index = torch.zeros(len(members), n_sup, d, dtype=torch.long)
        mask = torch.zeros(len(members), n_sup, dtype=torch.bool)
        for i, v in enumerate(members):
            offset = 0
            for k, s in enumerate(graph.superiors(v)):
                a, b = graph.instruction_slice(s, v)
                # a broadcast action holds every subordinate's goal, this one's at its place j; an addressed block
                # is this subordinate's alone and starts with its goal
                j = 0 if graph.attr(s, "instruct") == "addressed" else graph.subordinates(s).index(v)
                index[i, k] = offset + j * d + torch.arange(d)
                mask[i, k] = True
                offset += b - a
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.in_keys = [(group, "observation"), (group, "instruction"), ("next", group, "observation"),
                        ("next", group, "reward")]
        self.out_keys = [("next", group, "vertex_reward")]

    def compute(self, obs: torch.Tensor, instruction: torch.Tensor, next_obs: torch.Tensor,
                own: torch.Tensor) -> torch.Tensor:
        """The reward ``[..., n, 1]`` from the step's tensors (``instruction`` ``[..., n, o+]``)."""
        n, s, d = self.index.shape
        flat = self.index.to(instruction.device).reshape(n, s * d).expand(*instruction.shape[:-1], s * d)
        goals = instruction.gather(-1, flat).reshape(*instruction.shape[:-1], s, d)
        return self.reward(obs, next_obs, goals, self.mask.to(obs.device), own)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        g = self.group
        tensordict.set(self.out_keys[0], self.compute(
            tensordict.get((g, "observation")), tensordict.get((g, "instruction")),
            tensordict.get(("next", g, "observation")), tensordict.get(("next", g, "reward"))))
        return tensordict
