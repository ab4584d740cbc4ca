"""``RNLoss``: graph-aware policy optimisation, one PPO loss per vertex group in one objective.

Each group keeps its own TorchRL loss (``ClipPPOLoss`` by default) on its own keys; ``RNLoss`` first computes every
group's advantage with one call of the shared value estimator (when the data lacks them), then re-runs the bottom-up
message pass with gradients, so a superior's policy and critic losses reach its subordinates' learned message
encoders in the same optimiser step (unless the composer was built with ``detach_messages=True``).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.objectives import ClipPPOLoss, LossModule, MAPPOLoss, PPOLoss
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import ValueEstimatorBase

from torchrl_rn.graph import GraphError
from torchrl_rn.graph.validate import same_graph
from torchrl_rn.keys import KEYS, _tuple_key
from torchrl_rn.modules import GraphComposer
from torchrl_rn.modules.fused import actor_distribution, head_output
from torchrl_rn.objectives.advantage import GraphGAE
from torchrl_rn.periods import decision_rows

__all__ = ["RNLoss"]

#: the fields a value estimator reads or writes (the rest, action and sample_log_prob, only the group losses read)
_ESTIMATOR_FIELDS = ("advantage", "value_target", "value", "reward", "done", "terminated")


class RNLoss(LossModule):
    """Sum of one PPO loss per vertex group, with the graph-aware advantage.

    A TorchRL :class:`~torchrl.objectives.LossModule`: keys are set with :meth:`set_keys`, the estimator with
    :meth:`make_value_estimator`, and the output holds the totals ``loss_objective``, ``loss_critic`` and
    ``loss_entropy`` (each the ``group_coeffs``-weighted sum of the groups' terms), so a stock TorchRL loop that
    adds ``loss_vals["loss_objective"] + loss_vals["loss_critic"] + loss_vals["loss_entropy"]`` (or sums the
    top-level ``loss_*`` entries) trains every group. Beside them: ``"loss"``, the sum of the totals (it does not
    start with ``"loss_"``, so such a sum does not count it twice), and each group's own terms and diagnostics
    under ``(group, "loss_objective" | "loss_critic" | "loss_entropy" | "entropy" | "kl_approx" |
    "clip_fraction" | "ESS" | "explained_variance" | ...)``.

    A group that learns by ``gradient`` (vertex attribute ``learn``) has no loss of its own: its action in the data
    is deterministic, and this loss recomputes it with gradients (:attr:`GraphComposer.end_to_end`) before the
    groups below it evaluate their losses, which read it as their instruction; their policy and critic losses so
    reach its parameters (except while it gives random goals in a warm-up: then the data's instructions are used
    and it gets no gradient).

    A group with a decision period ``k > 1`` (:meth:`RNGraph.period`) is trained on the steps where it decided
    (``(group, "decided")``, written by the composed policy) only: its loss gets those rows of the data, so its
    means are over its decisions. Its advantages come from :class:`GraphGAE`'s semi-Markov estimate. A group giving
    random goals (:meth:`GraphComposer.goal_warmup`) is not trained: its loss terms are 0, since the actions in the
    data are not its policy's.

    If the data lacks a group's advantage, every group's advantage is computed first, with one call of the value
    estimator (one graph critic pass); if the data has them (e.g. ``loss.value_estimator(data)`` before a replay
    buffer, as TorchRL's tutorials do), they are used as they are.

    Args:
        composer (GraphComposer): the composed graph; its actors, value heads and encoders are trained.

    Keyword Args:
        loss_cls (type or Mapping[str, type]): the per-group TorchRL loss. Defaults to
            :class:`~torchrl.objectives.ClipPPOLoss` (``MAPPOLoss``/``IPPOLoss`` work too); a ``{group: class}``
            mapping chooses it per group (groups left out get ``ClipPPOLoss``). A composer built with
            ``value_norm=True`` gives each group loss its group's ``PopArtValueNorm`` (``ClipPPOLoss`` then becomes
            ``MAPPOLoss``, which has that hook).
        clip_epsilon, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage: passed to every group's
            loss. Advantages are standardised over batch and time but not across a group's agents (TorchRL's
            multi-agent convention).
        group_coeffs (Mapping[str, float], optional): weight of each group's loss in the sum (default 1).
        gamma, lmbda, beta, neighbourhood: hyperparameters of the default :class:`GraphGAE` (and the defaults of
            :meth:`make_value_estimator`).

    **Keys.** ``tensor_keys`` are *field names* inside every group: ``loss.set_keys(advantage="adv")`` makes every
    group's loss read ``(group, "adv")`` and the estimator write it. The defaults are ``action``,
    ``action_log_prob`` (``sample_log_prob``), ``state_value`` (``value``), ``advantage``, ``value_target``,
    ``reward``, ``done`` and ``terminated``.

    Examples:
        >>> import torch
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl.objectives import ValueEstimators
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=16)
        >>> loss = RNLoss(composer, beta=0.5)
        >>> _ = loss.make_value_estimator(ValueEstimators.GAE, gamma=0.95, lmbda=0.9)  # GraphGAE, beta=0.5 kept
        >>> with torch.no_grad():  # as a collector does
        ...     data = env.rollout(5, composer.policy)
        >>> out = loss(data)  # the advantages are computed here, once for all groups
        >>> (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
        >>> sorted(k for k in out.keys() if isinstance(k, str))
        ['agents', 'level1', 'loss', 'loss_critic', 'loss_entropy', 'loss_objective']
    """

    @dataclass
    class _AcceptedKeys:
        """Field names inside every group ``g``: the group losses read ``(g, field)``.

        Attributes:
            action (str): the group's action. Defaults to ``"action"``.
            sample_log_prob (str): its log-probability. Defaults to ``"action_log_prob"``.
            value (str): the value head's output. Defaults to ``"state_value"``.
            advantage (str): the advantage (written by the estimator). Defaults to ``"advantage"``.
            value_target (str): the critic's target (written by the estimator). Defaults to ``"value_target"``.
            reward (str): the group's reward, under ``"next"``. Defaults to ``"reward"``.
            done (str): the group's done flag, under ``"next"`` (the root flag where a group has none).
                Defaults to ``"done"``.
            terminated (str): the group's terminated flag, likewise. Defaults to ``"terminated"``.
        """

        action: str = "action"
        sample_log_prob: str = "action_log_prob"
        value: str = "state_value"
        advantage: str = "advantage"
        value_target: str = "value_target"
        reward: str = "reward"
        done: str = "done"
        terminated: str = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    default_value_estimator = ValueEstimators.GAE
    #: both build a :class:`GraphGAE` (with ``beta=0`` it is TorchRL's (multi-agent) GAE for every vertex)
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.GAE, ValueEstimators.MAGAE)

    def __init__(
        self,
        composer: GraphComposer,
        *,
        loss_cls: type[LossModule] | Mapping[str, type[LossModule]] = ClipPPOLoss,
        clip_epsilon: float = 0.2,
        entropy_coeff: float = 0.01,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "smooth_l1",
        normalize_advantage: bool = False,
        group_coeffs: Mapping[str, float] | None = None,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        beta: float = 0.0,
        neighbourhood: str | torch.Tensor = "both",
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.composer = composer
        self.fused = bool(fused)
        self.graph = composer.graph
        unknown = set(group_coeffs or {}) - set(self.graph.groups)
        if unknown:
            raise KeyError(f"group_coeffs names unknown group(s) {sorted(unknown)}; groups: {list(self.graph.groups)}.")
        self.group_coeffs = {g: float((group_coeffs or {}).get(g, 1.0)) for g in self.graph.groups}
        self.group_losses = nn.ModuleDict()
        if isinstance(loss_cls, Mapping) and set(loss_cls) - set(self.graph.groups):  # one learner per group
            raise KeyError(f"loss_cls names unknown group(s) {sorted(set(loss_cls) - set(self.graph.groups))}; "
                           f"groups: {list(self.graph.groups)}.")
        #: groups with no loss of their own (vertex attribute learn="gradient"): their subordinates' losses train them
        self.gradient_groups = [g for g in self.graph.groups if self.graph.learns_by_gradient(g)]
        for g in self.graph.groups:
            if g in self.gradient_groups:
                continue
            value_norm = getattr(composer.vertex_groups[g], "value_norm", None)
            cls = loss_cls.get(g, ClipPPOLoss) if isinstance(loss_cls, Mapping) else loss_cls
            extra = {}
            if value_norm is not None:  # GraphComposer(value_norm=True): the critic loss on the normalised scale
                # MAPPOLoss is ClipPPOLoss plus that ValueNorm hook (its other defaults are set explicitly here)
                cls, extra = (MAPPOLoss if cls is ClipPPOLoss else cls), {"value_norm": value_norm}
            self.group_losses[g] = cls(
                composer.actor(g), composer.value_head(g), clip_epsilon=clip_epsilon, entropy_coeff=entropy_coeff,
                critic_coeff=critic_coeff, loss_critic_type=loss_critic_type, normalize_advantage=normalize_advantage,
                normalize_advantage_exclude_dims=(-2,), functional=False, **extra,
            )
        if self.fused:
            for g, loss in self.group_losses.items():
                if not isinstance(loss, PPOLoss) or loss.functional:
                    raise TypeError(f"RNLoss(fused=True) needs a non-functional TorchRL PPO loss per group; group "
                                    f"{g!r} has {type(loss).__name__} (use fused=False).")
        self._other_groups = {g: [h for h in self.graph.groups if h != g] for g in self.graph.groups}
        #: fused=True: each group's TanhNormal, reused across calls through its update (modules.fused.distribution)
        self._dists: dict = {}
        self._forward_value_estimator_keys()
        self._estimator_defaults = {"gamma": gamma, "lmbda": lmbda, "beta": beta, "neighbourhood": neighbourhood}
        self.make_value_estimator()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_dists"] = {}  # rebuilt at the next call (their transforms hold weak references: not picklable)
        return state

    # ------------------------------------------------------------------ keys
    def _forward_value_estimator_keys(self, **kwargs) -> None:
        keys = self.tensor_keys
        for f in fields(keys):
            if not isinstance(getattr(keys, f.name), str):
                raise TypeError(f"RNLoss.set_keys({f.name}=...) takes a field name (str) inside every group, "
                                f"got {getattr(keys, f.name)!r}.")
        for g, loss in self.group_losses.items():
            loss.set_keys(**{f.name: (g, getattr(keys, f.name)) for f in fields(keys)})
        estimator = self._value_estimator
        if isinstance(estimator, GraphGAE):
            estimator.set_keys(**{name: getattr(keys, name) for name in _ESTIMATOR_FIELDS})

    @property
    def in_keys(self) -> list:
        """What :meth:`forward` reads from data without advantages: the graph critic's inputs (now and next),
        every group's actor inputs, action, log-probability and ``"next"`` reward and flags."""
        keys = self.tensor_keys
        produced = set(self.composer.messages.out_keys)
        found: list = [*self.composer.messages.in_keys]
        for k in self.composer.critic.in_keys:
            found += [k, ("next", *_tuple_key(k))]
        for g in self.graph.groups:
            found += [k for k in self.composer.actor(g).in_keys if k not in produced]
            if g not in self.gradient_groups:
                found += [(g, keys.action), (g, keys.sample_log_prob)]
            found += [("next", g, getattr(keys, name)) for name in ("reward", "done", "terminated")]
            if self.graph.period(g) > 1:
                found.append(KEYS.of(g, "decided"))
            found += self.graph.group_reward(g).train_keys(g)  # what its estimator trains it on
        return list(dict.fromkeys(k for k in found if k not in produced or _tuple_key(k)[0] == "next"))

    @property
    def out_keys(self) -> list:
        """The totals (``loss_*``), ``"loss"`` and every group's terms ``(group, term)``."""
        per_group = [(g, k) for g, loss in self.group_losses.items() for k in loss.out_keys]
        totals = list(dict.fromkeys(k for _, k in per_group if k.startswith("loss_")))
        return [*totals, "loss", *per_group]

    # ------------------------------------------------------------------ value estimator
    def make_value_estimator(self, value_type: ValueEstimators | type | ValueEstimatorBase | str | None = None,
                             **hyperparams) -> RNLoss:
        """Sets the estimator that computes every group's advantage, shared by every group's loss.

        Args:
            value_type: ``None`` or :attr:`ValueEstimators.GAE` / ``MAGAE`` (or their names, ``"gae"``): a
                :class:`GraphGAE` over ``composer.critic``; a :class:`GraphGAE` subclass, built likewise; another
                ``ValueEstimatorBase`` subclass, built from ``hyperparams`` alone; or a ready estimator instance.
                An estimator that is not a GraphGAE must write every group's ``(group, advantage)`` and
                ``(group, value_target)``. The other enums (TD0, TD1, TDLambda, VTrace) raise ``ValueError``.
            **hyperparams: for a GraphGAE, ``gamma``, ``lmbda``, ``beta``, ``neighbourhood``, ``differentiable``
                (those not given are the ones this loss was built with).

        Returns:
            this loss.
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, str):
            value_type = next((v for v in ValueEstimators if v.name.lower() == value_type.lower()), value_type)
        if isinstance(value_type, (ValueEstimators, str)):
            if value_type not in self.SUPPORTED_VALUE_ESTIMATORS:
                raise ValueError(
                    f"RNLoss supports value_type ValueEstimators.GAE or MAGAE (both build a GraphGAE), a "
                    f"ValueEstimatorBase class or instance; got {value_type!r}."
                )
            value_type = GraphGAE
        if isinstance(value_type, type) and issubclass(value_type, GraphGAE):
            hp = {**self._estimator_defaults, "value_network": self.composer.critic, "device": self.composer.device,
                  **hyperparams}
            estimator = value_type(self.graph, **hp)
        elif isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase):
            estimator = value_type(**hyperparams)
        elif isinstance(value_type, ValueEstimatorBase):
            if isinstance(value_type, GraphGAE) and not same_graph(value_type.graph, self.graph):
                raise GraphError(f"RNLoss.make_value_estimator: the GraphGAE was built for {value_type.graph!r}, this "
                                 f"loss trains {self.graph!r}; build the estimator on the loss's graph.")
            if hyperparams:
                raise TypeError(f"RNLoss.make_value_estimator: hyperparameters {sorted(hyperparams)} given with an "
                                f"estimator instance; set them on the instance.")
            estimator = value_type
        else:
            raise TypeError(f"RNLoss.make_value_estimator takes a ValueEstimators member, a ValueEstimatorBase class "
                            f"or instance, got {value_type!r}.")
        self.value_type = type(estimator)
        self._value_estimator = estimator
        self._forward_value_estimator_keys()
        for loss in self.group_losses.values():
            if isinstance(estimator, GraphGAE):
                estimator.bind(loss)
            else:
                loss.make_value_estimator(estimator)
        return self

    # ------------------------------------------------------------------ loss
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.clone(False)
        advantage = self.tensor_keys.advantage
        if any(td.get((g, advantage), None) is None for g in self.graph.groups):
            self.value_estimator(td)  # every group at once; the group losses then find their advantage
        # the bottom-up pass with gradients: superiors' losses reach the encoders below them
        self.composer.messages(td)
        warming_up = self.composer.warming_up  # groups giving random goals: their actions are not their policy's
        if self.composer.end_to_end is not None and not set(warming_up) & set(self.gradient_groups):
            # the top-down pass with gradients: learn="gradient" groups' actions, as their subordinates read them
            self.composer.end_to_end(td)
        out = TensorDict()
        totals: dict[str, torch.Tensor] = {}
        for g, loss in self.group_losses.items():
            # the group's loss reads its own entries (and root ones such as TorchRL's loss masks): it gets the data
            # without the "next" step and the other groups, so its copies and row selections are of those only
            group_td = td.exclude("next", *self._other_groups[g]) if td.get((g, advantage), None) is not None else td
            if g in warming_up:
                terms = _zero_losses(self._group_loss(loss, group_td))
            elif self.graph.period(g) == 1:
                terms = self._group_loss(loss, group_td)
            else:
                terms = self._decision_loss(loss, group_td, g)
            out.set(g, terms)
            coeff = self.group_coeffs[g]
            for k, v in terms.items():
                if k.startswith("loss_"):
                    totals[k] = totals[k] + coeff * v if k in totals else coeff * v
        for k, v in totals.items():
            out.set(k, v)
        out.set("loss", sum(totals.values()))
        return out

    def _decision_loss(self, loss: LossModule, td: TensorDictBase, group: str) -> TensorDictBase:
        """A group with a decision period is trained on its decision rows only.

        The rows are selected (not weighted): ClipPPOLoss averages its objective, critic and entropy terms over
        the rows it gets, so a zero advantage at held steps would still count them in the means (and train the
        critic and the entropy there). Without a decision in ``td`` the terms are 0 (still connected to the
        parameters, so a backward pass works).
        """
        rows = decision_rows(td, group)
        if bool(rows.any()):
            return self._group_loss(loss, td[rows])
        return _zero_losses(self._group_loss(loss, td))

    def _group_loss(self, loss: LossModule, td: TensorDictBase) -> TensorDictBase:
        """``loss(td)``; with ``fused=True``, the group's distribution and value are computed first, directly on its
        networks, and ``loss`` uses them instead of calling its actor and critic modules."""
        if not self.fused:
            return loss(td)
        dist = actor_distribution(loss.actor_network, td, cache=self._dists)
        with _cached_heads(loss, dist, head_output(loss.critic_network, td)[0]):
            return loss(td)


@contextmanager
def _cached_heads(loss: PPOLoss, dist: torch.distributions.Distribution, value: torch.Tensor) -> Iterator[None]:
    """Inside the block, ``loss`` takes its current policy and its value from ``dist`` and ``value``.

    The two places where a TorchRL PPO loss calls its networks are shadowed on the instance: its
    ``_get_cur_log_prob`` (TorchRL's own, minus the actor call) and its ``critic_network`` (a stand-in that returns
    ``value`` under the loss's value key). Everything else (ratios, clipping, entropy, critic loss, value
    normalisation, diagnostics, reductions) is the loss's own code. Restored on exit.
    """
    action_key, value_key = loss.tensor_keys.action, loss.tensor_keys.value

    def cur_log_prob(tensordict: TensorDictBase, params=None) -> tuple:
        action = tensordict.get(action_key)
        if action.requires_grad:  # TorchRL's check
            raise RuntimeError(f"tensordict stored {action_key} requires grad.")
        return dist.log_prob(action), dist, False

    shadowed = {"_get_cur_log_prob": cur_log_prob, "critic_network": lambda tensordict: {value_key: value}}
    saved = {name: loss.__dict__[name] for name in shadowed if name in loss.__dict__}
    loss.__dict__.update(shadowed)
    try:
        yield
    finally:
        for name in shadowed:
            loss.__dict__.pop(name, None)
        loss.__dict__.update(saved)


def _zero_losses(terms: TensorDictBase) -> TensorDictBase:
    """``terms`` with every ``loss_*`` entry times 0: still connected to the parameters, so a backward pass works."""
    for k, v in terms.items():
        if k.startswith("loss_"):
            terms.set(k, v * 0.0)
    return terms
