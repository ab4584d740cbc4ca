"""Value normalisation as the MAPPO paper uses it: critics predict normalised values, losses compare on that scale."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchrl.modules import PopArtValueNorm

from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.train import RNTrainer, TrainConfig
from torchrl_rn.value_norm import Denormalize


def test_denormalize_maps_a_normalised_output_to_the_return_scale():
    norm = PopArtValueNorm(shape=1, beta=0.5)
    norm.update(torch.tensor([[-10.0], [-30.0]]))  # mean -20, std 10
    critic = Denormalize(nn.Identity(), norm)
    torch.testing.assert_close(critic(torch.tensor([[0.0], [1.5]])), torch.tensor([[-20.0], [-5.0]]), atol=1e-3,
                               rtol=0)
    # and a loss normalising with the same statistics sees the network's own output again
    torch.testing.assert_close(norm.normalize(critic(torch.tensor([[0.7]]))), torch.tensor([[0.7]]), atol=1e-5,
                               rtol=0)


def _trainer(tmp_path, algo: str) -> RNTrainer:
    extra = {"graph": "tree:2", "manager_cells": 8} if algo == "rn" else {}
    cfg = TrainConfig(task="mock", algo=algo, value_norm=True, frames=100, frames_per_batch=100, max_steps=5,
                      minibatch_size=50, epochs=1, num_cells=8, eval_envs=2, out=str(tmp_path / algo), **extra)
    return RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)


def _norms(trainer: RNTrainer) -> dict[str, tuple[nn.Module, PopArtValueNorm, Denormalize]]:
    """Per group: the loss, the ValueNorm it updates, and the critic network that outputs state values."""
    if trainer.config.algo == "rn":
        return {g: (loss, loss.value_norm, trainer.composer.value_head(g).module)
                for g, loss in trainer.loss.group_losses.items()}
    return {"agents": (trainer.loss, trainer.loss.value_norm, trainer.loss.critic_network.module)}


@pytest.mark.parametrize("algo", ["mappo", "ippo", "rn"])
def test_critic_and_loss_share_one_value_norm_per_group(tmp_path, algo):
    trainer = _trainer(tmp_path, algo)
    norms = _norms(trainer)
    assert set(norms) == ({"agents", "level1"} if algo == "rn" else {"agents"})
    for _, norm, net in norms.values():
        assert isinstance(norm, PopArtValueNorm) and isinstance(net, Denormalize) and net.value_norm is norm
        assert float(norm.debiasing_term) == 0.0
    trainer.train()
    obs = torch.randn(3, *trainer.env.full_observation_spec_unbatched["agents", "observation"].shape)
    for g, (_, norm, net) in norms.items():
        assert float(norm.debiasing_term) > 0.0, g  # the loss updated the statistics the critic uses
        mean, var = norm._running_stats()
        if algo != "rn":  # the critic's output is its network's normalised output, on the return scale
            torch.testing.assert_close(net(obs), net.net(obs) * var.sqrt() + mean)


def test_without_value_norm_nothing_changes(tmp_path):
    cfg = TrainConfig(task="mock", algo="mappo", frames=100, frames_per_batch=100, max_steps=5, minibatch_size=50,
                      epochs=1, num_cells=8, eval_envs=2, out=str(tmp_path / "plain"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(4, num_envs=n, seed=seed), progress=False)
    assert trainer.loss.value_norm is None and not isinstance(trainer.loss.critic_network.module, Denormalize)
