"""The policy and critic of a Reinforcement Network as TensorDict modules: per-group gathers, heads and decision
modules (:mod:`~torchrl_rn.modules.gather`, :mod:`~torchrl_rn.modules.heads`, :mod:`~torchrl_rn.modules.decisions`),
one :class:`VertexGroup` per group, chained by :class:`GraphComposer`; :class:`FusedPolicy` runs the composed policy's
step on tensors (the same outputs, less bookkeeping)."""
from __future__ import annotations

from torchrl_rn.modules.composer import GraphComposer
from torchrl_rn.modules.decisions import DecisionHold, RandomGoals, SuperiorClock
from torchrl_rn.modules.fused_policy import FusedPolicy
from torchrl_rn.modules.gather import BlockMean, GatherModule, GraphGather
from torchrl_rn.modules.group import VertexGroup, message_key
from torchrl_rn.modules.heads import ConcatMLP, DirectModule, actor_head

__all__ = ["GraphComposer", "FusedPolicy", "VertexGroup", "GraphGather", "GatherModule", "BlockMean", "DirectModule", "ConcatMLP",
           "actor_head", "RandomGoals", "DecisionHold", "SuperiorClock", "message_key"]
