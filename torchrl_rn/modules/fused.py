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

__all__ = ["actor_distribution", "head_output"]


def head_output(module: TensorDictModule, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
    """The outputs of a tensordict module (one per ``out_keys`` entry) on ``tensordict``'s ``in_keys``, without
    writing them (no tensordict dispatch)."""
    out = module.module(*(tensordict.get(key) for key in module.in_keys))
    return out if isinstance(out, tuple) else (out,)


def actor_distribution(actor: TensorDictSequential, tensordict: TensorDictBase) -> torch.distributions.Distribution:
    """``actor.get_dist(tensordict)`` for a group's actor (a network module then a probabilistic module), with the
    network called on the tensors directly and nothing written to ``tensordict``.

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
