"""A vertex group of a Reinforcement Network as TensorDict modules.

Every vertex of a group is evaluated in one batched call (``MultiAgentMLP`` over the group's agent dimension):
the group is the unit of speed. A group owns up to five modules (see :mod:`~torchrl_rn.modules.gather`,
:mod:`~torchrl_rn.modules.heads` and :mod:`~torchrl_rn.modules.decisions`), all reading and writing nested keys
``(group, field)``:

* ``observation_gather``: ``o-`` = its vertices' subordinates' messages, concatenated in ``I-`` order;
* ``encoder``: the message ``phi(o-)`` (``identity`` needs no module: consumers read ``observation``);
* ``instruction_gather``: ``o+`` = its vertices' superiors' actions, concatenated in ``I+`` order;
* ``actor``: ``pi(a | o-, o+)``, a :class:`~torchrl.modules.ProbabilisticActor` (a group that learns by
  ``gradient`` acts with the tanh of its mean instead, ``deterministic``);
* ``value_head``: ``V(o-, o+)``;
* ``random_goals`` (a superior of goal-rewarded vertices only): a :class:`RandomGoals` after the actor, inactive
  unless :meth:`~torchrl_rn.GraphComposer.goal_warmup` turns it on;
* ``hold`` (a group with a decision period > 1 only): a :class:`DecisionHold` after the actor;
* ``clock`` (with ``observe_clock`` and superiors with a decision period only): a :class:`SuperiorClock`, an extra
  input of the actor and the value head.
"""
from __future__ import annotations

import torch
from torch import nn
from torchrl.data import Bounded, TensorSpec
from torchrl.modules import MultiAgentMLP, ValueNorm

from torchrl_rn.graph import GroupLayout, RNGraph
from torchrl_rn.keys import KEYS, NestedKey, _tuple_key
from torchrl_rn.modules.decisions import DecisionHold, RandomGoals, SuperiorClock
from torchrl_rn.modules.gather import BlockMean, GatherModule, GraphGather
from torchrl_rn.modules.heads import ConcatMLP, DirectModule, actor_head
from torchrl_rn.value_norm import Denormalize

__all__ = ["VertexGroup", "message_key"]


def message_key(graph: RNGraph, group: str) -> NestedKey:
    """Where ``group`` keeps its messages: its own observation for ``identity`` (and for a motor's ``mean`` of a
    single input), else ``(group, "message")``."""
    phi = graph.attr(graph.groups[group][0], "phi")
    if phi == "identity" or (phi == "mean" and group == graph.env_group):
        return KEYS.of(group, "observation")
    return KEYS.of(group, "message")


class VertexGroup(nn.Module):
    """The modules of one vertex group (see the module docstring).

    Args:
        graph (RNGraph): the agent graph.
        group (str): the group's name.
        layout (GroupLayout): :meth:`RNGraph.layout` for the env's observation size.
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
        value_norm (ValueNorm, optional): the value head predicts *normalised* values, mapped back to the return
            scale by :class:`~torchrl_rn.value_norm.Denormalize` with this normaliser (kept as ``value_norm``, for
            the loss to update). Defaults to ``None`` (values on the return scale).
        device: where the parameters live.

    Examples:
        >>> from torchrl.data import Bounded
        >>> graph = RNGraph.tree(2, branching=[2])
        >>> motors = VertexGroup(graph, "agents", graph.layout(3), Bounded(-1, 1, shape=(2, 2)))
        >>> motors.instruction_key, motors.action_key
        (('agents', 'instruction'), ('agents', 'action'))
    """

    def __init__(
        self,
        graph: RNGraph,
        group: str,
        layout: GroupLayout,
        action_spec: TensorSpec | None = None,
        *,
        num_cells: int = 256,
        depth: int = 2,
        share_params: bool = True,
        critic: str = "local",
        detach_messages: bool = False,
        consumed: bool = True,
        observe_clock: bool = False,
        value_norm: ValueNorm | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if critic not in ("local", "group"):
            raise ValueError(f"critic must be 'local' or 'group', got {critic!r}.")
        self.group = group
        self.level = graph.group_level(group)
        d = layout.dims[group]
        n = d.n
        members = graph.groups[group]
        self.observation_key: NestedKey = KEYS.of(group, "observation")
        self.instruction_key: NestedKey | None = KEYS.of(group, "instruction") if d.instruction else None
        self.action_key: NestedKey = KEYS.of(group, "action")
        phi = graph.attr(members[0], "phi")
        self.message_key: NestedKey = message_key(graph, group)

        # o-: gather subordinates' messages (motors observe the env directly)
        self.observation_gather = None
        self.observation_sources: list[str] = []
        if group != graph.env_group:
            self.observation_sources, index = layout.observation_index(group)
            self.observation_gather = GatherModule(
                GraphGather(index, n, d.observation, detach=detach_messages),
                [message_key(graph, g) for g in self.observation_sources], self.observation_key)

        # m = phi(o-)
        self.encoder = None
        if consumed and phi == "mean" and group != graph.env_group:
            counts = torch.tensor([len(graph.subordinates(v)) for v in members])
            self.encoder = DirectModule(BlockMean(counts, d.message), [self.observation_key], [self.message_key])
        elif consumed and phi == "learned":
            net = MultiAgentMLP(d.observation, d.message, n_agents=n, centralized=False,
                                share_params=share_params, depth=1, num_cells=num_cells, activation_class=nn.Tanh,
                                device=device)
            self.encoder = DirectModule(nn.Sequential(net, nn.Tanh()), [self.observation_key], [self.message_key])

        # o+: gather superiors' actions
        self.instruction_gather = None
        self.instruction_sources: list[str] = []
        if self.instruction_key is not None:
            self.instruction_sources, index = layout.instruction_index(group)
            self.instruction_gather = GatherModule(
                GraphGather(index, n, d.instruction),
                [KEYS.of(g, "action") for g in self.instruction_sources], self.instruction_key)

        in_keys = [self.observation_key] + ([self.instruction_key] if self.instruction_key else [])
        n_in = d.observation + d.instruction
        # the steps left until the superiors' next decisions (superior groups with a period > 1)
        self.clock = None
        clocked = [g for g in self.instruction_sources if graph.period(g) > 1] if observe_clock else []
        if clocked:
            clock_key = KEYS.of(group, "superior_clock")
            self.clock = DirectModule(SuperiorClock([graph.period(g) for g in clocked], n),
                                      [KEYS.of(g, "window_step") for g in clocked], [clock_key])
            in_keys.append(clock_key)
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
        # learn="gradient": the action is the actor's tanh-squashed mean, not a sample; the subordinates' losses
        # train it through their instructions (RNLoss recomputes it with gradients, GraphComposer.end_to_end)
        self.deterministic = None
        if graph.learns_by_gradient(group):
            self.deterministic = DirectModule(nn.Tanh(), [KEYS.of(group, "loc")], [self.action_key])
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
        # V(o-, o+), on the return scale (a normalised network's output mapped back with value_norm)
        value_net = mlp(1, critic == "group")
        self.value_head = DirectModule(value_net, in_keys, [KEYS.of(group, "state_value")])
        self.value_norm = value_norm
        if value_norm is not None:
            self.value_head.module = Denormalize(value_net, value_norm)

    @property
    def acting(self) -> list[nn.Module]:
        """The modules that give the group's action in the policy: its actor, or (``learn="gradient"``) the
        actor's network and the tanh of its mean."""
        return [self.actor] if self.deterministic is None else [self.actor.module[0], self.deterministic]
