"""CPPO (``--algo cppo``): fully centralised PPO, MAPPO's recipe with a centralised actor (E2's upper reference)."""
from __future__ import annotations

import pytest
import torch

from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.train import RNTrainer, TrainConfig
from torchrl_rn.train.algorithms import build_models
from torchrl_rn.train.collection import wrap_env


def _models(algo: str):
    torch.manual_seed(0)
    env = wrap_env(MockMultiAgentEnv(3, num_envs=2), None)
    return env, build_models(TrainConfig(task="mock", algo=algo, num_cells=8), env, None, device="cpu")


def _moves_other_agents(policy, td) -> bool:
    """Whether agent 0's action mean changes when only agent 1's observation does."""
    base = policy.module[0](td.clone())["agents", "loc"][..., 0, :]
    other = td.clone()
    other["agents", "observation"][..., 1, :] += 1.0
    return not torch.allclose(base, policy.module[0](other)["agents", "loc"][..., 0, :])


def test_cppo_actor_reads_every_agent_and_mappo_actor_does_not():
    env, cppo = _models("cppo")
    td = env.reset()
    assert _moves_other_agents(cppo.policy, td)
    assert type(cppo.loss).__name__ == "MAPPOLoss"
    _, mappo = _models("mappo")
    assert not _moves_other_agents(mappo.policy, td)
    # one set of actor weights per agent (a shared centralised net would give every agent the same action)
    net = next(m for m in cppo.policy.modules() if type(m).__name__ == "MultiAgentMLP")
    assert net.centralized and not net.share_params
    out = cppo.policy.module[0](td.clone())["agents", "loc"]
    assert not torch.allclose(out[..., 0, :], out[..., 1, :])


def test_cppo_trains_and_rn_options_are_refused(tmp_path):
    cfg = TrainConfig(task="mock", algo="cppo", frames=200, frames_per_batch=100, max_steps=5, minibatch_size=50,
                      epochs=1, num_cells=8, out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, env_fn=lambda n, seed: MockMultiAgentEnv(3, num_envs=n, seed=seed), progress=False)
    before = [p.detach().clone() for p in trainer.models.policy.parameters()]
    trainer.train()
    assert trainer.frames == 200 and cfg.method_name == "cppo"
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.models.policy.parameters()))
    with pytest.raises(ValueError, match="--graph applies only to --algo rn, not to --algo cppo"):
        TrainConfig(algo="cppo", graph="tree:4")
