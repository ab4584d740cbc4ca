"""Value normalisation as the MAPPO paper uses it: the critic predicts *normalised* returns.

TorchRL's :class:`~torchrl.modules.ValueNorm` keeps running statistics of the value targets, and
:class:`~torchrl.objectives.multiagent.MAPPOLoss` (``value_norm=...``) compares critic and target on that normalised
scale. On its own that leaves the critic's raw output on the return scale (hundreds or thousands on VMAS
simple_spread), which an MLP reaches only after many optimiser steps. :class:`Denormalize` closes the loop as the
MAPPO paper's value normaliser does (Yu et al. 2022, §4 and Table 13; ``use_valuenorm=True`` in
marlbenchmark/on-policy): put it after the critic's last layer with the same ``ValueNorm`` the loss holds, and the
network learns normalised values while advantage estimators see returns on the real scale.
"""
from __future__ import annotations

import torch
from torch import nn
from torchrl.modules import ValueNorm

__all__ = ["Denormalize"]


class Denormalize(nn.Module):
    """A critic network whose output is *normalised*, mapped back to the return scale with a TorchRL ``ValueNorm``.

    Args:
        net (nn.Module): the critic network (any number of inputs, one value per output row).
        value_norm (ValueNorm): the normaliser whose running statistics the loss updates (share the instance with
            ``MAPPOLoss(value_norm=...)``, or build :class:`~torchrl_rn.GraphComposer` with ``value_norm=True``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torchrl.modules import PopArtValueNorm
        >>> norm = PopArtValueNorm(shape=1)
        >>> norm.update(torch.tensor([[-900.0], [-1100.0]]))  # what a loss does with value targets
        >>> critic = Denormalize(nn.Linear(3, 1), norm)
        >>> with torch.no_grad():
        ...     _ = critic.net.weight.zero_(), critic.net.bias.fill_(1.0)  # the network says "one std above the mean"
        >>> round(critic(torch.zeros(1, 3)).item())  # mean -1000, std 100
        -900
    """

    def __init__(self, net: nn.Module, value_norm: ValueNorm) -> None:
        super().__init__()
        self.net = net
        self.value_norm = value_norm

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(self.net(*inputs))
