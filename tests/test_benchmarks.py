"""The benchmark scripts run end to end with their tiny presets and write files of the documented schema."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    # this checkout's torchrl_rn, not whichever one the venv has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=True, cwd=ROOT,
                          timeout=300, capture_output=True, text=True, env=env).stdout


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_learning_tiny_writes_json_and_png(tmp_path):
    # first one slice (MAPPO, seed 1), as if the benchmark had been stopped after it; the rerun keeps it, adds the rest
    run("learning.py", "--tiny", "--out", str(tmp_path), "--methods", "mappo", "--seeds", "1", "--threads", "1",
        "--reeval", "4")
    scored = json.loads((tmp_path / "vmas-balance.reeval.json").read_text())  # re-evaluated as soon as it finished
    assert scored["episodes"] == 4 and {m: set(e["seeds"]) for m, e in scored["methods"].items()} == {"mappo": {"1"}}
    (tmp_path / "vmas-balance.reeval.json").unlink()  # as if it had finished before runs were re-evaluated
    partial = json.loads((tmp_path / "vmas-balance.json").read_text())
    assert set(partial["methods"]) == {"mappo"} and set(partial["methods"]["mappo"]["seeds"]) == {"1"}
    assert partial["methods"]["mappo"]["seeds"]["1"]["threads"] == 1
    partial["hyperparameters"]["methods"] = ["mappo"]  # as if written before the preset had more methods: kept
    (tmp_path / "vmas-balance.json").write_text(json.dumps(partial))
    out = run("learning.py", "--tiny", "--out", str(tmp_path), "--reeval", "4")
    assert out.count("kept from") == 1 and out.count("eval return") == 3
    # the kept run, whose folder is here, is scored too: every finished run has its re-evaluated score
    assert out.count("re-evaluated on 4 episodes") == 4
    scored = json.loads((tmp_path / "vmas-balance.reeval.json").read_text())
    assert {m: set(e["seeds"]) for m, e in scored["methods"].items()} == {"mappo": {"0", "1"}, "rn-tree2": {"0", "1"}}
    result = json.loads((tmp_path / "vmas-balance.json").read_text())
    assert result["methods"]["mappo"]["seeds"]["1"] == partial["methods"]["mappo"]["seeds"]["1"]
    assert (tmp_path / "vmas-balance.png").stat().st_size > 1000
    assert result["task"] == "vmas/balance" and result["preset"] == "tiny" and result["seeds"] == [0, 1]
    assert set(result["methods"]) == {"mappo", "rn-tree2"}
    for method in result["methods"].values():
        assert {"final_mean", "final_ci95", "frames_per_second", "definition", "seeds"} <= set(method)
        assert method["final_ci95"] >= 0
        for run_ in method["seeds"].values():
            assert run_["frames"] == [100, 200] and len(run_["eval_return"]) == 2
    for run_ in result["methods"]["rn-tree2"]["seeds"].values():  # the manager's influence at every evaluation
        assert list(run_["influence"]) == ["level1"] and len(run_["influence"]["level1"]) == 2
    assert all("influence" not in run_ for run_ in result["methods"]["mappo"]["seeds"].values())
    # every finished run re-evaluated on fresh episodes (eval seed 1000 + training seed), as `rn eval` scores it
    run("reevaluate.py", "--preset", tmp_path.name, "--task", "vmas/balance", "--episodes", "4",
        "--results", str(tmp_path.parent))
    reeval = json.loads((tmp_path / "vmas-balance.reeval.json").read_text())
    assert {m: set(e["seeds"]) for m, e in reeval["methods"].items()} == {"mappo": {"0", "1"}, "rn-tree2": {"0", "1"}}
    from torchrl_rn.train.evaluate import evaluate_run

    again = evaluate_run(tmp_path / "runs" / "vmas-balance" / "rn-tree2" / "seed1", episodes=4, seed=1001)
    assert reeval["methods"]["rn-tree2"]["seeds"]["1"]["return"] == pytest.approx(again.mean, abs=1e-5)
    assert reeval["methods"] == scored["methods"]  # the harness scores a run exactly as reevaluate.py does
    # --methods / --seeds re-evaluate only the runs named; the others keep their scores from the file
    for method, seed in (("mappo", "0"), ("rn-tree2", "0"), ("rn-tree2", "1")):
        reeval["methods"][method]["seeds"][seed]["return"] = 123.0
    (tmp_path / "vmas-balance.reeval.json").write_text(json.dumps(reeval))
    run("reevaluate.py", "--preset", tmp_path.name, "--task", "vmas/balance", "--episodes", "4",
        "--results", str(tmp_path.parent), "--methods", "rn-tree2", "--seeds", "1")
    partly = json.loads((tmp_path / "vmas-balance.reeval.json").read_text())
    assert partly["methods"]["mappo"]["seeds"]["0"]["return"] == partly["methods"]["rn-tree2"]["seeds"]["0"]["return"]
    assert partly["methods"]["mappo"]["seeds"]["0"]["return"] == 123.0
    assert partly["methods"]["rn-tree2"]["seeds"]["1"]["return"] == pytest.approx(again.mean, abs=1e-5)


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_throughput_training_only_times_the_fused_loss_too(tmp_path):
    out = run("throughput.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1", "--training-only",
              "--fused")
    result = json.loads((tmp_path / "training.json").read_text())
    assert result["threads"] == 1 and not (tmp_path / "throughput.json").exists()
    assert set(result["frames_per_second"]) == {"rn", "mappo", "rn_fused"}
    assert len(result["samples"]["rn_fused"]) == len(result["samples"]["mappo"]) == 2
    rates = result["frames_per_second"]
    assert result["rn_fused_over_mappo"] == rates["rn_fused"] / rates["mappo"]
    assert "fused loss: RN" in out


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_fused_curves_tiny_runs_both_paths_to_the_same_curves(tmp_path):
    out = run("fused_curves.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1")
    result = json.loads((tmp_path / "fused_curves.json").read_text())
    assert (tmp_path / "fused_curves.png").stat().st_size > 0
    fused, reference = result["fused"], result["per_group"]
    assert fused["frames"] == reference["frames"] == [200, 400]
    assert fused["eval_return"] == reference["eval_return"] and fused["loss"] == reference["loss"]
    assert result["max_abs_difference"] == {"train_return": 0.0, "eval_return": 0.0, "loss": 0.0}
    assert "largest difference between the fused and per-group runs: train_return 0" in out


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_throughput_tiny_writes_json_and_png_and_table(tmp_path):
    run("throughput.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1")
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["threads"] == 1
    assert (tmp_path / "throughput.png").stat().st_size > 1000
    assert result["training"]["rn_over_mappo"] > 0 and len(result["training"]["samples"]["rn"]) == 2
    assert {(r["motors"], r["graph"]) for r in result["policy"]} == {
        (n, g) for n in (4, 8) for g in ("flat", "tree:2", "tree:2,2")
    }
    assert result["vmas_frames_per_second"] > 0
    assert [(r["algo"], r["workers"]) for r in result["workers"]] == [("rn", 1)]
    for r in result["workers"]:
        assert len(r["collection_samples"]) == len(r["training_samples"]) == 2
        assert r["training_frames_per_second"] <= r["collection_frames_per_second"]  # training includes collection
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nSTALE TABLE\n<!-- results:end -->\noutro\n")
    run("make_table.py", "--results", str(tmp_path), "--readme", str(readme))  # report.py's old name
    text = readme.read_text()
    assert "STALE TABLE" not in text and "ratio **" in text and text.startswith("intro") and text.endswith("outro\n")
    assert "ratio **" in (tmp_path / "docs" / "performance.md").read_text()  # docs/ beside the README


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_learning_starts_afresh_on_other_hyperparameters(tmp_path):
    stale = {"task": "vmas/balance", "preset": "tiny", "hyperparameters": {"frames": 1}, "seeds": [0, 1],
             "methods": {"mappo": {"seeds": {"0": {}, "1": {}}}}}
    (tmp_path / "vmas-balance.json").write_text(json.dumps(stale))
    out = run("learning.py", "--tiny", "--out", str(tmp_path), "--methods", "mappo")
    assert "other hyperparameters" in out and "kept from" not in out
    result = json.loads((tmp_path / "vmas-balance.json").read_text())
    assert result["hyperparameters"]["frames"] == 200 and result["methods"]["mappo"]["seeds"]["0"]["frames"] == [100, 200]
    assert json.loads((tmp_path / "superseded" / "vmas-balance-1.json").read_text()) == stale  # nothing lost


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_table_marks_methods_short_of_seeds(tmp_path):
    def method(finals):  # each run: an early evaluation of 10, then its final one
        return {"seeds": {str(i): {"eval_return": [10.0, f]} for i, f in enumerate(finals)}}

    result = {"task": "vmas/balance", "preset": "full", "hyperparameters": {"frames": 1000}, "seeds": [0, 1, 2],
              "methods": {"mappo": method([1.0, 2.0, 3.0]), "rn-tree2": method([4.0])}}
    (tmp_path / "vmas-balance.json").write_text(json.dumps(result))
    spread = {"task": "vmas/simple_spread", "preset": "spread", "seeds": [0],
              "hyperparameters": {"frames": 300, "normalize_advantage": True, "time_limit": "truncated"}, "methods": {"mappo": method([-5.0])}}
    (tmp_path / "vmas-simple_spread.json").write_text(json.dumps(spread))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    run("report.py", "--results", str(tmp_path), "--readme", str(readme))
    text = (tmp_path / "docs" / "results.md").read_text()
    # final returns 1, 2, 3: mean 2, t(2) = 4.303 times 1 / sqrt(3) = 2.48; means of the last evaluations 5.5, 6, 6.5
    # and 7. The balance file predates Preset.time_limit: its runs treated the time limit as a termination
    balance, spread = text.split("### vmas/simple_spread")
    assert "### vmas/balance (full, 3 seeds, 1,000 frames, time limit as termination, no verdicts)" in balance
    assert "| MAPPO (`mappo`) | 3 | 2.0 ± 2.5 |  |  | 6.0 ± 1.2 |" in balance
    assert "| RN, a manager per pair (`rn-tree2`) | 1 | 4.0 (1 of 3 seeds) |  |  | 7.0 (1 of 3 seeds) |" in balance
    assert spread.startswith(" (spread, 1 seed, 300 frames, normalized advantages)")
    assert "| MAPPO (`mappo`) | 1 | -5.0 |" in spread and "| RN, a manager per pair" not in spread
    assert "| vmas/balance (full, 1,000) | 2.0 ± 2.5 |  | 1 | no verdicts" in readme.read_text()  # the summary


@pytest.fixture
def learning(monkeypatch):
    """``benchmarks/learning.py`` as a module."""
    spec = importlib.util.spec_from_file_location("learning", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning", module)  # dataclasses look their module up there
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its sibling modules import
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def harness(learning):
    """``benchmarks/harness.py``, the module ``learning.py`` runs (patch its names, not ``learning``'s copies)."""
    return sys.modules["harness"]


def write_older_result(learning, path: Path, missing: str) -> dict:
    """A tiny-preset JSON with one MAPPO run, as written before ``Preset`` had the field ``missing``."""
    old = learning.load_result(path, "vmas/balance", learning.PRESETS["tiny"], "tiny")
    del old["hyperparameters"][missing]
    old["methods"]["mappo"] = {"seeds": {"0": {"eval_return": [1.0]}}}
    path.write_text(json.dumps(old))
    return old


def test_runs_from_before_a_new_hyperparameter_are_kept_at_its_default(tmp_path, learning):
    # a JSON written before Preset had normalize_advantage: its runs used the default (False), so they are kept...
    preset, path = learning.PRESETS["tiny"], tmp_path / "vmas-balance.json"
    write_older_result(learning, path, "normalize_advantage")
    kept = learning.load_result(path, "vmas/balance", preset, "tiny")
    assert kept["methods"]["mappo"]["seeds"] == {"0": {"eval_return": [1.0]}}
    assert kept["hyperparameters"]["normalize_advantage"] is False
    # ... but not by a preset that sets it
    other = dataclasses.replace(preset, normalize_advantage=True)
    assert learning.load_result(path, "vmas/balance", other, "tiny")["methods"] == {}


def test_declaring_seed_groups_keeps_the_runs(tmp_path, learning):
    # seed groups name subsets for the tables (a replication declared before it runs): not a training setting
    preset, path = learning.PRESETS["tiny"], tmp_path / "vmas-balance.json"
    write_older_result(learning, path, "seed_groups")
    grouped = dataclasses.replace(preset, seed_groups={"replication": (2, 3)})
    kept = learning.load_result(path, "vmas/balance", grouped, "tiny")
    assert kept["methods"]["mappo"]["seeds"] == {"0": {"eval_return": [1.0]}}
    assert kept["hyperparameters"]["seed_groups"] == {"replication": [2, 3]}


def test_runs_from_before_truncated_time_limits_are_not_mixed_with_new_ones(tmp_path, learning):
    # files written before Preset.time_limit ran VMAS with its horizon as a termination: never extended by new runs
    preset, path = learning.PRESETS["tiny"], tmp_path / "vmas-balance.json"
    old = write_older_result(learning, path, "time_limit")
    assert learning.load_result(path, "vmas/balance", preset, "tiny")["methods"] == {}
    assert json.loads((tmp_path / "superseded" / "vmas-balance-1.json").read_text()) == old


def test_every_training_field_of_a_preset_reaches_the_trainer(tmp_path, learning, harness, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def trainer(cfg, **kwargs):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(harness, "RNTrainer", trainer)
    preset = dataclasses.replace(learning.PRESETS["tiny"], lr=7e-4, lmbda=0.95, max_grad_norm=10.0,
                                 continuous_actions=False, entropy_coeff=0.01, value_norm=True)
    with pytest.raises(Stop):
        learning.run_one(preset, "vmas/balance", "mappo", 0, tmp_path)
    cfg = seen["cfg"]
    assert (cfg.lr, cfg.lmbda, cfg.max_grad_norm, cfg.continuous_actions) == (7e-4, 0.95, 10.0, False)
    assert (cfg.entropy_coeff, cfg.value_norm, cfg.epochs, cfg.minibatch_size) == (0.01, True, 1, 50)


def test_graphs_name_one_rn_method_per_graph_spec(learning):
    methods = learning.graph_methods("flat,tree:2,tree:2,2,dag:2+root")
    assert methods == ["mappo", "ippo", "rn[flat]", "rn[tree:2]", "rn[tree:2,2]", "rn[dag:2+root]"]
    assert learning.definition("rn[tree:2,2]") == {"algo": "rn", "graph": "tree:2,2"}
    assert learning.definition("rn-tree3") == {"algo": "rn", "graph": "tree:2,2"}
    with pytest.raises(KeyError):
        learning.definition("rn[]")


def test_parallel_slices_merge_instead_of_overwriting(tmp_path, learning):
    # two processes load the same (empty) task JSON, each finishes a different run and saves: both runs survive
    preset, path = learning.PRESETS["tiny"], tmp_path / "vmas-balance.json"
    first = learning.load_result(path, "vmas/balance", preset, "tiny")
    second = learning.load_result(path, "vmas/balance", preset, "tiny")

    def add(result, method, seed, final):
        entry = result["methods"].setdefault(method, {"definition": learning.METHODS[method], "seeds": {}})
        entry["seeds"][seed] = {"frames": [100], "eval_return": [final], "frames_per_second": 1.0}

    add(first, "mappo", "0", 1.0)
    learning.save_result(first, path)
    add(second, "mappo", "1", 3.0)
    add(second, "rn-tree2", "0", 5.0)
    merged = learning.save_result(second, path)
    on_disk = json.loads(path.read_text())
    assert merged == on_disk
    assert set(on_disk["methods"]["mappo"]["seeds"]) == {"0", "1"} and on_disk["methods"]["mappo"]["final_mean"] == 2.0
    assert on_disk["methods"]["rn-tree2"]["final_mean"] == 5.0


def test_a_run_is_claimed_by_one_slice_and_a_dead_slice_claim_is_taken_over(tmp_path, learning):
    path, claim = tmp_path / "vmas-balance.json", tmp_path / "runs" / "vmas-balance" / "mappo" / "seed0.claim"
    assert learning.claim_run(claim, path) is None and claim.read_text() == str(os.getpid())
    claim.write_text(str(os.getppid()))  # held by a live process (this test's parent)
    assert learning.claim_run(claim, path) == os.getppid()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim.write_text(dead.stdout.strip())  # held by a process that has exited
    assert learning.claim_run(claim, path) is None and claim.read_text() == str(os.getpid())


def test_a_slice_skips_runs_claimed_or_finished_by_another(tmp_path, learning, capsys):
    path = tmp_path / "vmas-balance.json"
    claim = tmp_path / "runs" / "vmas-balance" / "mappo" / "seed0.claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(str(os.getppid()))  # another slice is training MAPPO seed 0
    learning.main(["--tiny", "--out", str(tmp_path), "--methods", "mappo", "--seeds", "0", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert f"mappo seed 0: being run by another slice (pid {os.getppid()}), skipped" in out
    assert set(json.loads(path.read_text())["methods"]["mappo"]["seeds"]) == {"1"}
    assert not (claim.parent / "seed1.claim").exists()  # released after its run
    # a slice that loaded the JSON before another one saved a run sees it on disk before starting it
    stale = learning.load_result(path, "vmas/balance", learning.PRESETS["tiny"], "tiny")
    fresh = json.loads(path.read_text())
    fresh["methods"]["mappo"]["seeds"]["0"] = dict(fresh["methods"]["mappo"]["seeds"]["1"])
    path.write_text(json.dumps(fresh))
    del stale["methods"]["mappo"]["seeds"]["1"]
    assert set(learning.merge_from_disk(stale, path)["methods"]["mappo"]["seeds"]) == {"0", "1"}


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_scaling_tiny_writes_json_and_png(tmp_path):
    run("scaling.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1")
    result = json.loads((tmp_path / "scaling.json").read_text())
    assert result["threads"] == 1 and result["preset_name"] == "tiny"
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    # tiny: 4 motors under tree:4 (one manager, 2 levels), 16 under tree:4,4 (4 + 1 managers, 3 levels)
    assert [(r["motors"], r["vertices"], r["levels"]) for r in result["rows"]] == [(4, 5, 2), (16, 21, 3)]
    for r in result["rows"]:
        assert len(r["rn_samples"]) == len(r["flat_samples"]) == 2
        assert r["rn_seconds_per_vertex"] == pytest.approx(r["rn_seconds"] / r["vertices"])
        assert r["ratio"] == pytest.approx(r["rn_seconds_per_vertex"] / r["flat_seconds_per_agent"])
        assert r["rn_peak_bytes"] > 0 and r["flat_peak_bytes"] > 0


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_breakdown_tiny_writes_json_and_table(tmp_path):
    run("breakdown.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1")
    result = json.loads((tmp_path / "breakdown.json").read_text())
    assert result["threads"] == 1 and set(result["iteration_seconds"]) == set(result["minibatch_ms"]) == {"rn", "mappo"}
    # tree:2 over 4 motors: the motors and one group of 2 managers, each timed on both minibatch sizes
    assert result["groups"]["agents"]["vertices"] == 4 and result["groups"]["level1"]["vertices"] == 2
    assert set(result["rn_group_forward_ms"]) == set(result["rn_group_forward_ms_tiny"]) == {"agents", "level1"}
    assert all(v > 0 for v in result["rn_group_forward_ms"].values())
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    run("report.py", "--results", str(tmp_path), "--readme", str(readme))
    performance = (tmp_path / "docs" / "performance.md").read_text()
    assert "Where the time goes" in performance and "`level1` (2 vertices" in performance


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_breakdown_fused_breaks_down_the_fused_loss_too(tmp_path):
    out = run("breakdown.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1", "--fused")
    result = json.loads((tmp_path / "breakdown.json").read_text())
    for part in ("iteration_seconds", "step_ms", "minibatch_ms"):
        assert set(result[part]) == {"rn", "mappo", "rn_fused"}
    assert result["minibatch_ms"]["rn_fused"]["forward"] > 0 and "rn_fused: collection" in out


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_tutorial_pipeline_tiny_writes_json_and_png(tmp_path):
    run("tutorial_pipeline.py", "--preset", "tiny", "--out", str(tmp_path), "--threads", "1")
    result = json.loads((tmp_path / "tutorial_pipeline.json").read_text())
    assert result["threads"] == 1 and result["preset"]["scenario"] == "navigation"
    assert (tmp_path / "tutorial_pipeline.png").stat().st_size > 1000
    assert {len(s) for s in result["samples"].values()} == {1}
    rates = result["frames_per_second"]
    assert result["rn_over_stock"] == pytest.approx(rates["rn"] / rates["stock"])


def test_a_run_stopped_mid_way_is_resumed_with_the_metrics_of_one_never_stopped(tmp_path, learning, harness,
                                                                                 monkeypatch):
    preset = dataclasses.replace(learning.PRESETS["tiny"], frames=300)  # 3 iterations of 100 frames
    whole = learning.run_one(preset, "vmas/balance", "mappo", 0, tmp_path / "whole")
    update, calls = harness.RNTrainer.update, []

    def killed_in_second_iteration(self, data):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the checkpoint of iteration 1 stays, as after a SIGKILL
        return update(self, data)

    monkeypatch.setattr(harness.RNTrainer, "update", killed_in_second_iteration)
    with pytest.raises(KeyboardInterrupt):
        learning.run_one(preset, "vmas/balance", "mappo", 0, tmp_path / "cut")

    def counted(self, data):
        calls.append(1)
        return update(self, data)

    monkeypatch.setattr(harness.RNTrainer, "update", counted)
    calls.clear()
    resumed = learning.run_one(preset, "vmas/balance", "mappo", 0, tmp_path / "cut")
    assert len(calls) == 2  # iterations 2 and 3 only: iteration 1 came from the checkpoint
    assert resumed["train_frames"] == whole["train_frames"] == [100, 200, 300]
    assert resumed["train_return"] == whole["train_return"] and resumed["eval_return"] == whole["eval_return"]
    # a checkpoint of other settings is not continued: that run starts afresh
    calls.clear()
    fresh = learning.run_one(dataclasses.replace(preset, lr=1e-3), "vmas/balance", "mappo", 0, tmp_path / "cut")
    assert len(calls) == 3 and fresh["train_frames"] == [100, 200, 300]


def test_wall_seconds_add_up_over_the_slices_of_a_resumed_run(harness):
    rows = [{"wall_seconds": w} for w in (1.0, 2.0, 0.5, 1.5, 0.25)]
    assert harness._wall_so_far(rows) == 2.0 + 1.5 + 0.25


def test_reps_overrides_the_preset_and_is_checked(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed_cli
    import throughput

    _, preset, _ = speed_cli.parse("doc", throughput.PRESETS, "tiny", "x", ["--out", str(tmp_path), "--reps", "7"])
    assert preset == dataclasses.replace(throughput.PRESETS["tiny"], reps=7)
    with pytest.raises(SystemExit) as exit_info:
        speed_cli.parse("doc", throughput.PRESETS, "tiny", "x", ["--out", str(tmp_path), "--reps", "0"])
    assert exit_info.value.code == 2 and "--reps must be at least 1, got 0" in capsys.readouterr().err
