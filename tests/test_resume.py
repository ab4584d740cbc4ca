"""No run is lost, and a run killed at any point resumes to the metrics of one never interrupted."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchrl_rn import RNTrainer
from torchrl_rn.train import DeviceFallbackWarning, load_checkpoint, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "mock", "--frames", "300", "--frames-per-batch", "100", "--max-steps", "5", "--minibatch-size", "50",
        "--epochs", "2", "--num-cells", "16", "--eval-envs", "4", "--eval-every", "1", "--logger", "csv", "--seed", "3",
        "--no-progress"]
METRICS = ("iteration", "frames", "train_return", "eval_return", "loss")


def metrics(run: Path) -> list[tuple[str, ...]]:
    with (run / "metrics.csv").open() as f:
        return [tuple(row[k] for k in METRICS) for row in csv.DictReader(f)]


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    rows = metrics(out)
    assert len(rows) == 3 and all(r[3] for r in rows)  # every iteration evaluated
    return out


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing below the raise runs, no handler catches it."""


# (method, which call dies): during the first iteration, mid-update, mid-evaluation, between the checkpoint and the
# metrics file
KILL_POINTS = [("update", 1), ("update", 3), ("_evaluate", 2), ("_write_metrics", 2)]


@pytest.mark.parametrize("method, call", KILL_POINTS, ids=[f"{m}#{c}" for m, c in KILL_POINTS])
def test_killed_anywhere_then_resumed_gives_the_uninterrupted_metrics(uninterrupted, tmp_path, monkeypatch, method,
                                                                      call, capsys):
    owner = RNTrainer
    real = getattr(owner, method)
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, method, dying)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        main(["train", *TINY, "--out", str(out)])
    monkeypatch.setattr(owner, method, real)
    torch.manual_seed(12345)  # whatever the process did meanwhile, the checkpoint's random state counts
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert metrics(out) == metrics(uninterrupted)
    assert "done: 300 frames" in capsys.readouterr().out


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(uninterrupted, tmp_path):
    """A real ``rn train`` process, SIGKILLed once its first iteration is checkpointed, at whatever point it is."""
    out = tmp_path / "run"
    script = ("import sys, time\n"
              "from torchrl_rn import RNTrainer\n"
              "from torchrl_rn.train import main\n"
              "real = RNTrainer.update\n"
              "def slow(self, data):\n"
              "    time.sleep(0.25)  # a window to be killed in\n"
              "    return real(self, data)\n"
              "RNTrainer.update = slow\n"
              "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, "train", *TINY, "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            ckpt = out / "checkpoint.pt"
            if ckpt.exists() and load_checkpoint(ckpt)["iteration"] >= 1:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert 1 <= load_checkpoint(out)["iteration"] < 3
    assert main(["train", "--resume", str(out / "checkpoint.pt"), "--no-progress"]) == 0
    assert metrics(out) == metrics(uninterrupted)


def test_ctrl_c_keeps_the_checkpoint_plots_and_prints_the_resume_command(uninterrupted, tmp_path, monkeypatch,
                                                                          capsys):
    real, calls = RNTrainer.update, []

    def interrupted(self, data):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(RNTrainer, "update", interrupted)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == f"rn: interrupted after iteration 2 (200 frames); resume with: rn train --resume {out}\n"
    assert load_checkpoint(out)["iteration"] == 2 and (out / "curve.png").exists()
    monkeypatch.setattr(RNTrainer, "update", real)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert metrics(out) == metrics(uninterrupted)


def test_resume_writes_into_the_folder_of_the_checkpoint(uninterrupted, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(uninterrupted, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = tree(original)
    assert main(["train", "--resume", str(copy / "checkpoint.pt"), "--frames", "400", "--task", "mock",
                 "--no-progress"]) == 0  # a setting equal to the checkpoint's is accepted
    assert tree(original) == before
    assert [int(r[0]) for r in metrics(copy)] == [1, 2, 3, 4]
    assert load_checkpoint(copy)["config"]["out"] == str(copy)


def test_runs_without_out_never_share_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = [a for a in TINY if a != "--logger"]
    tiny.remove("csv")
    assert main(["train", *tiny, "--frames", "100"]) == 0
    first = tmp_path / "results" / "mock_rn-tree2_seed3"
    before = tree(first)
    assert main(["train", *tiny, "--frames", "100"]) == 0
    assert tree(first) == before  # the second run went elsewhere
    second = [p for p in (tmp_path / "results").iterdir() if p != first]
    assert len(second) == 1 and second[0].name.startswith("mock_rn-tree2_seed3_")
    assert load_checkpoint(second[0])["config"]["out"] == str(Path("results") / second[0].name)


def test_a_graph_file_never_becomes_part_of_a_folder_name(tmp_path, monkeypatch):
    from torchrl_rn.train import TrainConfig

    assert TrainConfig(graph="graphs/my.dag.json").run_dir == Path("results/vmas-balance_rn-file_seed0")
    assert TrainConfig(graph="dag:2+root").run_dir == Path("results/vmas-balance_rn-dag2+root_seed0")
    assert TrainConfig(task="gym/CartPole-v1", algo="ippo").run_dir == Path("results/gym-CartPole-v1_ippo_seed0")


def test_force_replaces_the_old_run_entirely(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "notes.md").write_text("mine")  # not a run file: kept
    assert main(["train", *TINY, "--frames", "200", "--seed", "4", "--out", str(out), "--force"]) == 0
    assert [r[1] for r in metrics(out)] == ["100", "200"]
    assert load_checkpoint(out)["config"]["seed"] == 4
    logged = (out / "logs" / "run" / "scalars" / "eval_return.csv").read_text().strip().splitlines()
    assert len(logged) == 2  # TorchRL's CSV logger holds the new run only, not both mixed
    assert (out / "notes.md").read_text() == "mine"
    # the old run is moved aside, not deleted: a new run that failed would have lost nothing
    [aside] = out.glob("replaced-*")
    assert load_checkpoint(aside)["config"]["seed"] != 4 and metrics(aside) == metrics(uninterrupted)


def test_a_folder_another_live_run_trains_in_is_refused_in_one_line(uninterrupted, tmp_path, capsys):
    from torchrl_rn.train.run import RunLock

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with RunLock(out):  # stands for another process training there (flock: another open file, another owner)
        for argv in (["train", *TINY, "--out", str(out), "--force"], ["train", "--resume", str(out), "--frames",
                                                                       "400", "--no-progress"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "is in use by another run (pid" in err, err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != ".lock"}  # nothing written, nothing moved
    assert main(["train", "--resume", str(out), "--frames", "400", "--no-progress"]) == 0  # free once it ended


def test_checkpoints_load_with_weights_only(uninterrupted):
    state = torch.load(uninterrupted / "checkpoint.pt", weights_only=True)
    assert state["format"] == "torchrl-rn/2" and set(state["rng"]) >= {"python", "numpy", "torch_cpu"}


def _as_if_trained_on_a_gpu(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` whose checkpoint says it was trained on CUDA, with a CUDA generator state, as a GPU run's."""
    copy = tmp_path / "gpu_run"
    shutil.copytree(run, copy)
    state = torch.load(copy / "checkpoint.pt", weights_only=True)
    state["config"]["device"] = "cuda"
    state["rng"]["torch_cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    torch.save(state, copy / "checkpoint.pt")
    return copy


def test_a_gpu_run_is_evaluated_on_a_machine_without_one(uninterrupted, tmp_path, monkeypatch, capsys):
    from torchrl_rn.train.evaluate import evaluate_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has no GPU, whatever it has
    run = _as_if_trained_on_a_gpu(uninterrupted, tmp_path)
    cpu = evaluate_run(uninterrupted, episodes=3, seed=7)
    with pytest.warns(DeviceFallbackWarning, match="trained on 'cuda', which this machine lacks: it runs on the CPU"):
        report = evaluate_run(run, episodes=3, seed=7)  # the CPU, without being told: the same policy, the same returns
    assert report.returns == cpu.returns
    # the command line says so, in one line, and goes on
    assert main(["eval", str(run), "--episodes", "3", "--seed", "7"]) == 0
    err = capsys.readouterr().err
    assert err == f"rn: note: '{run}' was trained on 'cuda', which this machine lacks: it runs on the CPU here " \
                  "(--device chooses).\n"
    # training continues only where the run's device is: one line naming the run and the device, exit code 2
    assert main(["train", "--resume", str(run), "--frames", "400", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"rn: error: '{run}' was trained on 'cuda', which this machine lacks" in err and err.count("\n") == 1
    # a device asked for explicitly is checked as --device always is
    assert main(["eval", str(run), "--episodes", "3", "--device", "cuda"]) == 2
    assert "--device 'cuda': CUDA is not available" in capsys.readouterr().err
