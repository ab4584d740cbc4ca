"""The tensor-level pass over a vertex group's own modules, for the fused loss (``RNLoss(..., fused=True)``).

A group's actor is a :class:`~torchrl.modules.ProbabilisticActor` (a network module writing the distribution's
parameters, then a probabilistic module reading them) and its value head a tensordict module. The functions here call
the same networks on the tensors directly and build the actor's distribution with the actor's own
``distribution_class`` and ``distribution_kwargs``, without tensordict dispatch or writes: the same operations on the
same tensors, so the results and their gradients are the module calls' exactly (tested in
``tests/modules/test_fused_modules.py``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictModule, TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.modules import TanhNormal

__all__ = ["actor_distribution", "distribution", "head_output", "write_outputs"]


def head_output(module: TensorDictModule, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
    """The outputs of a tensordict module (one per ``out_keys`` entry) on ``tensordict``'s ``in_keys``, without
    writing them (no tensordict dispatch)."""
    out = module.module(*(tensordict.get(key) for key in module.in_keys))
    return out if isinstance(out, tuple) else (out,)


def write_outputs(tensordict: TensorDictBase, keys: Sequence, tensors: Sequence[torch.Tensor]) -> None:
    """Sets each of ``tensors`` at its key of ``keys`` in ``tensordict`` (``"_"``: not written, as tensordict
    modules skip it)."""
    for key, tensor in zip(keys, tensors):
        if key != "_":
            tensordict.set(key, tensor)


def distribution(prob: ProbabilisticTensorDictModule, params: dict[str, torch.Tensor], *,
                 cache: dict | None = None) -> torch.distributions.Distribution:
    """``prob``'s distribution with parameters ``params`` (its ``distribution_class`` and ``distribution_kwargs``).

    With ``cache`` (a dict the caller keeps), a :class:`~torchrl.modules.TanhNormal` is built once per ``prob`` and
    afterwards given the new ``loc`` and ``scale`` with its own ``update`` (TorchRL's reuse of the distribution: the
    same samples, log-probabilities and entropies, without rebuilding its transforms and bound checks).
    """
    dist = cache.get(prob) if cache is not None else None
    if dist is not None and params.keys() == {"loc", "scale"} and dist.low.device == params["loc"].device:
        dist.update(params["loc"], params["scale"])
        return dist
    dist = prob.distribution_class(**params, **dict(prob.distribution_kwargs))
    if cache is not None and type(dist) is TanhNormal:
        cache[prob] = dist
    return dist


def actor_distribution(actor: TensorDictSequential, tensordict: TensorDictBase, *,
                       cache: dict | None = None, write: bool = False) -> torch.distributions.Distribution:
    """``actor.get_dist(tensordict)`` for a group's actor (a network module then a probabilistic module), with the
    network called on the tensors directly (``cache``: see :func:`distribution`). Nothing is written to
    ``tensordict`` unless ``write``: then the network's outputs (the distribution's parameters) are, as the actor's
    own call writes them.

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
    if write:
        write_outputs(tensordict, list(found), list(found.values()))
    kwargs = {}
    for dist_key, key in zip(prob.dist_keys, prob.in_keys):
        kwargs[dist_key[-1] if isinstance(dist_key, tuple) else dist_key] = found[key] if key in found \
            else tensordict.get(key)
    return distribution(prob, kwargs, cache=cache)
