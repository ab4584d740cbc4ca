"""The superiors' advantage as a subordinate's reward (HAVEN / HiMPo style; needs no task knowledge)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from torchrl_rn.rewards.base import RewardSource, VertexReward, _spread

__all__ = ["SuperiorAdvantage"]


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
        >>> from torchrl_rn.rewards import parse_reward
        >>> parse_reward("advantage:alpha=0.5,normalize=false")
        SuperiorAdvantage(alpha=0.5, normalize=False)
    """

    alpha: float = 0.5
    normalize: bool = True
    name: ClassVar[str] = "advantage"
    reads_superior_advantage: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"advantage reward: alpha must be in [0, 1], got {self.alpha!r}.")

    def __call__(self, own: torch.Tensor, superior_advantage: torch.Tensor) -> torch.Tensor:
        return self.alpha * own + (1.0 - self.alpha) * superior_advantage

    def train_reward(self, own: torch.Tensor, source: RewardSource) -> torch.Tensor:
        """``alpha * own + (1 - alpha) * A_sup``, ``A_sup`` at the spread of ``own`` with ``normalize``."""
        superior = source.superior_advantage(self.normalize)
        if self.normalize:  # unit spread, then the spread of the group's own rewards in this batch
            superior = superior * _spread(own)
        return self(own, superior)

