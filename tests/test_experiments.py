"""The experiment tooling of issue 11: self-documenting CLI, YAML configs, multi-seed runs, diagnostics, pictures."""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import warnings

import pytest
import torch

from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.graph import NEIGHBOURHOODS, PHI_OPTIONS
from torchrl_rn.train import RNTrainer, TrainConfig, cli, main
from torchrl_rn.train.config import ALGOS, CRITICS, LOGGERS
from torchrl_rn.train.stats import mean_ci95

TINY = ["--task", "mock", "--frames", "200", "--frames-per-batch", "100", "--max-steps", "5", "--minibatch-size", "50",
        "--epochs", "1", "--num-cells", "8", "--manager-cells", "8", "--eval-envs", "4", "--eval-every", "1",
        "--no-progress"]


def tiny_config(tmp_path, **overrides):
    kwargs = {"task": "mock", "graph": "tree:2", "frames": 200, "frames_per_batch": 100, "max_steps": 5,
              "minibatch_size": 50, "epochs": 2, "num_cells": 8, "manager_cells": 8, "eval_every": 1, "eval_envs": 4,
              "out": str(tmp_path / "run")}
    kwargs.update(overrides)
    if kwargs.get("algo", "rn") != "rn":  # RN-only settings are refused for the baselines
        kwargs.pop("graph"), kwargs.pop("manager_cells")
    return TrainConfig(**kwargs)


def mock_env_fn(num_envs, seed):
    return MockMultiAgentEnv(3, num_envs=num_envs, seed=seed, max_steps=5)


def subparser(name: str) -> argparse.ArgumentParser:
    action = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[0] if a.option_strings else a.dest: a for a in parser._actions
            if a.dest != "help"}


# ---------------------------------------------------------------- item 1: help, choices, YAML
@pytest.mark.parametrize("command", ["train", "eval", "show"])
def test_every_option_explains_its_meaning(command):
    for name, action in options(subparser(command)).items():
        meaning = re.sub(r"\[[^\]]*default:[^\]]*\]", "", action.help or "").strip()
        assert len(meaning.split()) >= 3, (command, name, action.help)  # more than "default: X"


def test_closed_sets_are_choices_and_units_are_shown():
    train = options(subparser("train"))
    assert tuple(train["--algo"].choices) == ALGOS
    assert tuple(train["--phi"].choices) == PHI_OPTIONS
    assert tuple(train["--critic"].choices) == CRITICS
    assert tuple(train["--neighbourhood"].choices) == NEIGHBOURHOODS
    assert tuple(train["--logger"].choices) == tuple(LOGGERS)
    assert "[frames; default: 60000]" in train["--frames"].help and "[steps;" in train["--max-steps"].help
    text = subparser("train").format_help()
    assert "BRANCHING FACTORS" in text and "tree:2,2" in text and "dag:M+root" in text and ".json" in text
    eval_help = subparser("eval").format_help()
    assert "--episodes" in eval_help and "--seed" in eval_help and "--video" in eval_help
    assert "why the return may differ" in eval_help


def test_bad_choice_is_rejected_by_the_parser(capsys):
    assert main(["train", "--algo", "qmix"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'qmix'" in err and err.startswith("rn: error:") and err.count("\n") == 1


def test_config_file_flags_override_and_the_run_config_round_trips(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("task: mock\ngraph: dag:2\nlr: 0.001\nbeta: 0.25\nframes: 100\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(exp), "--lr", "0.002", *TINY[4:], "--out", str(out)]) == 0, \
        capsys.readouterr().err
    ran = TrainConfig.from_yaml(out / "config.yaml")
    assert (ran.graph, ran.beta, ran.lr, ran.frames, ran.epochs) == ("dag:2", 0.25, 0.002, 100, 1)  # flag > file
    assert json.loads((out / "config.json").read_text())["lr"] == 0.002  # config.json kept for older readers
    again = cli.config_from_args(cli._parser().parse_args(["train", "--config", str(out / "config.yaml")]))
    assert again == ran
    assert TrainConfig.from_yaml(out / "config.yaml", seed=5) == TrainConfig(**{**ran.__dict__, "seed": 5})


def test_config_file_with_an_unknown_field_names_it(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("task: mock\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(exp)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exp.yaml" in err and "['learning_rate']" in err


# ---------------------------------------------------------------- item 2: seeds
def test_seeds_write_one_folder_per_seed_and_an_aggregate(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["train", *TINY, "--seeds", "0,3", "--out", str(out)]) == 0, capsys.readouterr().err
    finals = []
    for seed in (0, 3):
        assert TrainConfig.from_yaml(out / f"seed{seed}" / "config.yaml").seed == seed
        rows = list(csv.DictReader((out / f"seed{seed}" / "metrics.csv").read_text().splitlines()))
        finals.append(float(rows[-1]["eval_return"]))
    assert finals[0] != finals[1]  # the seeds really differ
    aggregate = list(csv.DictReader((out / "aggregate.csv").read_text().splitlines()))
    assert [int(r["frames"]) for r in aggregate] == [100, 200]
    mean, ci = mean_ci95(finals)
    assert float(aggregate[-1]["eval_return_mean"]) == pytest.approx(mean)
    assert float(aggregate[-1]["eval_return_ci95"]) == pytest.approx(ci)
    assert ci == pytest.approx(12.706 * abs(finals[0] - finals[1]) / 2)  # t(0.975, 1) * sd / sqrt(2)
    summary = json.loads((out / "aggregate.json").read_text())
    assert summary["seeds"] == [0, 3] and summary["final_eval_return"]["mean"] == pytest.approx(mean)
    assert (out / "aggregate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_each_value_over_the_seeds(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["train", *TINY, "--frames", "100", "--sweep", "beta=0,0.5", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    for beta in (0.0, 0.5):
        assert TrainConfig.from_yaml(out / f"beta{beta}" / "seed0" / "config.yaml").beta == beta
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["values"] == ["0.0", "0.5"] and summary["seeds"] == [0]
    rows = list(csv.DictReader((out / "beta0.5" / "seed0" / "metrics.csv").read_text().splitlines()))
    assert summary["final_eval_return"]["0.5"]["mean"] == pytest.approx(float(rows[-1]["eval_return"]))
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["train", "--sweep", "learning_rate=1,2"]) == 2
    assert "--sweep takes FIELD=V1,V2" in capsys.readouterr().err


def test_bad_seed_list_is_rejected(capsys):
    assert main(["train", "--seeds", "0,a"]) == 2
    err = capsys.readouterr().err
    assert "--seeds takes integers" in err and err.count("\n") == 1


# ---------------------------------------------------------------- item 3: diagnostics
DIAGNOSTICS = ("kl_approx", "clip_fraction", "entropy", "explained_variance", "loss_objective", "loss_critic",
               "loss_entropy")


@pytest.mark.parametrize(("algo", "groups"), [("rn", ("agents", "level1")), ("mappo", ("agents",))])
def test_metrics_csv_has_finite_diagnostics_per_group(tmp_path, algo, groups):
    trainer = RNTrainer(tiny_config(tmp_path, algo=algo), env_fn=mock_env_fn, progress=False)
    trainer.train()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    columns = [f"{g}/{d}" for g in groups for d in DIAGNOSTICS] + ["loss", "grad_norm"]
    if algo == "rn":
        columns += [f"{g}/grad_norm" for g in groups]
    for row in rows:
        for column in columns:
            assert math.isfinite(float(row[column])), (column, row[column])
        assert 0.0 <= float(row[f"{groups[0]}/clip_fraction"]) <= 1.0


def test_update_reports_means_over_minibatches(tmp_path, monkeypatch):
    trainer = RNTrainer(tiny_config(tmp_path), env_fn=mock_env_fn, progress=False)
    losses, norms = [], []
    loss_value, clip = trainer._loss_value, torch.nn.utils.clip_grads_with_norm_

    def recording_loss(batch):
        loss, out = loss_value(batch)
        losses.append(loss.detach().item())
        return loss, out

    def recording_clip(params, max_norm, total_norm, **kwargs):
        norms.append(float(total_norm))
        return clip(params, max_norm, total_norm, **kwargs)

    monkeypatch.setattr(trainer, "_loss_value", recording_loss)
    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", recording_clip)
    collector = trainer.make_collector(100)
    data = next(iter(collector))
    collector.shutdown()
    diagnostics = trainer.update(data)
    assert len(losses) == 4  # 2 epochs x 2 minibatches
    assert diagnostics["loss"] == pytest.approx(sum(losses) / 4) and losses[-1] != pytest.approx(sum(losses) / 4)
    assert diagnostics["grad_norm"] == pytest.approx(sum(norms) / 4)


def test_clip_gradients_is_clip_grad_norm_with_group_norms():
    from torchrl_rn.train.trainer import _clip_gradients

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(5)]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, q in zip(params, reference):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    params[4].grad = reference[4].grad = None  # a parameter without a gradient is skipped, as torch skips it
    row = _clip_gradients(params, {"a": params[:2], "b": params[2:]}, max_norm=0.5)
    total = torch.nn.utils.clip_grad_norm_(reference, 0.5)
    assert row["grad_norm"] == float(total)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(params[:4], reference[:4]))  # clipped the same
    by_hand = [float(torch.cat([q.grad.flatten() for q in qs]).norm()) for qs in (reference[:2], reference[2:4])]
    assert row["a/grad_norm"] == pytest.approx(by_hand[0] * float(total) / 0.5, rel=1e-5)  # before clipping
    assert row["b/grad_norm"] == pytest.approx(by_hand[1] * float(total) / 0.5, rel=1e-5)


def test_tensorboard_logger_writes_the_diagnostics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    RNTrainer(tiny_config(tmp_path, logger="tensorboard"), env_fn=mock_env_fn, progress=False).train()
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"eval_return", "loss", "level1/kl_approx", "agents/explained_variance"} <= set(tags)
    assert [e.step for e in acc.Scalars("eval_return")] == [100, 200]


# ---------------------------------------------------------------- item 4: pictures
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_show_draws_the_network_with_its_numbers(trained_run, capsys):
    assert main(["show", str(trained_run), "--episodes", "4"]) == 0, capsys.readouterr().err
    assert (trained_run / "network.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads((trained_run / "network.json").read_text())
    assert set(stats) == {"motor_0", "motor_1", "motor_2", "l1_0", "l1_1"}  # mock: 3 agents, l1_1 has one
    for v, s in stats.items():
        assert math.isfinite(s["return"]) and math.isfinite(s["entropy"]), v
        assert ("influence" in s) == v.startswith("l1"), v
    # tree:2 with psi="sum": a manager's return is the sum of its two motors'
    assert stats["l1_0"]["return"] == pytest.approx(stats["motor_0"]["return"] + stats["motor_1"]["return"], rel=1e-4)
    assert stats["l1_0"]["influence"] > 0  # untrained motors do read their instruction


def test_show_draws_a_baseline_as_a_flat_team(tmp_path):
    from torchrl_rn.train.show import show_run

    RNTrainer(tiny_config(tmp_path, algo="mappo", frames=100), env_fn=mock_env_fn, progress=False).train()
    path = show_run(tmp_path / "run", episodes=2, env_fn=mock_env_fn)
    stats = json.loads(path.with_suffix(".json").read_text())
    assert set(stats) == {"motor_0", "motor_1", "motor_2"}
    assert all(s["group"] == "agents" and "influence" not in s and math.isfinite(s["entropy"]) for s in stats.values())


def test_influence_is_zero_when_subordinates_ignore_instructions(tmp_path):
    from torchrl_rn.train.show import vertex_stats

    trainer = RNTrainer(tiny_config(tmp_path), env_fn=mock_env_fn, progress=False)
    stats = vertex_stats(trainer, episodes=2)
    assert stats["l1_0"]["influence"] > 0
    for p in trainer.composer.actor("agents").parameters():
        p.data.zero_()  # the motors' actions no longer depend on anything, instructions included
    assert vertex_stats(trainer, episodes=2)["l1_0"]["influence"] == 0.0


def test_eval_reports_spread_with_its_seed(trained_run, capsys):
    from torchrl_rn.train.evaluate import evaluate_run

    assert main(["eval", str(trained_run), "--episodes", "6", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    report = evaluate_run(trained_run, episodes=6, seed=3)
    assert len(report.returns) == 6 and report.std > 0
    mean, ci = mean_ci95(report.returns)
    assert f"mean {mean:.3f}" in out and f"95% CI +-{ci:.3f}" in out and "6 episodes, seed 3" in out
    assert "recorded during training" in out and "different initial states" in out
    assert evaluate_run(trained_run, episodes=6, seed=3).returns == report.returns
    assert evaluate_run(trained_run, episodes=6, seed=4).returns != report.returns


def test_eval_video_of_a_non_vmas_run_fails_in_one_line(trained_run, capsys):
    assert main(["eval", str(trained_run), "--episodes", "2", "--video"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "renders VMAS tasks only" in err


def test_eval_video_writes_a_gif_of_a_vmas_rollout(tmp_path, capsys):
    pytest.importorskip("vmas")
    pytest.importorskip("pyglet", reason="VMAS renders with pyglet")
    imageio = pytest.importorskip("imageio.v2")
    out = tmp_path / "vmas"
    tiny = ["--task", "vmas/balance", "--frames", "40", "--frames-per-batch", "40", "--max-steps", "10",
            "--minibatch-size", "40", "--epochs", "1", "--num-cells", "8", "--manager-cells", "8", "--eval-envs", "2",
            "--no-progress", "--out", str(out)]
    assert main(["train", *tiny]) == 0, capsys.readouterr().err
    code = main(["eval", str(out), "--episodes", "2", "--video"])
    captured = capsys.readouterr()
    if code != 0 and "pyglet" in captured.err:
        pytest.skip(f"VMAS cannot render here: {captured.err.strip()}")
    assert code == 0, captured.err
    frames = imageio.mimread(out / "eval.gif")
    assert len(frames) == 11 and frames[0].shape[-1] in (3, 4)  # the initial state and 10 steps
    assert any((f != frames[0]).any() for f in frames[1:])  # the agents move


# ---------------------------------------------------------------- item 6: quiet console
def test_cli_quiets_torchrl_only_while_it_runs(monkeypatch):
    seen = {}

    class FakeTrainer:
        def claim(self):  # the run folder's lock (RNTrainer.claim)
            pass

        def train(self):
            seen["info"] = logging.getLogger("torchrl").isEnabledFor(logging.INFO)
            warnings.warn("Nested TransformedEnvs are automatically unwrapped by default.", UserWarning)
            return []

    monkeypatch.setattr(cli, "_build", lambda args: FakeTrainer())
    monkeypatch.setattr(cli, "_report", lambda trainer, history: None)
    before = logging.getLogger("torchrl").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--task", "mock"]) == 0
    assert seen["info"] is False and not caught
    assert logging.getLogger("torchrl").level == before  # restored: tests and library users still see everything


def test_gym_task_does_not_nest_transformed_envs(monkeypatch, tmp_path):
    pytest.importorskip("gymnasium")
    import torchrl.envs.transforms._base as base

    monkeypatch.setattr(base, "_AUTO_UNWRAP_WARNING_EMITTED", False)  # TorchRL warns once per process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RNTrainer(TrainConfig(task="gym/Pendulum-v1", graph="flat", frames_per_batch=20, max_steps=10, eval_envs=2,
                              num_cells=8, minibatch_size=10, out=str(tmp_path / "run")), progress=False)
    assert not [w for w in caught if "Nested TransformedEnvs" in str(w.message)]


def test_seeds_and_sweeps_refuse_bad_graphs_and_values_in_one_line(tmp_path, capsys):
    assert main(["train", *TINY, "--graph", "tree:0", "--seeds", "0,1", "--out", str(tmp_path / "a")]) == 2
    assert main(["train", *TINY, "--sweep", "beta=0,2", "--out", str(tmp_path / "b")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "tree:0" in errors[0] and "--beta" in errors[1]
    assert not (tmp_path / "b").exists()  # the bad value is refused before the good one's run
