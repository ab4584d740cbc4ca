"""How a graph's groups lay out their data: per-group sizes and the one group-offset index builder.

Every per-vertex tensor of a group is ``[*B, n, d]``; a module that reads several groups at once (a gather, reward
routing, the superiors' advantages, a goal) sees them flattened into one *bank*, group after group in the graph's
group order, vertex after vertex. :func:`bank_offsets` is where each source group starts in that bank, and every
index or weight matrix below is built from it.

Examples:
    >>> from torchrl_rn.graph import RNGraph
    >>> graph = RNGraph.overlapping(4, 2)
    >>> layout = graph.layout(3)
    >>> layout.dims["level1"]
    GroupDims(n=2, observation=9, message=9, instruction=0)
    >>> superior_weights(graph, "agents")[1][2]  # motor_2 averages its two managers' values
    tensor([0.5000, 0.5000])
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch

from torchrl_rn.graph.spec import NEIGHBOURHOODS

if TYPE_CHECKING:
    from torchrl_rn.graph.graph import RNGraph

__all__ = ["adjacency", "GroupDims", "GroupLayout", "bank_offsets", "gather_index", "neighbour_weights", "reward_weights",
           "superior_weights", "goal_index"]


@dataclass(frozen=True)
class GroupDims:
    """The sizes of one group: ``n`` vertices, and per vertex its ``observation`` (``o-``), ``message`` and
    ``instruction`` (``o+``) sizes, each the largest of its vertices' (shorter ones are zero-padded)."""

    n: int
    observation: int
    message: int
    instruction: int

    def as_dict(self) -> dict[str, int]:
        """The sizes as :meth:`RNGraph.dims` gives them."""
        out = asdict(self)
        return {k: out[k] for k in ("observation", "message", "instruction", "n")}


def adjacency(graph: RNGraph, neighbourhood: str = "both") -> torch.Tensor:
    """See :meth:`RNGraph.adjacency`."""
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(f"unknown neighbourhood {neighbourhood!r}; choose one of {NEIGHBOURHOODS}.")
    down = torch.from_numpy(nx.to_numpy_array(graph.nx, nodelist=graph.vertex_order, weight=None)).float()
    return {"down": down, "up": down.T, "both": down + down.T}[neighbourhood].contiguous()


def bank_offsets(graph: RNGraph, sources: Sequence[str], sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Where each source group starts in the flat bank of ``sources`` (``sizes[g]`` entries per vertex, 1 by
    default)."""
    offsets, offset = {}, 0
    for s in sources:
        offsets[s] = offset
        offset += len(graph.groups[s]) * (sizes[s] if sizes is not None else 1)
    return offsets


def _source_groups(graph: RNGraph, members: Sequence, neighbours: Callable[[Any], list]) -> list[str]:
    """The groups of the members' neighbours, in the graph's group order."""
    found = {graph.group_of(u) for v in members for u in neighbours(v)}
    return [g for g in graph.groups if g in found]


def gather_index(graph: RNGraph, group: str, neighbours: Callable[[Any], list], sizes: dict[str, int], width: int,
                 *, part: Callable | None = None) -> tuple[list[str], torch.Tensor]:
    """``(sources, index)``: each output feature of ``group``'s vertices in the flat bank of the source groups
    (their ``neighbours``' groups, ``sizes[g]`` features per vertex), ``-1`` padding each row to ``width``;
    ``part(u, v)`` gives the entries ``[a, b)`` of neighbour ``u``'s vector that ``v`` reads (all by default)."""
    members = graph.groups[group]
    sources = _source_groups(graph, members, neighbours)
    offsets = bank_offsets(graph, sources, sizes)
    rows = []
    for v in members:
        row = []
        for u in neighbours(v):
            g, j = graph.position(u)
            start = offsets[g] + j * sizes[g]
            a, b = part(u, v) if part is not None else (0, sizes[g])
            row.extend(range(start + a, start + b))
        rows.append(row + [-1] * (width - len(row)))
    return sources, torch.tensor(rows, dtype=torch.long).flatten()


def neighbour_weights(graph: RNGraph, group: str, neighbours: Callable[[Any], list],
                      weights: Callable[[Any], Sequence[float]]) -> tuple[list[str], torch.Tensor]:
    """``(sources, W)``: row ``i`` of ``W`` weights vertex ``i``'s ``neighbours`` (``weights(v)``, one each) in the
    bank of the source groups' per-vertex values."""
    members = graph.groups[group]
    sources = _source_groups(graph, members, neighbours)
    start = bank_offsets(graph, sources)
    w = torch.zeros(len(members), sum(len(graph.groups[g]) for g in sources))
    for i, v in enumerate(members):
        for u, weight in zip(neighbours(v), weights(v)):
            g, j = graph.position(u)
            w[i, start[g] + j] += weight
    return sources, w


def reward_weights(graph: RNGraph, group: str) -> tuple[list[str], torch.Tensor] | None:
    """See :meth:`RNGraph.reward_weights`."""
    if group == graph.env_group:
        return None

    def weights(v):
        psi = graph.attr(v, "psi")
        if callable(psi):
            raise ValueError(f"vertex {v!r} has a callable psi: it has no reward matrix.")
        subs = graph.subordinates(v)
        return [share / (len(subs) if psi == "mean" else 1.0) for share in graph.subordinate_shares(v)]

    return neighbour_weights(graph, group, graph.subordinates, weights)


def superior_weights(graph: RNGraph, group: str) -> tuple[list[str], torch.Tensor]:
    """``(superior groups, W)`` with ``A_sup = W @ A_sources`` averaging each of ``group``'s vertices' superiors.

    ``A_sources`` concatenates the listed groups' per-vertex values; row ``i`` weights vertex ``i``'s superiors
    ``1 / len(superiors)`` each.

    Examples:
        >>> from torchrl_rn import RNGraph
        >>> superior_weights(RNGraph.overlapping(4, 2), "agents")[1]
        tensor([[1.0000, 0.0000],
                [1.0000, 0.0000],
                [0.5000, 0.5000],
                [0.0000, 1.0000]])
    """
    return neighbour_weights(graph, group, graph.superiors,
                             lambda v: [1.0 / len(graph.superiors(v))] * len(graph.superiors(v)))


def goal_index(graph: RNGraph, group: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index [n, S, dim], mask [n, S])``: where each vertex's goal from each of its ``S`` superiors sits in its
    instruction (the superiors' slices concatenated in ``I+`` order): a broadcast action holds every subordinate's
    goal, this one's at its place ``j``; an addressed block is this subordinate's alone and starts with its goal."""
    members = graph.groups[group]
    n_sup = max(len(graph.superiors(v)) for v in members)
    index = torch.zeros(len(members), n_sup, dim, dtype=torch.long)
    mask = torch.zeros(len(members), n_sup, dtype=torch.bool)
    for i, v in enumerate(members):
        offset = 0
        for k, s in enumerate(graph.superiors(v)):
            a, b = graph.instruction_slice(s, v)
            j = 0 if graph.attr(s, "instruct") == "addressed" else graph.subordinates(s).index(v)
            index[i, k] = offset + j * dim + torch.arange(dim)
            mask[i, k] = True
            offset += b - a
    return index, mask


class GroupLayout:
    """A graph's group layout for an env observation size, computed once: sizes and gather indices per group.

    Args:
        graph (RNGraph): the agent graph.
        obs_dim (int): the env's per-agent observation size.

    Attributes:
        dims (dict[str, GroupDims]): every group's sizes.
    """

    def __init__(self, graph: RNGraph, obs_dim: int) -> None:
        self.graph = graph
        self.dims: dict[str, GroupDims] = {}
        for g, members in graph.groups.items():
            if g == graph.env_group:
                obs = obs_dim
            else:
                obs = max(sum(self.dims[graph.group_of(s)].message for s in graph.subordinates(v)) for v in members)
            phi = graph.attr(members[0], "phi")
            if phi == "identity":
                msg = obs
            elif phi == "mean" and g == graph.env_group:  # a motor's mean of its one input is its observation
                msg = obs
            elif phi == "mean":
                msg = self.dims[graph.group_of(graph.subordinates(members[0])[0])].message
            else:
                msg = graph.attr(members[0], "message_dim")
            instr = max(
                (sum(b - a for a, b in (graph.instruction_slice(s, v) for s in graph.superiors(v))) for v in members),
                default=0,
            )
            self.dims[g] = GroupDims(n=len(members), observation=obs, message=msg, instruction=instr)

    def observation_index(self, group: str) -> tuple[list[str], torch.Tensor]:
        """``(sources, index)`` of ``group``'s ``o-``: its vertices' subordinates' messages, in ``I-`` order."""
        sizes = {g: d.message for g, d in self.dims.items()}
        return gather_index(self.graph, group, self.graph.subordinates, sizes, self.dims[group].observation)

    def instruction_index(self, group: str) -> tuple[list[str], torch.Tensor]:
        """``(sources, index)`` of ``group``'s ``o+``: its vertices' superiors' actions (the slices they read), in
        ``I+`` order."""
        graph = self.graph
        sizes = {g: graph.group_action_dim(g) for g in graph.groups if g != graph.env_group}
        return gather_index(graph, group, graph.superiors, sizes, self.dims[group].instruction,
                            part=graph.instruction_slice)
