"""``Models``: what an algorithm's builder gives the trainer's loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

if TYPE_CHECKING:  # annotations only: a baseline's models need neither
    from torchrl_rn.graph import RNGraph
    from torchrl_rn.modules import GraphComposer

__all__ = ["Models"]


@dataclass
class Models:
    """An algorithm's policy and loss, and the few answers the trainer's loop asks of them.

    Args:
        policy (TensorDictModuleBase): the acting policy (what the collector runs).
        loss (nn.Module): the PPO loss; it holds the critic and the value estimator.
        unread_keys (list): what the loss does not read once the advantages are in the batch, left out of the replay
            buffer (fewer entries to store and index per minibatch).
        agent_group (str): the env's agent group, under which a flat loss output's diagnostics are filed.
        graph (RNGraph, optional): the agent graph (RN only).
        composer (GraphComposer, optional): the graph's composer (RN only).

    Examples:
        >>> m = Models(policy=nn.Identity(), loss=nn.Linear(1, 1), unread_keys=["next"])
        >>> m.group_parameters(), m.goal_warmup(True)
        ({}, False)
    """

    policy: TensorDictModuleBase
    loss: nn.Module
    unread_keys: list = field(default_factory=list)
    agent_group: str = "agents"
    graph: RNGraph | None = None
    composer: GraphComposer | None = None

    def advantage(self, data: TensorDictBase) -> None:
        """Writes the advantages and value targets of a collected batch in place (call it without gradients)."""
        self.loss.value_estimator(data, params=self.loss.critic_network_params,
                                  target_params=self.loss.target_critic_network_params)

    def group_parameters(self) -> dict[str, list[torch.Tensor]]:
        """Each group's own trainable parameters, for per-group gradient norms (none for a flat loss)."""
        return {}

    def goal_warmup(self, warm: bool) -> bool:
        """Turns the goal warm-up on or off; returns whether anything changed (the policy's weights then need to be
        pushed to the collector's workers)."""
        return False
