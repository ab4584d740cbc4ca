"""Gathers along the DAG's edges: a group's ``o-`` (its subordinates' messages) and ``o+`` (its superiors' actions)
in one ``index_select`` each, and the ``mean`` message function."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from torchrl_rn.keys import NestedKey

__all__ = ["GraphGather", "GatherModule", "BlockMean"]


class GraphGather(nn.Module):
    """Concatenates per-vertex features of several groups along the DAG's edges, in one ``index_select``.

    The sources (``[*B, n_s, d_s]`` each) are flattened into one bank with a trailing zero slot; ``index``
    (``[n_out * dim_out]``) picks each output feature from the bank (the zero slot pads vertices that have
    fewer inputs than the widest vertex of their group; it is left out where no vertex needs it).

    Args:
        index (torch.Tensor): long tensor of bank positions, ``-1`` for padding.
        n_out (int): vertices in the output group.
        dim_out (int): features per output vertex.

    Keyword Args:
        detach (bool): stop gradients through the gathered features (TAG's decentralised training).

    Examples:
        >>> gather = GraphGather(torch.tensor([0, 1, 2, 3, -1, -1]), 2, 3)
        >>> gather(torch.arange(4.0).view(2, 2))  # one source group of 2 vertices with 2 features
        tensor([[0., 1., 2.],
                [3., 0., 0.]])
    """

    def __init__(self, index: torch.Tensor, n_out: int, dim_out: int, *, detach: bool = False) -> None:
        super().__init__()
        self.register_buffer("index", index.long().clone(), persistent=False)
        self.n_out, self.dim_out, self.detach = n_out, dim_out, detach
        self.padded = bool((index < 0).any())  # without padding, the bank needs no zero slot

    def forward(self, *sources: torch.Tensor) -> torch.Tensor:
        batch = sources[0].shape[:-2]
        flat = [s.reshape(*batch, -1) for s in sources]
        if self.padded:
            flat.append(flat[0].new_zeros(*batch, 1))
        bank = flat[0] if len(flat) == 1 else torch.cat(flat, -1)
        if self.detach:
            bank = bank.detach()
        # -1 indexes the zero slot appended last
        return bank[..., self.index].reshape(*batch, self.n_out, self.dim_out)


class GatherModule(TensorDictModuleBase):
    """A :class:`GraphGather` as a tensordict module: reads the sources at ``in_keys``, writes ``out_key``.

    It does what ``TensorDictModule(gather, in_keys, [out_key])`` does, minus that class's per-output conversion
    (``TensorDict.from_any``, which looks the ``pandas`` package up on every call): the gathers run once per group in
    every policy step and loss evaluation, so that conversion was a visible share of a small graph's step.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = GatherModule(GraphGather(torch.tensor([1, 0]), 1, 2), [("a", "x")], ("b", "y"))
        >>> module(TensorDict({"a": {"x": torch.tensor([[1.0], [2.0]])}}))["b", "y"]
        tensor([[2., 1.]])
    """

    def __init__(self, gather: GraphGather, in_keys: Sequence[NestedKey], out_key: NestedKey) -> None:
        super().__init__()
        self.module = gather
        self.in_keys = list(in_keys)
        self.out_keys = [out_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set(self.out_keys[0], self.module(*(tensordict.get(key) for key in self.in_keys)))
        return tensordict


class BlockMean(nn.Module):
    """``phi = "mean"``: the mean of a vertex's subordinates' messages (zero-padded blocks excluded).

    Examples:
        >>> BlockMean(torch.tensor([2.0, 1.0]), block=2)(torch.tensor([[1.0, 3.0, 3.0, 5.0], [4.0, 4.0, 0.0, 0.0]]))
        tensor([[2., 4.],
                [4., 4.]])
    """

    def __init__(self, counts: torch.Tensor, block: int) -> None:
        super().__init__()
        self.register_buffer("counts", counts.float().clone().unsqueeze(-1), persistent=False)
        self.block = block

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        blocks = obs.unflatten(-1, (-1, self.block))
        return blocks.sum(-2) / self.counts
