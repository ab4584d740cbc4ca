"""The agent graph of a Reinforcement Network: a validated DAG of vertices.

An edge ``j -> i`` means *j is a superior of i*. Sinks are **motors**: each drives exactly one env agent.
Vertices are grouped (like TorchRL's multi-agent groups) so that every vertex of a group is evaluated in one
batched call: by default one group per level, where a vertex's level is its height above the motors
(motors are level 0, a vertex is one above its highest subordinate). Superiors therefore always sit at a
higher level than their subordinates, and processing levels in descending order is a topological order.

One concept per module: :mod:`~torchrl_rn.graph.spec` (options, defaults, :class:`GraphError`, the resolved
:class:`VertexSpec`), :mod:`~torchrl_rn.graph.validate` (a ``networkx.DiGraph`` to specs, levels, groups and motors),
:mod:`~torchrl_rn.graph.graph` (:class:`RNGraph`, the frozen structure), :mod:`~torchrl_rn.graph.layout` (group sizes
and the group-offset index builder) and :mod:`~torchrl_rn.graph.builders` (flat, tree, overlapping, spec strings).
"""
from __future__ import annotations

from torchrl_rn.graph.graph import RNGraph
from torchrl_rn.graph.layout import GroupDims, GroupLayout, superior_weights
from torchrl_rn.graph.spec import (
    INSTRUCT_OPTIONS,
    LEARN_OPTIONS,
    NEIGHBOURHOODS,
    PHI_OPTIONS,
    PSI_OPTIONS,
    SHARE_OPTIONS,
    VERTEX_DEFAULTS,
    GraphError,
    VertexSpec,
)

__all__ = ["RNGraph", "GraphError", "VERTEX_DEFAULTS", "INSTRUCT_OPTIONS", "LEARN_OPTIONS", "NEIGHBOURHOODS",
           "PHI_OPTIONS", "PSI_OPTIONS", "SHARE_OPTIONS", "VertexSpec", "GroupDims", "GroupLayout", "superior_weights"]
