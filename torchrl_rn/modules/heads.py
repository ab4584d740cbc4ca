"""The heads of a vertex group: its stochastic policy for an action spec, and the plain tensordict modules that run
its networks."""
from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded, Categorical, OneHot, TensorSpec
from torchrl.modules import MLP, MultiAgentMLP, OneHotCategorical, ProbabilisticActor, TanhNormal

from torchrl_rn.keys import KEYS, NestedKey

__all__ = ["DirectModule", "ConcatMLP", "actor_head", "multi_agent_mlp"]


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

    The network is ``mlp``, or ``mlp[0]`` followed by the rest of an ``nn.Sequential`` ``mlp``; its
    ``MultiAgentMLP`` runs through :func:`multi_agent_mlp` (the module call's result, without its parameter swap).

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
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
        if type(self.mlp) is nn.Sequential and len(self.mlp):
            layers = iter(self.mlp._modules.values())  # no Sequential slice (a new module) on every call
            out = multi_agent_mlp(next(layers), x)
            for layer in layers:
                out = layer(out)
            return out
        return multi_agent_mlp(self.mlp, x)


def multi_agent_mlp(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)``, with a shared-weight :class:`~torchrl.modules.MultiAgentMLP` run directly on its own parameters.

    ``MultiAgentMLP.forward`` swaps its parameters into an empty network on every call
    (``TensorDictParams.to_module``, a few hundred microseconds); a group's networks run several times per policy step
    and per loss evaluation. For ``share_params=True`` over a plain :class:`~torchrl.modules.MLP` of linear layers and
    parameter-free activations, the same ``F.linear`` and activation calls run on ``net.params`` instead: the same
    operations on the same tensors, so outputs and gradients are the module call's exactly (tested in
    ``tests/modules/test_fused_modules.py``). Any other module is called as it is.

    Examples:
        >>> net = MultiAgentMLP(3, 2, n_agents=4, centralized=True, share_params=True, depth=1, num_cells=5)
        >>> x = torch.randn(6, 4, 3)
        >>> torch.equal(multi_agent_mlp(net, x), net(x))
        True
    """
    plan = _plan(net) if isinstance(net, MultiAgentMLP) else None
    if plan is None or x.shape[-2:-1] != (net.n_agents,):
        return net(x)  # and MultiAgentMLP's own errors
    agent_dim = x.ndim - 2
    out = x.flatten(-2, -1) if net.centralized else x
    params = net.params._parameters  # the parameters in place, flat ("0.weight"), as items(True, True) gives them
    for name, layer in plan:
        if layer is None:
            out = F.linear(out, params[name + ".weight"], params.get(name + ".bias"))
        elif layer is torch.tanh:
            out = torch.tanh(out)
        else:
            out = layer(out)
    if net.centralized:  # every agent gets the same output, expanded as MultiAgentMLP does
        out = out.unsqueeze(agent_dim)
        out = out.expand(*out.shape[:agent_dim], net.n_agents, *out.shape[agent_dim + 1:])
    return out


#: each MultiAgentMLP's layers as :func:`multi_agent_mlp` runs them (None: not a plain shared-weight MLP); structure
#: only (names and parameter-free layers), so weight updates and ``.to()`` leave it valid
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(net: MultiAgentMLP) -> list[tuple[str, Callable | None]] | None:
    """``net``'s layers for :func:`multi_agent_mlp`: ``(name, None)`` for a linear layer, ``(name, torch.tanh)`` for
    ``nn.Tanh`` (the same function its forward calls), ``(name, layer)`` for other parameter-free layers; ``None``
    where ``net`` is not a plain shared-weight MLP or its parameters are not where the plan reads them."""
    if net in _PLANS:
        return _PLANS[net]
    plan = None
    if _plain_shared(net):
        plan = [(name, None if isinstance(layer, nn.Linear) else torch.tanh if type(layer) is nn.Tanh else layer)
                for name, layer in net._empty_net.named_children()]
        flat = dict(net.params.items(True, True))
        stored = net.params._parameters
        if any(stored.get(".".join(k)) is not v for k, v in flat.items()):
            plan = None
    _PLANS[net] = plan
    return plan


def _plain_shared(net: MultiAgentMLP) -> bool:
    """Whether ``net`` is a shared-weight MLP of linear layers and parameter-free layers (what
    :func:`multi_agent_mlp` evaluates directly)."""
    body = net._empty_net
    return (net.share_params and type(body) is MLP and not body._reshape_out
            and all(isinstance(layer, nn.Linear) or next(layer.parameters(), None) is None for layer in body))


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
