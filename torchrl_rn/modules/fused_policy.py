"""One collection step of a composed RN policy as one module: the gathers, networks and samplers of every group run on
tensors, in the composed policy's order, with one write per output.

:attr:`GraphComposer.policy <torchrl_rn.GraphComposer>` is a :class:`~tensordict.nn.TensorDictSequential` of every
group's gathers and :class:`~torchrl.modules.ProbabilisticActor`: each step pays every group's sequential and
probabilistic-module dispatch (key checks, the actor's inner sequential, a second pass over its keys). On a small
graph that bookkeeping, not the arithmetic, was most of the gap to a flat MAPPO actor's step. :class:`FusedPolicy`
runs the same modules' own networks and distributions: a gather's :class:`~torchrl_rn.modules.gather.GraphGather`, a
head's network (:func:`~torchrl_rn.modules.fused.head_output`), the actor's own ``distribution_class`` and
``distribution_kwargs``, and TorchRL's :func:`~torchrl.modules.distributions.utils.sample_and_log_prob` as
:class:`~torchrl.modules.tensordict_module.SafeProbabilisticModule` samples under ``ExplorationType.RANDOM``. The
same operations on the same tensors, drawing the same random numbers in the same order: every output equals the
composed policy's exactly (tested in ``tests/modules/test_fused_policy.py`` on the transform test matrix's graph
shapes). Other exploration types (evaluation's deterministic actions) and modules it does not know run through the
modules themselves.
"""
from __future__ import annotations

from collections.abc import Iterator

from tensordict import TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModuleBase,
    TensorDictSequential,
)
from tensordict.nn.probabilistic import InteractionType, interaction_type
from torchrl.modules.distributions.utils import sample_and_log_prob

from torchrl_rn.modules.fused import actor_distribution, head_output, write_outputs
from torchrl_rn.modules.gather import GatherModule
from torchrl_rn.modules.heads import DirectModule

__all__ = ["FusedPolicy"]


class FusedPolicy(TensorDictModuleBase):
    """``policy``'s step with its gathers, heads and actors run on tensors (see the module docstring).

    It holds ``policy`` as its only submodule, so its parameters, buffers and state dict are ``policy``'s (under
    ``policy.``): a collector's weight updates reach the same tensors.

    Args:
        policy (TensorDictSequential): a composed policy, e.g. :attr:`GraphComposer.policy
            <torchrl_rn.GraphComposer>`.

    Examples:
        >>> import torch
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl.envs.utils import ExplorationType, set_exploration_type
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=8)
        >>> fused, td = FusedPolicy(composer.policy), env.reset()
        >>> with set_exploration_type(ExplorationType.RANDOM):
        ...     _ = torch.manual_seed(0)
        ...     a = composer.policy(td.clone())
        ...     _ = torch.manual_seed(0)
        ...     b = fused(td.clone())
        >>> set(a.keys(True, True)) == set(b.keys(True, True)), all(torch.equal(a[k], b[k]) for k in a.keys(True, True))
        (True, True)
    """

    def __init__(self, policy: TensorDictSequential) -> None:
        super().__init__()
        if isinstance(policy, FusedPolicy):  # already fused: the same composed policy
            policy = policy.policy
        if not isinstance(policy, TensorDictSequential):
            raise TypeError(f"FusedPolicy runs a composed policy (a TensorDictSequential such as "
                            f"GraphComposer.policy), got {type(policy).__name__}.")
        self.policy = policy
        self.in_keys = list(policy.in_keys)
        self.out_keys = list(policy.out_keys)
        # each actor's TanhNormal, kept between steps and given the new parameters with its ``update`` (what
        # TorchRL's TanhNormal offers for reuse: the same distribution without rebuilding its transforms and checks)
        self._dists: dict = {}

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_dists"] = {}  # rebuilt at the next step (their transforms hold weak references: not picklable)
        return state

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        random = (interaction_type() or InteractionType.DETERMINISTIC) is InteractionType.RANDOM
        for module in _steps(self.policy):
            if type(module) in (GatherModule, DirectModule):
                write_outputs(tensordict, module.out_keys, head_output(module, tensordict))
            elif random and _plain_actor(module):
                prob = module.module[-1]
                dist = actor_distribution(module, tensordict, cache=self._dists, write=True)
                sample, log_prob = sample_and_log_prob(dist, reparameterize=dist.has_rsample)
                tensordict.set(prob.dist_sample_keys[0], sample)
                tensordict.set(prob.log_prob_key, log_prob)
            else:
                module(tensordict)
        return tensordict


def _steps(policy: TensorDictSequential) -> Iterator[TensorDictModuleBase]:
    """The modules a composed policy runs, in order (nested plain sequentials flattened; actors kept whole)."""
    for module in policy.module:
        if type(module) is TensorDictSequential:
            yield from _steps(module)
        else:
            yield module


def _plain_actor(module: TensorDictModuleBase) -> bool:
    """Whether ``module`` is an actor whose random step :class:`FusedPolicy` runs itself: a network head then a
    probabilistic module sampling one tensor and writing its log-probability, with no generator, sample count or spec
    projection of its own (anything else runs through the module)."""
    if not isinstance(module, ProbabilisticTensorDictSequential) or len(module.module) != 2:
        return False
    head, prob = module.module
    return (type(head) is DirectModule and isinstance(prob, ProbabilisticTensorDictModule)
            and prob.return_log_prob and prob.num_samples is None and len(prob.dist_sample_keys) == 1
            and getattr(prob, "_generator", None) is None and getattr(prob, "_generator_key", None) is None
            and not getattr(prob, "safe", False) and not getattr(module, "return_composite", False))

