"""``GraphGAE``: the graph-aware advantage estimator of a Reinforcement Network.

Per-vertex GAE from per-vertex rewards, values and dones, then mixed along the DAG so that a vertex's advantage
also credits the vertices it collaborates with::

    A_i <- (1 - beta) * A_i + beta * mean_{j in N(i)} A_j

``beta = 0`` is TorchRL's GAE for every vertex. The critics' targets stay the unmixed returns ``A_i + V_i``: mixing
changes what each policy is credited with, not what each critic predicts.

A group with a decision period ``k > 1`` (:meth:`RNGraph.period`) is credited as a semi-Markov decision process: its
decision at step ``t`` (``(g, "decided")``, written by the composed policy) is one transition whose reward is the
discounted sum of the group's per-step rewards over its window (until its next decision, the episode's end or the
batch's end), discounted by ``gamma ** m`` for the ``m`` steps the window took (``k``, or fewer when the episode ended
mid-window), bootstrapped from the value at its next decision (from the next state's value when the episode was
truncated or the batch ends, not at all on termination), and chained with ``lmbda`` from one decision to the next::

    A_t = R_t + gamma**m * (1 - terminated) * V(s_{t+m}) - V(s_t) + gamma**m * lmbda * (1 - done) * A_{t+m}

(``V(s_{t+m})`` is the next-state value of the window's last step, which the critic gives on its ``"next"`` data;
``A_{t+m}``, the next decision's advantage, is 0 after the batch's last step.)

Steps where it did not decide get advantage 0 and value target = value; :class:`~torchrl_rn.RNLoss` leaves them out
of the group's loss (a stock TorchRL loss should be given the decision rows only,
``data[data[g, "decided"][..., 0, 0]]``, or its means count the held steps). With
``beta > 0`` the mixing runs step by step as before: a held step contributes its 0 to its neighbours' mix, and a
decision step's advantage mixes in the neighbours' advantages of that step. A window cut by the batch's end is
bootstrapped from the critic's value of the next, mid-window, state: an approximation of the value at the next
decision (the critic is trained on decision states only).

**Vertex rewards** (:mod:`torchrl_rn.rewards`, :meth:`RNGraph.reward`). Groups are estimated top-down (superiors
before subordinates). A group whose reward is :class:`~torchrl_rn.rewards.SuperiorAdvantage` is trained on
``alpha * r_own + (1 - alpha) * A_sup``: ``A_sup`` is each superior's own (unmixed) advantage of the decision in
force at that step (held over a decision period's window), detached, rescaled to the batch spread of the group's
own rewards (see that class), and averaged over the vertex's superiors. A group whose reward is a
:class:`~torchrl_rn.rewards.GoalReward` is trained on ``("next", g, "vertex_reward")``, which
:class:`~torchrl_rn.LevelEnv` writes. The data's ``reward`` entries are never rewritten: calling the estimator twice
gives the same result, and the task's reward stays what evaluation reads.
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from tensordict import TensorDictBase, unravel_key
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives import LossModule
from torchrl.objectives.value import ValueEstimatorBase
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from torchrl_rn.graph import RNGraph, superior_weights
from torchrl_rn.graph.validate import check_group_sizes
from torchrl_rn.keys import KEYS, _tuple_key, group_signal
from torchrl_rn.periods import decided as decided_steps
from torchrl_rn.periods import hold_decisions, semi_markov_gae
from torchrl_rn.rewards import VertexReward
from torchrl_rn.rewards.base import _spread

__all__ = ["GraphGAE"]

#: the keys a TorchRL loss forwards to its estimator that name where GraphGAE writes its results
_OUTPUTS = ("advantage", "value_target")


class GraphGAE(ValueEstimatorBase):
    """Per-vertex GAE mixed along the agent graph.

    Reads, for every group ``g`` of the graph, ``("next", g, "reward")`` and ``("next", g, "done" | "terminated")``,
    and writes ``(g, "state_value")``, ``(g, "advantage")`` and ``(g, "value_target")``. A signal a group lacks is
    taken from the root (the team ``done`` VMAS writes, or a team ``reward``) and broadcast over the group's vertices,
    as TorchRL's :class:`~torchrl.objectives.value.MultiAgentGAE` does; a group's own flags pass through unchanged.
    The graph critic runs once per call, on the step and its ``"next"`` data stacked together.

    **Keys.** The estimator's ``tensor_keys`` are *field names* inside every group: ``set_keys(advantage="adv")``
    writes ``(g, "adv")`` for every ``g``, and a nested key ``(g, "adv")`` sets the same field. Given to a stock
    TorchRL loss through ``gae.bind(loss)`` (``ClipPPOLoss``, ``MAPPOLoss``, ``IPPOLoss``, keyed as
    TorchRL's multi-agent PPO tutorial keys them: ``value=(group, "state_value")``, ``reward=(group, "reward")``,
    ...), GraphGAE takes the loss's keys: the group is the one the loss's ``value`` key names, and the loss's
    ``advantage``/``value_target`` keys, when they are not that group's own fields (TorchRL's default
    ``"advantage"`` at the root), receive a copy of that group's results. A loss whose keys name no group of the
    graph is refused there, at :meth:`bind`, with the key to set.

    Args:
        graph (RNGraph): the agent graph.

    Keyword Args:
        gamma (float): discount. lmbda (float): GAE lambda.
        value_network (TensorDictModule): the graph critic, e.g. :attr:`GraphComposer.critic`; it must write
            every group's ``state_value`` from a step's data and from its ``"next"`` data.
        beta (float): mixing weight in ``[0, 1]``; ``0`` (default) is plain per-vertex GAE.
        neighbourhood (str or Tensor): ``"both"`` (superiors and subordinates, default), ``"up"``, ``"down"``, or an
            ``[N, N]`` weight matrix in :attr:`RNGraph.vertex_order` whose row ``i`` weights ``A_j`` in ``i``'s mix
            (rows are used as given; a zero row leaves that vertex unmixed).
        differentiable (bool): keep gradients through the value network. Defaults to ``False``.
        device: where the mixing matrix lives.

    The ``params``/``target_params`` that TorchRL losses pass are ignored: values come from ``value_network``
    itself (a per-group loss only holds its own group's value head, not the graph critic).

    Examples:
        >>> import torch
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, GraphGAE, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=16)
        >>> data = env.rollout(5, composer.policy)
        >>> gae = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic, beta=0.5)
        >>> gae(data)["level1", "advantage"].shape
        torch.Size([2, 5, 2, 1])
    """

    def __init__(
        self,
        graph: RNGraph,
        *,
        gamma: float,
        lmbda: float,
        value_network: TensorDictModuleBase,
        beta: float = 0.0,
        neighbourhood: str | torch.Tensor = "both",
        differentiable: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(value_network=value_network, differentiable=differentiable, device=device)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}.")
        for name, value in (("gamma", gamma), ("lmbda", lmbda)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"GraphGAE: {name} must be a number in [0, 1], got {value!r}.")
        self.graph = graph
        self.gamma, self.lmbda, self.beta = gamma, lmbda, beta
        n = len(graph.vertex_order)
        if isinstance(neighbourhood, torch.Tensor):
            if neighbourhood.shape != (n, n):
                raise ValueError(f"neighbourhood matrix must be [{n}, {n}] (graph.vertex_order), got "
                                 f"{tuple(neighbourhood.shape)}.")
            weights = neighbourhood.float()
        else:
            adj = graph.adjacency(neighbourhood)
            weights = adj / adj.sum(-1, keepdim=True).clamp_min(1.0)
        isolated = weights.sum(-1) == 0
        mixing = (1 - beta) * torch.eye(n) + beta * weights
        mixing[isolated] = torch.eye(n)[isolated]  # nobody to collaborate with: keep A_i
        self.register_buffer("mixing", mixing.to(device) if device is not None else mixing)
        self._sizes = [len(vs) for vs in graph.groups.values()]
        #: the reward function of each group that is not plain psi routing (its own train_reward)
        self.vertex_rewards: dict[str, VertexReward] = {
            g: r for g in graph.groups
            if type(r := graph.group_reward(g)).train_reward is not VertexReward.train_reward}
        self._superiors = {g: superior_weights(graph, g) for g, r in self.vertex_rewards.items()
                           if r.reads_superior_advantage}
        # extra copies a loss asked for: {the loss's key: (group, "advantage" | "value_target")}
        self._views: dict = {}
        self._bound = False  # bind(loss) took a loss's keys

    # ------------------------------------------------------------------ keys
    @property
    def in_keys(self) -> list:
        critic_in = list(self.value_network.in_keys)
        signals = [("next", g, self._field(k)) for g in self.graph.groups for k in ("reward", "done", "terminated")]
        decisions = [KEYS.of(g, "decided") for g in self.graph.groups if self.graph.period(g) > 1]
        rewards = [k for g, r in self.vertex_rewards.items() for k in r.train_keys(g)]
        return [*critic_in, *(("next", *_tuple_key(k)) for k in critic_in), *signals, *decisions, *rewards]

    @property
    def out_keys(self) -> list:
        own = [(g, self._field(k)) for g in self.graph.groups for k in ("advantage", "value_target", "value")]
        return [*own, *self._views]  # and the copies losses asked for (see the class docstring)

    def _field(self, name: str) -> str:
        key = getattr(self.tensor_keys, name)
        return key[-1] if isinstance(key, tuple) else key

    def set_keys(self, **kwargs) -> None:
        """Sets the field names read and written in every group (a nested key ``(group, field)`` sets ``field``).

        Keys that name a group of the graph (as a TorchRL loss forwards its own, ``value=(group, "state_value")``)
        also declare that the ``advantage``/``value_target`` keys given with them receive that group's results.
        """
        accepted = self._AcceptedKeys.__dataclass_fields__
        unknown = set(kwargs) - set(accepted)
        if unknown:
            raise KeyError(f"{sorted(unknown)} not accepted by GraphGAE.set_keys; accepted: {sorted(accepted)}.")
        fields = {}
        for name, key in kwargs.items():
            if key is None:
                raise ValueError(f"GraphGAE.set_keys: {name} cannot be None.")
            fields[name] = [unravel_key(k) for k in key] if isinstance(key, list) else _tuple_key(unravel_key(key))[-1]
        out_keys = getattr(self.value_network, "out_keys", None)
        if "value" in fields and out_keys is not None:
            missing = [g for g in self.graph.groups if (g, fields["value"]) not in out_keys]
            if missing:
                raise KeyError(f"GraphGAE: the value network writes no {fields['value']!r} for group(s) {missing}.")
        conf = asdict(self._tensor_keys) if self._tensor_keys is not None else asdict(self.default_keys())
        conf.update(fields)
        self._tensor_keys = self._AcceptedKeys(**conf)
        group = self._named_group(kwargs)
        if group is not None:
            self._declare_views(group, {k: unravel_key(kwargs[k]) for k in _OUTPUTS if k in kwargs})

    def _named_group(self, keys: dict) -> str | None:
        """The group of the graph that a loss's keys name (its ``value`` key first), or ``None``."""
        for name in ("value", *_OUTPUTS, "reward"):
            key = keys.get(name)
            if isinstance(key, tuple) and len(key) >= 2 and key[0] in self.graph.groups:
                return key[0]
        return None

    def _declare_views(self, group: str, outputs: dict) -> None:
        for name, key in outputs.items():
            own = (group, self._field(name))
            previous = self._views.get(key)
            if key == own:
                self._views.pop(key, None)
            elif previous is not None and previous[0] != group:
                raise ValueError(
                    f"GraphGAE already writes group {previous[0]!r}'s {name} at {key!r} for another loss; give this "
                    f"loss its own key, e.g. loss.set_keys({name}={own!r})."
                )
            else:
                self._views[key] = (group, name)

    def bind(self, loss: LossModule) -> LossModule:
        """Makes this the value estimator of ``loss`` (a stock TorchRL loss of one group), taking its keys.

        The one line a stock loss needs: ``gae.bind(loss)`` (TorchRL's ``loss.make_value_estimator(gae)`` stores an
        estimator instance without telling it the loss's keys). The group is the one the loss's ``value`` key
        names; a loss whose keys name no group of the graph is refused, with the key to set.

        Returns:
            ``loss``.
        """
        self._take_keys(loss)
        loss.make_value_estimator(self)
        self._bound = True
        return loss

    def _take_keys(self, loss: LossModule) -> None:
        keys = {name: getattr(loss.tensor_keys, name) for name in ("value", *_OUTPUTS, "reward", "done", "terminated")
                if hasattr(loss.tensor_keys, name)}
        if self._named_group(keys) is None:
            raise ValueError(
                f"GraphGAE cannot tell which group {type(loss).__name__} trains: its value key {keys.get('value')!r} "
                f"names no group of the graph {list(self.graph.groups)}; call loss.set_keys(value=(group, "
                f"'state_value'), ...) before make_value_estimator (gae.bind(loss))."
            )
        self.set_keys(**keys)

    # ------------------------------------------------------------------ computation
    def _signal(self, next_td: TensorDictBase, group: str, name: str, value: torch.Tensor) -> torch.Tensor:
        field = self._field(name)
        signal = group_signal(next_td, group, field, value.shape[-2])  # team signal -> every vertex; own: unchanged
        if signal is None:
            raise KeyError(f"GraphGAE: no ('next', {group!r}, {field!r}) and no root ('next', {field!r}) in the data.")
        return signal

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
    ) -> TensorDictBase:
        """Writes every group's ``state_value``, ``advantage`` and ``value_target`` into ``tensordict``.

        ``tensordict`` has shape ``[*B, T]`` with time last, as a collector returns it.
        """
        if tensordict.ndim < 1:
            raise ValueError("GraphGAE expects data with a time dimension, shaped [*B, T].")
        if params is not None and not self._bound:  # a TorchRL loss calls its estimator with its critic's params
            raise RuntimeError("GraphGAE was called by a loss it was not bound to, so it does not know the loss's "
                               "keys: give it to the loss with gae.bind(loss), not loss.make_value_estimator(gae).")
        check_group_sizes(self.graph, tensordict, "GraphGAE")
        value_field = self._field("value")
        next_td = tensordict.get("next")
        in_keys = self.value_network.in_keys
        with torch.set_grad_enabled(self.differentiable):
            # one critic pass over the step and its next step
            both = torch.stack([tensordict.select(*in_keys, strict=True), next_td.select(*in_keys, strict=True)])
            both = self.value_network(both)
        time_dim = tensordict.ndim - 1
        advantages, targets = {}, {}
        held: dict[str, torch.Tensor] = {}  # superiors' advantages of the decision in force, for advantage rewards
        for g in reversed(self.graph.groups):  # top-down: superiors before their subordinates
            value, next_value = both.get((g, value_field)).unbind(0)
            tensordict.set((g, value_field), value)
            next_td.set((g, value_field), next_value)
            if not self.differentiable:
                value, next_value = value.detach(), next_value.detach()
            reward = self._signal(next_td, g, "reward", value)
            done = self._signal(next_td, g, "done", value)
            terminated = self._signal(next_td, g, "terminated", value)
            reward = self._vertex_reward(g, next_td, reward, held, time_dim)
            decided = decided_steps(tensordict, g) if self.graph.period(g) > 1 else None
            if decided is not None:
                adv, target = semi_markov_gae(self.gamma, self.lmbda, value, next_value, reward, done, terminated,
                                              decided, time_dim=time_dim)
            else:
                adv, target = vec_generalized_advantage_estimate(
                    self.gamma, self.lmbda, value, next_value, reward, done, terminated, time_dim=time_dim
                )
            if any(g in sources for sources, _ in self._superiors.values()):
                held[g] = self._held_advantage(adv.detach(), decided, done, time_dim)
            advantages[g], targets[g] = adv, target
        advantages = [advantages[g] for g in self.graph.groups]
        targets = [targets[g] for g in self.graph.groups]
        if self.beta:
            stacked = torch.cat(advantages, -2)  # [*B, T, N, 1] in graph.vertex_order
            mixed = torch.einsum("ij,...jk->...ik", self.mixing.to(stacked), stacked)
            advantages = list(mixed.split(self._sizes, -2))
        for g, adv, target in zip(self.graph.groups, advantages, targets):
            tensordict.set((g, self._field("advantage")), adv)
            tensordict.set((g, self._field("value_target")), target)
        for key, (g, name) in self._views.items():
            tensordict.set(key, tensordict.get((g, self._field(name))))
        return tensordict

    def _vertex_reward(self, group: str, next_td: TensorDictBase, reward: torch.Tensor, held: dict,
                       time_dim: int) -> torch.Tensor:
        """The reward ``group`` is trained on: its routed ``reward``, or its vertex reward function's."""
        function = self.vertex_rewards.get(group)
        if function is None:
            return reward
        return function.train_reward(reward, _RewardSource(self, group, function, next_td, held))

    def _held_advantage(self, adv: torch.Tensor, decided: torch.Tensor | None, done: torch.Tensor,
                        time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A superior group's advantage of the decision in force at each step, and its scale: the spread of its
        advantages over the batch's decisions (for :class:`~torchrl_rn.rewards.SuperiorAdvantage`'s ``normalize``)."""
        if decided is None:
            decided = torch.ones_like(adv, dtype=torch.bool)
        decided = decided.expand_as(adv)
        return hold_decisions(adv, decided, done, time_dim=time_dim), _spread(adv[decided])

    def value_estimate(self, tensordict: TensorDictBase, **kwargs) -> TensorDictBase:
        """The unmixed value targets of every group, as a ``{group: value_target}`` tensordict.

        ``tensordict`` is left unchanged.
        """
        out = self.forward(tensordict.copy())
        return out.select(*((g, self._field("value_target")) for g in self.graph.groups))


class _RewardSource:
    """What a :class:`~torchrl_rn.rewards.VertexReward` reads for one group of one batch
    (:class:`~torchrl_rn.rewards.RewardSource`)."""

    def __init__(self, estimator: GraphGAE, group: str, reward: VertexReward, next_td: TensorDictBase,
                 held: dict) -> None:
        self.estimator, self.group, self.reward, self.next_td, self.held = estimator, group, reward, next_td, held

    def env_reward(self) -> torch.Tensor:
        g = self.group
        written = self.next_td.get(KEYS.of(g, "vertex_reward"), None)
        if written is None:
            raise KeyError(f"GraphGAE: group {g!r} has a {self.reward.name} reward but the data has no ('next', "
                           f"{g!r}, 'vertex_reward') (LevelEnv writes it).")
        return written

    def superior_advantage(self, normalize: bool) -> torch.Tensor:
        sources, weights = self.estimator._superiors[self.group]
        parts = [self.held[s][0] / self.held[s][1] if normalize else self.held[s][0] for s in sources]
        bank = torch.cat(parts, -2)[..., 0]  # [*B, T, sum of the superior groups' sizes]
        return (bank @ weights.to(bank).T).unsqueeze(-1)
