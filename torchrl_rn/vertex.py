"""A vertex group of a Reinforcement Network as TensorDict modules.

Every vertex of a group is evaluated in one batched call (``MultiAgentMLP`` over the group's agent dimension):
the group is the unit of speed. A group owns up to five modules, all reading and writing nested keys
``(group, field)``:

* ``observation_gather``: ``o-`` = its vertices' subordinates' messages, concatenated in ``I-`` order;
* ``encoder``: the message ``phi(o-)`` (``identity`` needs no module: consumers read ``observation``);
* ``instruction_gather``: ``o+`` = its vertices' superiors' actions, concatenated in ``I+`` order;
* ``actor``: ``pi(a | o-, o+)``, a :class:`~torchrl.modules.ProbabilisticActor`;
* ``value_head``: ``V(o-, o+)``;
* ``random_goals`` (a superior of goal-rewarded vertices only): a :class:`RandomGoals` after the actor, inactive
  unless :meth:`~torchrl_rn.GraphComposer.goal_warmup` turns it on;
* ``hold`` (a group with a decision period > 1 only): a :class:`DecisionHold` after the actor;
* ``clock`` (with ``observe_clock`` and superiors with a decision period only): a :class:`SuperiorClock`, an extra
  input of the actor and the value head.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictModuleBase
from torch import nn
from torchrl.data import Bounded, Categorical, OneHot, TensorSpec
from torchrl.modules import MultiAgentMLP, OneHotCategorical, ProbabilisticActor, TanhNormal

from torchrl_rn.graph import RNGraph

__all__ = ["GraphGather", "GatherModule", "DirectModule", "BlockMean", "ConcatMLP", "DecisionHold", "RandomGoals", "SuperiorClock",
           "VertexGroup",
           "actor_head", "message_key"]

NestedKey = tuple[str, str]


class GraphGather(nn.Module):
    """Concatenates per-vertex features of several groups along the DAG's edges, in one ``index_select``.

    The sources (``[*B, n_s, d_s]`` each) are flattened into one bank with a trailing zero slot; ``index``
    (``[n_out * dim_out]``) picks each output feature from the bank (the zero slot pads vertices that have
    fewer inputs than the widest vertex of their group; it is left out where no vertex needs it).

    Args:
        index (torch.Tensor): long tensor of bank positions, ``-1`` for padding.
        n_out (int): vertices in the output group.
        dim_out (int): features per output vertex.

    Keyword Args:
        detach (bool): stop gradients through the gathered features (TAG's decentralised training).

    Examples:
        >>> gather = GraphGather(torch.tensor([0, 1, 2, 3, -1, -1]), 2, 3)
        >>> gather(torch.arange(4.0).view(2, 2))  # one source group of 2 vertices with 2 features
        tensor([[0., 1., 2.],
                [3., 0., 0.]])
    """

    def __init__(self, index: torch.Tensor, n_out: int, dim_out: int, *, detach: bool = False) -> None:
        super().__init__()
        self.register_buffer("index", index.long().clone(), persistent=False)
        self.n_out, self.dim_out, self.detach = n_out, dim_out, detach
        self.padded = bool((index < 0).any())  # without padding, the bank needs no zero slot

    def forward(self, *sources: torch.Tensor) -> torch.Tensor:
        batch = sources[0].shape[:-2]
        flat = [s.reshape(*batch, -1) for s in sources]
        if self.padded:
            flat.append(flat[0].new_zeros(*batch, 1))
        bank = flat[0] if len(flat) == 1 else torch.cat(flat, -1)
        if self.detach:
            bank = bank.detach()
        # -1 indexes the zero slot appended last
        return bank[..., self.index].reshape(*batch, self.n_out, self.dim_out)


class GatherModule(TensorDictModuleBase):
    """A :class:`GraphGather` as a tensordict module: reads the sources at ``in_keys``, writes ``out_key``.

    It does what ``TensorDictModule(gather, in_keys, [out_key])`` does, minus that class's per-output conversion
    (``TensorDict.from_any``, which looks the ``pandas`` package up on every call): the gathers run once per group in
    every policy step and loss evaluation, so that conversion was a visible share of a small graph's step.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = GatherModule(GraphGather(torch.tensor([1, 0]), 1, 2), [("a", "x")], ("b", "y"))
        >>> module(TensorDict({"a": {"x": torch.tensor([[1.0], [2.0]])}}))["b", "y"]
        tensor([[2., 1.]])
    """

    def __init__(self, gather: GraphGather, in_keys: Sequence[NestedKey], out_key: NestedKey) -> None:
        super().__init__()
        self.module = gather
        self.in_keys = list(in_keys)
        self.out_keys = [out_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set(self.out_keys[0], self.module(*(tensordict.get(key) for key in self.in_keys)))
        return tensordict


class DirectModule(TensorDictModule):
    """A :class:`~tensordict.nn.TensorDictModule` that writes its tensor outputs as they are.

    ``TensorDictModule`` passes every output through ``TensorDict.from_any``, which, for a plain tensor, looks the
    ``pandas`` package up on the import path on every call (about a millisecond where it is not installed). Every
    actor head, value head and encoder of a vertex group runs in each policy step and each loss evaluation, so that
    look-up was a visible share of a small graph's step. Outputs that are not tensors are converted as before.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = DirectModule(nn.Linear(2, 1, bias=False), [("a", "x")], [("a", "y")])
        >>> _ = module.module.weight.data.fill_(1.0)
        >>> module(TensorDict({"a": {"x": torch.tensor([[1.0, 2.0]])}}, [1]))["a", "y"]
        tensor([[3.]], grad_fn=<MmBackward0>)
    """

    def _write_to_tensordict(self, tensordict, tensors, tensordict_out=None, out_keys=None):
        if any(not isinstance(t, torch.Tensor) for t in tensors):
            return super()._write_to_tensordict(tensordict, tensors, tensordict_out, out_keys)
        if out_keys is None:
            out_keys = self.out_keys_source
        if len(tensors) != len(out_keys):  # TensorDictModule's own messages
            return super()._write_to_tensordict(tensordict, tensors, tensordict_out, out_keys)
        if tensordict_out is None:
            if self.inplace is True:
                tensordict_out = tensordict
            else:
                tensordict_out = tensordict.empty() if self.inplace == "empty" else TensorDict()
        for key, tensor in zip(out_keys, tensors):
            if key != "_":
                tensordict_out.set(key, tensor)
        return tensordict_out


class BlockMean(nn.Module):
    """``phi = "mean"``: the mean of a vertex's subordinates' messages (zero-padded blocks excluded).

    Examples:
        >>> BlockMean(torch.tensor([2.0, 1.0]), block=2)(torch.tensor([[1.0, 3.0, 3.0, 5.0], [4.0, 4.0, 0.0, 0.0]]))
        tensor([[2., 4.],
                [4., 4.]])
    """

    def __init__(self, counts: torch.Tensor, block: int) -> None:
        super().__init__()
        self.register_buffer("counts", counts.float().clone().unsqueeze(-1), persistent=False)
        self.block = block

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        blocks = obs.unflatten(-1, (-1, self.block))
        return blocks.sum(-2) / self.counts


class ConcatMLP(nn.Module):
    """A :class:`~torchrl.modules.MultiAgentMLP` over the concatenation of its inputs (``o-`` and ``o+``).

    Examples:
        >>> mlp = ConcatMLP(MultiAgentMLP(5, 1, n_agents=2, centralized=False, share_params=True))
        >>> mlp(torch.zeros(3, 2, 4), torch.zeros(3, 2, 1)).shape
        torch.Size([3, 2, 1])
    """

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.mlp(inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1))


class RandomGoals(TensorDictModuleBase):
    """A goal warm-up: while :attr:`active`, a group's action is replaced by a uniform sample of its action space.

    Feudal hierarchies pre-train their workers on random goals before the manager learns to set them (Ahilan and
    Dayan, arXiv 1901.08492). Placed after a superior group's actor and before its :class:`DecisionHold` (so a random
    goal is held over the decision window like a sampled one), it lets goal-rewarded subordinates learn to reach
    goals before their superiors' goals mean anything. The replaced actions are not the group's policy's, so
    :class:`~torchrl_rn.RNLoss` does not train the group while it is active (its loss terms are 0). Inactive (the
    default) it changes nothing and draws no random numbers. ``active`` is a buffer, so it travels with the policy's
    weights to collector workers.

    Args:
        group (str): the group whose action is replaced.
        low, high (tensor): bounds of the group's action space (``[-1, 1]`` for a manager).

    Examples:
        >>> from tensordict import TensorDict
        >>> warmup = RandomGoals("boss", torch.full((2,), -1.0), torch.full((2,), 1.0))
        >>> td = TensorDict({"boss": TensorDict({"action": torch.full((3, 1, 2), 5.0)}, [3, 1])}, [3])
        >>> bool((warmup(td.clone())["boss", "action"] == 5).all())  # inactive: unchanged
        True
        >>> warmup.active.fill_(True)
        tensor(True)
        >>> bool((warmup(td.clone())["boss", "action"].abs() <= 1).all())
        True
    """

    def __init__(self, group: str, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.group = group
        self.in_keys = [(group, "action")]
        self.out_keys = [(group, "action")]
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float), persistent=False)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float), persistent=False)
        self.register_buffer("active", torch.zeros((), dtype=torch.bool), persistent=False)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if bool(self.active):
            key = (self.group, "action")
            action = tensordict.get(key)
            noise = torch.rand(action.shape, dtype=action.dtype, device=action.device)
            tensordict.set(key, self.low.to(action) + (self.high - self.low).to(action) * noise)
        return tensordict


class DecisionHold(TensorDictModuleBase):
    """Holds a group's action between its decisions (a decision period ``k > 1``).

    Placed after the group's actor: where ``(group, "window_step")`` (a state entry of
    :class:`~torchrl_rn.LevelEnv`) is 0 the group decides and its fresh sample is kept; elsewhere its action is
    the ``(group, "held_action")`` in force and its log-probability 0 (a held action is deterministic). Writes
    ``(group, "decided")`` (bool, ``[*B, n, 1]``) and sets ``(group, "held_action")`` to the action in force, the
    state LevelEnv carries to the next step (a state entry reaches the workers of batched envs, where an action of
    a non-motor group does not). Data without a ``window_step`` decide everywhere.

    Args:
        group (str): the group.
        log_prob_key (nested key): where the actor writes its log-probability.

    Examples:
        >>> from tensordict import TensorDict
        >>> hold = DecisionHold("boss", ("boss", "action_log_prob"))
        >>> td = TensorDict({"boss": TensorDict({
        ...     "window_step": torch.tensor([[[0]], [[3]]]), "held_action": torch.full((2, 1, 2), 0.5),
        ...     "action": torch.zeros(2, 1, 2), "action_log_prob": torch.ones(2, 1)}, [2, 1])}, [2])
        >>> out = hold(td)
        >>> out["boss", "action"][:, 0], out["boss", "action_log_prob"][:, 0], out["boss", "decided"].flatten()
        (tensor([[0.0000, 0.0000],
                [0.5000, 0.5000]]), tensor([1., 0.]), tensor([ True, False]))
    """

    def __init__(self, group: str, log_prob_key: NestedKey) -> None:
        super().__init__()
        self.group = group
        self.log_prob_key = log_prob_key
        self.in_keys = [(group, "window_step"), (group, "held_action"), (group, "action"), log_prob_key]
        self.out_keys = [(group, "action"), log_prob_key, (group, "decided"), (group, "held_action")]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        g = self.group
        action = tensordict.get((g, "action"))
        window = tensordict.get((g, "window_step"), None)
        if window is None:
            decided = torch.ones(*tensordict.get(g).batch_size, 1, dtype=torch.bool, device=action.device)
        else:
            decided = window == 0
        tensordict.set((g, "decided"), decided)
        if window is None:
            return tensordict
        held = tensordict.get((g, "held_action"))
        keep = decided[..., 0]  # [*B, n]
        action = torch.where(_expand_right(keep, action), action, held.to(action.dtype))
        tensordict.set((g, "action"), action)
        tensordict.set((g, "held_action"), action.to(held.dtype))
        log_prob = tensordict.get(self.log_prob_key, None)
        if log_prob is not None:
            tensordict.set(self.log_prob_key, torch.where(_expand_right(keep, log_prob), log_prob,
                                                          torch.zeros_like(log_prob)))
        return tensordict


class SuperiorClock(nn.Module):
    """The steps left until each superior group's next decision, as a fraction of its period, for every vertex.

    Reads each superior group's ``window_step`` (``[*B, n_s, 1]``; a group's vertices decide together) and returns
    ``(k - window_step) / k`` per superior group (1 on the step it decides, ``1 / k`` on the last step of its window),
    broadcast over the ``n`` vertices of the subordinate group: ``[*B, n, len(periods)]``.

    Examples:
        >>> clock = SuperiorClock([5], n=2)
        >>> clock(torch.tensor([[[0]], [[4]]]))[..., 0]
        tensor([[1.0000, 1.0000],
                [0.2000, 0.2000]])
    """

    def __init__(self, periods: Sequence[int], n: int) -> None:
        super().__init__()
        self.register_buffer("periods", torch.tensor(list(periods), dtype=torch.float), persistent=False)
        self.n = n

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        steps = torch.cat([w[..., 0, :] for w in windows], -1).to(self.periods)  # [*B, S]
        left = (self.periods - steps) / self.periods
        return left.unsqueeze(-2).expand(*left.shape[:-1], self.n, left.shape[-1])


def _expand_right(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(*mask.shape, *([1] * (like.ndim - mask.ndim)))


def message_key(graph: RNGraph, group: str) -> NestedKey:
    """Where ``group`` keeps its messages: its own observation for ``identity`` (and for a motor's ``mean`` of a
    single input), else ``(group, "message")``."""
    phi = graph.attr(graph.groups[group][0], "phi")
    if phi == "identity" or (phi == "mean" and group == graph.env_group):
        return (group, "observation")
    return (group, "message")


def actor_head(spec: TensorSpec, net: Callable[..., nn.Module], in_keys: Sequence[NestedKey], group: str, *,
               device: torch.device | str | None = None) -> ProbabilisticActor:
    """A group's stochastic policy for its action spec: TanhNormal for ``Bounded``, categorical for discrete specs.

    Shared by :class:`VertexGroup` and the trainer's MAPPO/IPPO baselines, so both handle the same action kinds.

    Args:
        spec (TensorSpec): the group's action spec, ``Bounded``, ``Categorical`` or ``OneHot``.
        net (callable): ``net(n_out, *head_modules) -> nn.Module`` mapping the ``in_keys`` to ``n_out`` features per
            agent, followed by ``head_modules``.
        in_keys (list of keys): the network's inputs.
        group (str): the group; actions are written to ``(group, "action")``.

    Keyword Args:
        device (torch.device, optional): where the distribution's bounds live.

    Examples:
        >>> from torchrl.data import Categorical
        >>> from torchrl.modules import MultiAgentMLP
        >>> def net(n_out, *head):
        ...     return nn.Sequential(MultiAgentMLP(4, n_out, n_agents=2, centralized=False, share_params=True), *head)
        >>> actor = actor_head(Categorical(3, shape=(2,)), net, [("agents", "observation")], "agents")
        >>> actor.out_keys[:2]
        [('agents', 'logits'), ('agents', 'action')]
    """
    if isinstance(spec, Bounded):
        loc_scale = [(group, "loc"), (group, "scale")]
        head = DirectModule(net(2 * spec.shape[-1], NormalParamExtractor()), in_keys, loc_scale)
        return ProbabilisticActor(
            head, in_keys=loc_scale, out_keys=[(group, "action")], distribution_class=TanhNormal,
            distribution_kwargs={"low": spec.space.low.to(device), "high": spec.space.high.to(device)},
            return_log_prob=True,
        )
    if isinstance(spec, (Categorical, OneHot)):
        head = DirectModule(net(spec.space.n), in_keys, [(group, "logits")])
        dist = OneHotCategorical if isinstance(spec, OneHot) else torch.distributions.Categorical
        return ProbabilisticActor(head, in_keys=[(group, "logits")], out_keys=[(group, "action")],
                                  distribution_class=dist, return_log_prob=True)
    raise TypeError(
        f"group {group!r}: unsupported action spec {type(spec).__name__}; use Bounded, Categorical or OneHot."
    )


def _bank_index(graph: RNGraph, group: str, neighbours: dict, sources: Sequence[str],
                sizes: dict[str, int], width: int, *, part: Callable | None = None) -> torch.Tensor:
    """Index of each output feature of ``group`` in the flattened bank of ``sources``; ``part(u, v)`` gives the
    entries ``[a, b)`` of neighbour ``u``'s vector that ``v`` reads (all of them by default)."""
    offsets, offset = {}, 0
    for s in sources:
        offsets[s] = offset
        offset += len(graph.groups[s]) * sizes[s]
    rows = []
    for v in graph.groups[group]:
        row = []
        for u in neighbours[v]:
            g, j = graph.position(u)
            start = offsets[g] + j * sizes[g]
            a, b = part(u, v) if part is not None else (0, sizes[g])
            row.extend(range(start + a, start + b))
        rows.append(row + [-1] * (width - len(row)))
    return torch.tensor(rows, dtype=torch.long).flatten()


class VertexGroup(nn.Module):
    """The modules of one vertex group (see the module docstring).

    Args:
        graph (RNGraph): the agent graph.
        group (str): the group's name.
        dims (dict): :meth:`RNGraph.dims` for the env's observation size.
        action_spec (TensorSpec): the motors' unbatched action spec (``[n_agents, ...]``); unused by other
            groups, whose actions (instructions) are continuous in ``[-1, 1]``.

    Keyword Args:
        num_cells (int): hidden width of the MLPs. depth (int): hidden layers.
        share_params (bool): one set of weights per group (``True``) or per vertex.
        critic (str): ``"local"`` (a vertex values its own ``o-, o+``) or ``"group"`` (a critic centralised over
            the group, MAPPO-style).
        detach_messages (bool): stop gradients from this group's losses into its subordinates' encoders.
        consumed (bool): whether some superior reads this group's messages (an unread learned message is not
            computed).
        observe_clock (bool): its actor and value head also read ``(group, "superior_clock")``, the steps left until
            each superior group with a decision period > 1 decides again (see :class:`SuperiorClock`).
        device: where the parameters live.

    Examples:
        >>> from torchrl.data import Bounded
        >>> graph = RNGraph.tree(2, branching=[2])
        >>> motors = VertexGroup(graph, "agents", graph.dims(3), Bounded(-1, 1, shape=(2, 2)))
        >>> motors.instruction_key, motors.action_key
        (('agents', 'instruction'), ('agents', 'action'))
    """

    def __init__(
        self,
        graph: RNGraph,
        group: str,
        dims: dict[str, dict[str, int]],
        action_spec: TensorSpec | None = None,
        *,
        num_cells: int = 256,
        depth: int = 2,
        share_params: bool = True,
        critic: str = "local",
        detach_messages: bool = False,
        consumed: bool = True,
        observe_clock: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if critic not in ("local", "group"):
            raise ValueError(f"critic must be 'local' or 'group', got {critic!r}.")
        self.group = group
        self.level = graph.group_level(group)
        d = dims[group]
        n = d["n"]
        members = graph.groups[group]
        self.observation_key: NestedKey = (group, "observation")
        self.instruction_key: NestedKey | None = (group, "instruction") if d["instruction"] else None
        self.action_key: NestedKey = (group, "action")
        phi = graph.attr(members[0], "phi")
        self.message_key: NestedKey = message_key(graph, group)

        # o-: gather subordinates' messages (motors observe the env directly)
        self.observation_gather = None
        self.observation_sources: list[str] = []
        if group != graph.env_group:
            subs = {v: graph.subordinates(v) for v in members}
            self.observation_sources = [g for g in graph.groups if any(graph.group_of(s) == g for v in members for s in subs[v])]
            index = _bank_index(graph, group, subs, self.observation_sources,
                                {g: dims[g]["message"] for g in self.observation_sources}, d["observation"])
            self.observation_gather = GatherModule(
                GraphGather(index, n, d["observation"], detach=detach_messages),
                [message_key(graph, g) for g in self.observation_sources], self.observation_key)

        # m = phi(o-)
        self.encoder = None
        if consumed and phi == "mean" and group != graph.env_group:
            counts = torch.tensor([len(graph.subordinates(v)) for v in members])
            self.encoder = DirectModule(BlockMean(counts, d["message"]), [self.observation_key], [self.message_key])
        elif consumed and phi == "learned":
            net = MultiAgentMLP(d["observation"], d["message"], n_agents=n, centralized=False,
                                share_params=share_params, depth=1, num_cells=num_cells, activation_class=nn.Tanh,
                                device=device)
            self.encoder = DirectModule(nn.Sequential(net, nn.Tanh()), [self.observation_key], [self.message_key])

        # o+: gather superiors' actions
        self.instruction_gather = None
        self.instruction_sources: list[str] = []
        if self.instruction_key is not None:
            sups = {v: graph.superiors(v) for v in members}
            self.instruction_sources = [g for g in graph.groups if any(graph.group_of(s) == g for v in members for s in sups[v])]
            index = _bank_index(graph, group, sups, self.instruction_sources,
                                {g: graph.group_action_dim(g) for g in self.instruction_sources}, d["instruction"],
                                part=graph.instruction_slice)
            self.instruction_gather = GatherModule(
                GraphGather(index, n, d["instruction"]),
                [(g, "action") for g in self.instruction_sources], self.instruction_key)

        in_keys = [self.observation_key] + ([self.instruction_key] if self.instruction_key else [])
        n_in = d["observation"] + d["instruction"]
        # the steps left until the superiors' next decisions (superior groups with a period > 1)
        self.clock = None
        clocked = [g for g in self.instruction_sources if graph.period(g) > 1] if observe_clock else []
        if clocked:
            self.clock = DirectModule(SuperiorClock([graph.period(g) for g in clocked], n),
                                          [(g, "window_step") for g in clocked], [(group, "superior_clock")])
            in_keys.append((group, "superior_clock"))
            n_in += len(clocked)

        def mlp(n_out: int, centralized: bool, *head: nn.Module) -> ConcatMLP:
            net = MultiAgentMLP(n_in, n_out, n_agents=n, centralized=centralized, share_params=share_params,
                                depth=depth, num_cells=num_cells, activation_class=nn.Tanh, device=device)
            return ConcatMLP(nn.Sequential(net, *head) if head else net)

        # pi(a | o-, o+)
        if group == graph.env_group:
            if action_spec is None:
                raise ValueError("the motors' group needs the env's action spec.")
            spec = action_spec
        else:
            spec = Bounded(-1.0, 1.0, shape=(n, graph.group_action_dim(group)), device=device)
        self.action_spec = spec
        self.actor = actor_head(spec, lambda n_out, *head: mlp(n_out, False, *head), in_keys, group, device=device)
        # a goal warm-up (GraphComposer.goal_warmup): superiors of goal-rewarded groups can give random goals
        self.random_goals = None
        if any(graph.group_of(s) == group for g in graph.goal_rewards for v in graph.groups[g]
               for s in graph.superiors(v)):
            self.random_goals = RandomGoals(group, spec.space.low, spec.space.high)
        # a decision period k > 1: the actor's sample is kept only where the group decides
        self.period = graph.period(group)
        self.hold = None
        if self.period > 1:
            log_prob_key = next(k for k in self.actor.out_keys if _tuple_key(k)[-1].endswith("log_prob"))
            self.hold = DecisionHold(group, log_prob_key)
        # V(o-, o+)
        self.value_head = DirectModule(mlp(1, critic == "group"), in_keys, [(group, "state_value")])


def _tuple_key(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)
