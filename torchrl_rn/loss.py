"""``RNLoss``: graph-aware policy optimisation, one PPO loss per vertex group in one objective.

Each group keeps its own TorchRL loss (``ClipPPOLoss`` by default) on its own keys; ``RNLoss`` first re-runs the
bottom-up message pass with gradients, so a superior's policy and critic losses reach its subordinates' learned
message encoders in the same optimiser step (unless the composer was built with ``detach_messages=True``).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.objectives import ClipPPOLoss, LossModule
from torchrl.objectives.value import ValueEstimatorBase

from torchrl_rn.advantage import GraphGAE
from torchrl_rn.composer import GraphComposer

__all__ = ["RNLoss"]


class RNLoss(LossModule):
    """Sum of one PPO loss per vertex group, with the graph-aware advantage.

    Args:
        composer (GraphComposer): the composed graph; its actors, value heads and encoders are trained.

    Keyword Args:
        loss_cls (type): the per-group TorchRL loss. Defaults to :class:`~torchrl.objectives.ClipPPOLoss`
            (``MAPPOLoss``/``IPPOLoss`` work too).
        clip_epsilon, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage: passed to every group's
            loss. Advantages are standardised over batch and time but not across a group's agents (TorchRL's
            multi-agent convention).
        group_coeffs (Mapping[str, float], optional): weight of each group's loss in the sum (default 1).
        gamma, lmbda, beta, neighbourhood: hyperparameters of the default :class:`GraphGAE`.

    The output holds ``"loss"`` (the weighted sum to back-propagate) and each group's own terms under
    ``(group, "loss_objective" | "loss_critic" | "loss_entropy" | ...)``.

    Examples:
        >>> import torch
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph, RNLoss
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=16)
        >>> loss = RNLoss(composer, beta=0.5)
        >>> with torch.no_grad():  # as a collector does
        ...     data = env.rollout(5, composer.policy)
        ...     _ = loss.value_estimator(data)
        >>> out = loss(data)
        >>> out["loss"].backward()
        >>> sorted(out.keys())
        ['agents', 'level1', 'loss']
    """

    def __init__(
        self,
        composer: GraphComposer,
        *,
        loss_cls: type[LossModule] = ClipPPOLoss,
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
    ) -> None:
        super().__init__()
        self.composer = composer
        self.graph = composer.graph
        unknown = set(group_coeffs or {}) - set(self.graph.groups)
        if unknown:
            raise KeyError(f"group_coeffs names unknown group(s) {sorted(unknown)}; groups: {list(self.graph.groups)}.")
        self.group_coeffs = {g: float((group_coeffs or {}).get(g, 1.0)) for g in self.graph.groups}
        self.group_losses = nn.ModuleDict()
        for g in self.graph.groups:
            loss = loss_cls(
                composer.actor(g), composer.value_head(g), clip_epsilon=clip_epsilon, entropy_coeff=entropy_coeff,
                critic_coeff=critic_coeff, loss_critic_type=loss_critic_type, normalize_advantage=normalize_advantage,
                normalize_advantage_exclude_dims=(-2,), functional=False,
            )
            loss.set_keys(
                action=(g, "action"), sample_log_prob=(g, "action_log_prob"), value=(g, "state_value"),
                advantage=(g, "advantage"), value_target=(g, "value_target"), reward=(g, "reward"),
                done=(g, "done"), terminated=(g, "terminated"),
            )
            self.group_losses[g] = loss
        self.make_value_estimator(gamma=gamma, lmbda=lmbda, beta=beta, neighbourhood=neighbourhood)

    def make_value_estimator(self, value_type: ValueEstimatorBase | None = None, **hyperparams) -> RNLoss:
        """Sets the estimator shared by every group's loss: a :class:`GraphGAE` over ``composer.critic`` built from
        ``hyperparams`` (``gamma``, ``lmbda``, ``beta``, ``neighbourhood``), or a ready ``ValueEstimatorBase``."""
        if value_type is None:
            value_type = GraphGAE(self.graph, value_network=self.composer.critic, **hyperparams)
        elif not isinstance(value_type, ValueEstimatorBase):
            raise TypeError(f"RNLoss takes a ValueEstimatorBase instance or None, got {value_type!r}.")
        self._value_estimator = value_type
        for loss in self.group_losses.values():
            loss.make_value_estimator(value_type)
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.clone(False)
        # the bottom-up pass with gradients: superiors' losses reach the encoders below them
        self.composer.messages(td)
        out = TensorDict()
        total = 0.0
        for g, loss in self.group_losses.items():
            terms = loss(td)
            out.set(g, terms)
            group_total = sum(v for k, v in terms.items() if k.startswith("loss_"))
            total = total + self.group_coeffs[g] * group_total
        out.set("loss", total)
        return out
