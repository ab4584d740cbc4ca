"""The tensor-level paths (``multi_agent_mlp`` in ``ConcatMLP``, ``torchrl_rn.modules.fused``) are the stock module
calls exactly: same outputs, same gradients."""
from __future__ import annotations

import pytest
import torch
from tensordict.nn import NormalParamExtractor
from torch import nn
from torchrl.envs import TransformedEnv
from torchrl.modules import MultiAgentMLP

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.modules.fused import actor_distribution, head_output
from torchrl_rn.modules.heads import ConcatMLP, multi_agent_mlp


def _mlp(centralized: bool, share_params: bool = True, n_out: int = 4, **kwargs) -> MultiAgentMLP:
    return MultiAgentMLP(5, n_out, n_agents=3, centralized=centralized, share_params=share_params, depth=2,
                         num_cells=8, activation_class=nn.Tanh, **kwargs)


def _grads(net: nn.Module, out) -> list[torch.Tensor]:
    outs = out if isinstance(out, tuple) else (out,)
    return list(torch.autograd.grad(sum((o * torch.arange(o.numel()).view_as(o)).sum() for o in outs),
                                    [p for p in net.parameters() if p.requires_grad]))


class StockConcatMLP(ConcatMLP):
    """ConcatMLP as it was: the MultiAgentMLP module called (the reference)."""

    def forward(self, *inputs):
        return self.mlp(inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1))


NETS = {
    "local": lambda: _mlp(False),
    "centralised": lambda: _mlp(True),
    "actor head": lambda: nn.Sequential(_mlp(False), NormalParamExtractor()),
    "per-vertex weights (module call)": lambda: _mlp(False, share_params=False),
    "relu, one hidden layer": lambda: MultiAgentMLP(5, 2, n_agents=3, centralized=False, share_params=True, depth=1,
                                                    num_cells=6, activation_class=nn.ReLU),
    "no hidden layer": lambda: MultiAgentMLP(5, 2, n_agents=3, centralized=True, share_params=True, depth=0),
}


@pytest.mark.parametrize("name", list(NETS))
def test_concat_mlp_is_the_multi_agent_mlp_call(name):
    stock = StockConcatMLP(NETS[name]())
    net = ConcatMLP(stock.mlp)
    inputs = (torch.randn(6, 2, 3, 4), torch.randn(6, 2, 3, 1))
    expected = stock(*inputs)
    mlp = stock.mlp[0] if isinstance(stock.mlp, nn.Sequential) else stock.mlp
    calls = []
    hook = mlp.register_forward_hook(lambda *args: calls.append(1))
    found = net(*inputs)
    hook.remove()
    assert len(calls) == (0 if mlp.share_params else 1)  # shared weights: run on the parameters, no module call
    expected, found = (expected if isinstance(expected, tuple) else (expected,),
                       found if isinstance(found, tuple) else (found,))
    assert len(found) == len(expected)
    for a, b in zip(found, expected):
        assert a.shape == b.shape and torch.equal(a, b)
    for a, b in zip(_grads(net, found), _grads(net, expected)):
        assert torch.equal(a, b)


def test_multi_agent_mlp_keeps_its_errors_and_leaves_other_modules_alone():
    with pytest.raises(ValueError, match=r"expected input with shape\[-2\]=3"):
        multi_agent_mlp(_mlp(False), torch.zeros(2, 4, 5))
    linear = nn.Linear(5, 2)
    x = torch.randn(4, 5)
    assert torch.equal(multi_agent_mlp(linear, x), linear(x))


def test_multi_agent_mlp_reads_the_parameters_in_place():
    net = _mlp(True)
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)  # as an optimiser step or a loaded state dict does
    assert torch.equal(multi_agent_mlp(net, x), net(x))
    net.load_state_dict({k: torch.ones_like(v) for k, v in net.state_dict().items()})
    assert torch.equal(multi_agent_mlp(net, x), net(x))


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
