"""The tensor-level paths of ``torchrl_rn.modules.fused`` are the module calls exactly: same outputs, same gradients."""
from __future__ import annotations

import pytest
import torch
from tensordict.nn import NormalParamExtractor
from torch import nn
from torchrl.envs import TransformedEnv
from torchrl.modules import MultiAgentMLP, PopArtValueNorm

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.modules.fused import actor_distribution, head_output, run_network
from torchrl_rn.modules.heads import ConcatMLP
from torchrl_rn.value_norm import Denormalize


def _mlp(centralized: bool, share_params: bool = True, n_out: int = 4, **kwargs) -> MultiAgentMLP:
    return MultiAgentMLP(5, n_out, n_agents=3, centralized=centralized, share_params=share_params, depth=2,
                         num_cells=8, activation_class=nn.Tanh, **kwargs)


def _grads(net: nn.Module, out) -> list[torch.Tensor]:
    outs = out if isinstance(out, tuple) else (out,)
    return list(torch.autograd.grad(sum((o * torch.arange(o.numel()).view_as(o)).sum() for o in outs),
                                    [p for p in net.parameters() if p.requires_grad]))


NETS = {
    "local": lambda: ConcatMLP(_mlp(False)),
    "centralised": lambda: ConcatMLP(_mlp(True)),
    "actor head": lambda: ConcatMLP(nn.Sequential(_mlp(False), NormalParamExtractor())),
    "value norm": lambda: Denormalize(ConcatMLP(_mlp(True, n_out=1)), PopArtValueNorm(shape=1)),
    "encoder": lambda: nn.Sequential(_mlp(False), nn.Tanh()),
    "per-vertex weights (module call)": lambda: ConcatMLP(_mlp(False, share_params=False)),
    "relu": lambda: ConcatMLP(MultiAgentMLP(5, 2, n_agents=3, centralized=False, share_params=True, depth=1,
                                            num_cells=6, activation_class=nn.ReLU)),
}


@pytest.mark.parametrize("name", list(NETS))
def test_run_network_is_the_module_call(name):
    net = NETS[name]()
    if isinstance(net, Denormalize):
        net.value_norm.update(torch.tensor([[3.0], [-5.0], [10.0]]))  # not the identity map
    inputs = (torch.randn(6, 2, 3, 4), torch.randn(6, 2, 3, 1)) if name != "encoder" else (torch.randn(6, 3, 5),)
    expected, found = net(*inputs), run_network(net, *inputs)
    expected, found = (expected if isinstance(expected, tuple) else (expected,),
                       found if isinstance(found, tuple) else (found,))
    assert len(found) == len(expected)
    for a, b in zip(found, expected):
        assert a.shape == b.shape and torch.equal(a, b)
    for a, b in zip(_grads(net, found), _grads(net, expected)):
        assert torch.equal(a, b)


def test_run_network_keeps_multi_agent_mlp_errors():
    with pytest.raises(ValueError, match=r"expected input with shape\[-2\]=3"):
        run_network(ConcatMLP(_mlp(False)), torch.zeros(2, 4, 5))


@pytest.mark.parametrize("spec", ["tree:2", "dag:2+root"])
def test_actor_distribution_and_value_are_the_modules(spec):
    graph = RNGraph.from_spec(spec, 4, defaults={"instruct": "addressed"})
    env = TransformedEnv(MockMultiAgentEnv(4, num_envs=3, seed=0), LevelEnv(graph))
    composer = GraphComposer(graph, env, num_cells=8, value_norm=True, critic="group")
    with torch.no_grad():
        data = env.rollout(4, composer.policy, break_when_any_done=False)
    composer.messages(data)
    for g in graph.groups:
        actor, head = composer.actor(g), composer.value_head(g)
        action = data[g, "action"]
        reference = actor.get_dist(data.clone())
        before = {k: v.clone() for k, v in data.items(True, True)}
        dist = actor_distribution(actor, data)
        value = head_output(head, data)[0]
        assert set(data.keys(True, True)) == set(before)  # nothing written
        assert all(torch.equal(data[k], v) for k, v in before.items())
        assert type(dist) is type(reference)
        assert torch.equal(dist.log_prob(action), reference.log_prob(action))
        assert torch.equal(dist.loc, reference.loc) and torch.equal(dist.scale, reference.scale)
        assert torch.equal(value, head(data.clone())[g, "state_value"])
