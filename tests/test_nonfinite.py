"""A NaN or inf in rewards, observations or losses stops a run, naming the group and iteration (issue 12 item 6)."""
from __future__ import annotations

import csv

import pytest
import torch
from torchrl.envs import Transform, TransformedEnv

from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.train import NonFiniteError, RNTrainer, TrainConfig, load_checkpoint, main


class _PoisonAfter(Transform):
    """Writes NaN into ``key`` from the env's ``steps + 1``-th step on."""

    def __init__(self, steps: int, key) -> None:
        super().__init__()
        self.steps, self.key, self.calls = steps, key, 0

    def _step(self, tensordict, next_tensordict):
        self.calls += 1
        if self.calls > self.steps:
            next_tensordict.set(self.key, torch.full_like(next_tensordict.get(self.key), float("nan")))
        return next_tensordict


def _config(tmp_path, **overrides) -> TrainConfig:
    kwargs = {"task": "mock", "frames": 300, "frames_per_batch": 100, "max_steps": 5, "minibatch_size": 50,
              "epochs": 1, "num_cells": 8, "manager_cells": 8, "eval_every": 1, "eval_envs": 2,
              "out": str(tmp_path / "run")}
    return TrainConfig(**{**kwargs, **overrides})


def _poisoned(key, steps=5):
    # 20 envs x 5 steps per batch: the 6th step is the first of iteration 2
    return lambda n, seed: TransformedEnv(MockMultiAgentEnv(3, num_envs=n, max_steps=5, seed=seed),
                                          _PoisonAfter(steps if n == 20 else 10**9, key))


def _rows(tmp_path) -> list[dict]:
    with open(tmp_path / "run" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("key", "culprit"), [(("agents", "reward"), "group 'agents''s reward"),
                                              (("agents", "observation"), "group 'agents''s observation")])
def test_nan_in_the_batch_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, key, culprit):
    trainer = RNTrainer(_config(tmp_path), env_fn=_poisoned(key), progress=False)
    with pytest.raises(NonFiniteError, match="iteration 2: ") as err:
        trainer.train()
    assert culprit in str(err.value) and "(iteration 1)" in str(err.value)
    assert load_checkpoint(tmp_path / "run")["iteration"] == 1 and len(_rows(tmp_path)) == 1
    assert (tmp_path / "run" / "curve.png").exists()


def test_nan_loss_stops_the_run_naming_the_group(tmp_path):
    trainer = RNTrainer(_config(tmp_path), env_fn=lambda n, seed: MockMultiAgentEnv(3, num_envs=n, seed=seed),
                        progress=False)
    honest = trainer._loss_value
    calls = []

    def diverging(batch):  # the managers' critic diverges in the second iteration
        loss, out = honest(batch)
        calls.append(1)
        if len(calls) > 2:
            out.set(("level1", "loss_critic"), torch.tensor(float("inf")))
            loss = loss + out["level1", "loss_critic"]
        return loss, out

    trainer._loss_value = diverging
    before = [p.detach().clone() for p in trainer.loss.parameters()]
    with pytest.raises(NonFiniteError, match=r"iteration 2: the loss is inf \(level1/loss_critic\)"):
        trainer.train()
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["iteration"] == 1 and len(_rows(tmp_path)) == 1
    # the diverged minibatch never reached the optimiser: every parameter is finite
    assert all(p.isfinite().all() for p in trainer.loss.parameters()) and len(before) > 0


def test_cli_reports_a_diverged_run_in_one_line(tmp_path, monkeypatch, capsys):
    real_init = RNTrainer.__init__

    def init(self, config, **kwargs):  # the CLI's mock task, with its rewards turning NaN in iteration 2
        real_init(self, config, **{**kwargs, "env_fn": _poisoned(("agents", "reward"))})

    monkeypatch.setattr(RNTrainer, "__init__", init)
    code = main(["train", "--task", "mock", "--frames", "300", "--frames-per-batch", "100", "--max-steps", "5",
                 "--minibatch-size", "50", "--epochs", "1", "--num-cells", "8", "--manager-cells", "8",
                 "--eval-envs", "2", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("rn: stopped: iteration 2: ")
