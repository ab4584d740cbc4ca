"""The heads of a vertex group: its stochastic policy for an action spec, and the plain tensordict modules that run
its networks."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded, Categorical, OneHot, TensorSpec
from torchrl.modules import OneHotCategorical, ProbabilisticActor, TanhNormal

from torchrl_rn.keys import KEYS, NestedKey

__all__ = ["DirectModule", "ConcatMLP", "actor_head"]


class DirectModule(TensorDictModule):
    """A :class:`~tensordict.nn.TensorDictModule` that writes its tensor outputs as they are.

    ``TensorDictModule`` passes every output through ``TensorDict.from_any``, which, for a plain tensor, looks the
    ``pandas`` package up on the import path on every call (about a millisecond where it is not installed). Every
    actor head, value head and encoder of a vertex group runs in each policy step and each loss evaluation, so that
    look-up was a visible share of a small graph's step. Outputs that are not tensors are converted as before.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = DirectModule(nn.Linear(2, 1, bias=False), [("a", "x")], [("a", "y")])
        >>> _ = module.module.weight.data.fill_(1.0)
        >>> module(TensorDict({"a": {"x": torch.tensor([[1.0, 2.0]])}}, [1]))["a", "y"]
        tensor([[3.]], grad_fn=<MmBackward0>)
    """

    def _write_to_tensordict(self, tensordict, tensors, tensordict_out=None, out_keys=None):
        if any(not isinstance(t, torch.Tensor) for t in tensors):
            return super()._write_to_tensordict(tensordict, tensors, tensordict_out, out_keys)
        if out_keys is None:
            out_keys = self.out_keys_source
        if len(tensors) != len(out_keys):  # TensorDictModule's own messages
            return super()._write_to_tensordict(tensordict, tensors, tensordict_out, out_keys)
        if tensordict_out is None:
            if self.inplace is True:
                tensordict_out = tensordict
            else:
                tensordict_out = tensordict.empty() if self.inplace == "empty" else TensorDict()
        for key, tensor in zip(out_keys, tensors):
            if key != "_":
                tensordict_out.set(key, tensor)
        return tensordict_out


class ConcatMLP(nn.Module):
    """A :class:`~torchrl.modules.MultiAgentMLP` over the concatenation of its inputs (``o-`` and ``o+``).

    Examples:
        >>> from torchrl.modules import MultiAgentMLP
        >>> mlp = ConcatMLP(MultiAgentMLP(5, 1, n_agents=2, centralized=False, share_params=True))
        >>> mlp(torch.zeros(3, 2, 4), torch.zeros(3, 2, 1)).shape
        torch.Size([3, 2, 1])
    """

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.mlp(inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1))


def actor_head(spec: TensorSpec, net: Callable[..., nn.Module], in_keys: Sequence[NestedKey], group: str, *,
               device: torch.device | str | None = None) -> ProbabilisticActor:
    """A group's stochastic policy for its action spec: TanhNormal for ``Bounded``, categorical for discrete specs.

    Shared by :class:`VertexGroup` and the trainer's MAPPO/IPPO baselines, so both handle the same action kinds.

    Args:
        spec (TensorSpec): the group's action spec, ``Bounded``, ``Categorical`` or ``OneHot``.
        net (callable): ``net(n_out, *head_modules) -> nn.Module`` mapping the ``in_keys`` to ``n_out`` features per
            agent, followed by ``head_modules``.
        in_keys (list of keys): the network's inputs.
        group (str): the group; actions are written to ``(group, "action")``.

    Keyword Args:
        device (torch.device, optional): where the distribution's bounds live.

    Examples:
        >>> from torchrl.data import Categorical
        >>> from torchrl.modules import MultiAgentMLP
        >>> def net(n_out, *head):
        ...     return nn.Sequential(MultiAgentMLP(4, n_out, n_agents=2, centralized=False, share_params=True), *head)
        >>> actor = actor_head(Categorical(3, shape=(2,)), net, [("agents", "observation")], "agents")
        >>> actor.out_keys[:2]
        [('agents', 'logits'), ('agents', 'action')]
    """
    if isinstance(spec, Bounded):
        loc_scale = [KEYS.of(group, "loc"), KEYS.of(group, "scale")]
        head = DirectModule(net(2 * spec.shape[-1], NormalParamExtractor()), in_keys, loc_scale)
        return ProbabilisticActor(
            head, in_keys=loc_scale, out_keys=[KEYS.of(group, "action")], distribution_class=TanhNormal,
            distribution_kwargs={"low": spec.space.low.to(device), "high": spec.space.high.to(device)},
            return_log_prob=True,
        )
    if isinstance(spec, (Categorical, OneHot)):
        head = DirectModule(net(spec.space.n), in_keys, [KEYS.of(group, "logits")])
        dist = OneHotCategorical if isinstance(spec, OneHot) else torch.distributions.Categorical
        return ProbabilisticActor(head, in_keys=[KEYS.of(group, "logits")], out_keys=[KEYS.of(group, "action")],
                                  distribution_class=dist, return_log_prob=True)
    raise TypeError(
        f"group {group!r}: unsupported action spec {type(spec).__name__}; use Bounded, Categorical or OneHot."
    )
