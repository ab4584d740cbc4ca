"""Tensor-level paths over a vertex group's own modules, for the fused loss pass (``RNLoss(..., fused=True)``).

A group's actor and value head are :class:`~tensordict.nn.TensorDictModule` chains around a
:class:`~torchrl.modules.MultiAgentMLP`, which swaps its parameters into an empty network on every call
(``TensorDictParams.to_module``). The functions here run the same layers with the same ``F.linear`` and activation
calls directly on the module's own parameters, and build the actor's distribution with the actor's own
``distribution_class`` and ``distribution_kwargs``: the same operations on the same tensors, so the results and their
gradients are the module calls' exactly (tested in ``tests/modules/test_fused_modules.py``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictModule, TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.modules import MLP, MultiAgentMLP

from torchrl_rn.modules.heads import ConcatMLP
from torchrl_rn.value_norm import Denormalize

__all__ = ["run_network", "actor_distribution", "head_output"]


def run_network(net: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``net(*inputs)`` for a group's networks, with a shared-weight ``MultiAgentMLP`` run on its own parameters.

    Handles :class:`ConcatMLP`, :class:`~torchrl_rn.value_norm.Denormalize`, ``nn.Sequential`` chains starting with
    one of them, and ``MultiAgentMLP(share_params=True)`` over a plain :class:`~torchrl.modules.MLP` (centralised or
    not); any other module is called as it is.

    Examples:
        >>> mlp = ConcatMLP(MultiAgentMLP(5, 2, n_agents=3, centralized=True, share_params=True, depth=1, num_cells=4))
        >>> x, y = torch.randn(7, 3, 4), torch.randn(7, 3, 1)
        >>> torch.equal(run_network(mlp, x, y), mlp(x, y))
        True
    """
    if isinstance(net, ConcatMLP):
        return run_network(net.mlp, inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1))
    if isinstance(net, Denormalize):
        return net.value_norm.denormalize(run_network(net.net, *inputs))
    if type(net) is nn.Sequential and len(net):
        out = run_network(net[0], *inputs)
        for layer in net[1:]:
            out = layer(out)
        return out
    if isinstance(net, MultiAgentMLP) and len(inputs) == 1 and _tensor_level(net):
        return _shared_mlp(net, inputs[0])
    return net(*inputs)


def _tensor_level(net: MultiAgentMLP) -> bool:
    """Whether ``net`` is a shared-weight MLP of linear layers and parameter-free activations (what
    :func:`_shared_mlp` evaluates)."""
    body = net._empty_net
    return (net.share_params and type(body) is MLP and not body._reshape_out
            and all(isinstance(layer, nn.Linear) or not any(True for _ in layer.parameters()) for layer in body))


def _shared_mlp(net: MultiAgentMLP, x: torch.Tensor) -> torch.Tensor:
    """``MultiAgentMLP.forward`` (shared parameters) with its layers called on ``net.params`` directly."""
    if x.shape[-2] != net.n_agents:  # MultiAgentMLP's own error
        return net(x)
    agent_dim = x.ndim - 2
    out = x.flatten(-2, -1) if net.centralized else x
    params = dict(net.params.items(True, True))
    for name, layer in net._empty_net.named_children():
        if isinstance(layer, nn.Linear):
            out = F.linear(out, params[name, "weight"], params.get((name, "bias")))
        else:
            out = layer(out)
    if net.centralized:  # every agent gets the same output, as MultiAgentMLP expands it
        out = out.unsqueeze(agent_dim)
        out = out.expand(*out.shape[:agent_dim], net.n_agents, *out.shape[agent_dim + 1:])
    return out


def head_output(module: TensorDictModule, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
    """The outputs of a tensordict module (one per ``out_keys`` entry) on ``tensordict``'s ``in_keys``, without
    writing them: :func:`run_network` over the module's network."""
    out = run_network(module.module, *(tensordict.get(key) for key in module.in_keys))
    return out if isinstance(out, tuple) else (out,)


def actor_distribution(actor: TensorDictSequential, tensordict: TensorDictBase) -> torch.distributions.Distribution:
    """``actor.get_dist(tensordict)`` for a group's actor (a network module then a probabilistic module), with the
    network run by :func:`run_network` and nothing written to ``tensordict``.

    Examples:
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=8)
        >>> td = composer.messages(env.reset())  # the managers' observations
        >>> actor = composer.actor("level1")
        >>> torch.equal(actor_distribution(actor, td).loc, actor.get_dist(td).loc)
        True
    """
    modules: Sequence[nn.Module] = list(actor.module)
    head, prob = modules[0], modules[-1]
    if len(modules) != 2 or not isinstance(head, TensorDictModule) or not isinstance(prob,
                                                                                     ProbabilisticTensorDictModule):
        return actor.get_dist(tensordict)
    found = dict(zip(head.out_keys, head_output(head, tensordict)))
    kwargs = {}
    for dist_key, key in zip(prob.dist_keys, prob.in_keys):
        kwargs[dist_key[-1] if isinstance(dist_key, tuple) else dist_key] = found[key] if key in found \
            else tensordict.get(key)
    return prob.distribution_class(**kwargs, **dict(prob.distribution_kwargs))
