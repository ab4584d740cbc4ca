"""A run is self-contained (issue 30, item 6): a graph read from a file is stored in the run's config and checkpoint,
and ``rn eval``/``rn show``/``--resume`` use the stored graph whatever happens to the file; a folder that a run left
without a checkpoint is free again."""
from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
import torch
import yaml

from torchrl_rn import RNGraph, RNTrainer
from torchrl_rn.train import TrainConfig, load_checkpoint, main

TINY = ["--task", "mock", "--n-agents", "3", "--frames", "100", "--frames-per-batch", "50", "--max-steps", "5",
        "--minibatch-size", "50", "--epochs", "1", "--num-cells", "8", "--manager-cells", "8", "--eval-envs", "2",
        "--logger", "", "--no-progress"]
#: a boss over motors a and b, and c on its own: a graph no spec string gives
GRAPH = nx.DiGraph([("boss", "a"), ("boss", "b")])
GRAPH.add_node("c")


def _write(path: Path, graph: nx.DiGraph) -> Path:
    path.write_text(json.dumps(nx.node_link_data(graph, edges="edges")))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("contained")
    graph_file = _write(root / "g.json", GRAPH)
    assert main(["train", *TINY, "--graph", str(graph_file), "--out", str(root / "run")]) == 0
    return root, graph_file


def _stored(run: Path) -> RNGraph:
    return RNGraph.from_spec(load_checkpoint(run / "checkpoint.pt")["config"]["graph"], 3)


def test_the_graph_is_stored_in_config_and_checkpoint(trained):
    root, graph_file = trained
    stored = json.loads(yaml.safe_load((root / "run" / "config.yaml").read_text())["graph"])
    assert stored == json.loads(graph_file.read_text())
    assert json.loads(json.loads((root / "run" / "config.json").read_text())["graph"]) == stored
    graph = _stored(root / "run")
    assert graph.groups == {"agents": ["a", "b", "c"], "level1": ["boss"]} and graph.subordinates("boss") == ["a", "b"]
    assert TrainConfig.from_yaml(root / "run" / "config.yaml").method_name == "rn-file"


# what happens to the file after training: each of eval, show and resume still reads the trained graph
FILE_FATES = {"moved": lambda f: f.rename(f.with_name("elsewhere.json")),
              "edited": lambda f: _write(f, nx.DiGraph([("x", "a"), ("x", "b"), ("x", "c")])),
              "corrupted": lambda f: f.write_text("{not json")}


@pytest.mark.parametrize("fate", sorted(FILE_FATES))
def test_eval_show_and_resume_use_the_stored_graph(fate, trained, tmp_path, capsys):
    root, _ = trained
    run = tmp_path / "run"
    graph_file = _write(tmp_path / "g.json", GRAPH)
    assert main(["train", *TINY, "--graph", str(graph_file), "--out", str(run)]) == 0
    FILE_FATES[fate](graph_file)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2"]) == 0, capsys.readouterr().err
    assert main(["show", str(run), "--episodes", "2"]) == 0, capsys.readouterr().err
    assert set(json.loads((run / "network.json").read_text())) >= {"boss", "a", "b", "c"}  # the trained vertices
    assert main(["train", "--resume", str(run), "--frames", "150", "--no-progress"]) == 0, capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["frames"] == 150
    assert _stored(run).groups == {"agents": ["a", "b", "c"], "level1": ["boss"]}
    # a rerun of the recorded config trains the same graph, file or no file
    again = RNTrainer(TrainConfig.from_yaml(run / "config.yaml", out=str(tmp_path / "again"), frames=50),
                      progress=False)
    assert again.graph.groups == {"agents": ["a", "b", "c"], "level1": ["boss"]}


def test_resume_with_the_graph_flag_compares_the_file(trained, tmp_path, capsys):
    root, _ = trained
    run = tmp_path / "run"
    graph_file = _write(tmp_path / "g.json", GRAPH)
    assert main(["train", *TINY, "--graph", str(graph_file), "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--graph", str(graph_file), "--frames", "150", "--no-progress"]) == 0
    _write(graph_file, nx.DiGraph([("x", "a"), ("x", "b"), ("x", "c")]))
    capsys.readouterr()
    config = (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "--graph", str(graph_file), "--frames", "200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from the graph the checkpoint stores" in err, err
    assert (run / "config.yaml").read_text() == config


def test_resume_below_the_frames_done_is_refused_and_keeps_the_config(trained, capsys):
    root, _ = trained
    before = {p.name: p.read_bytes() for p in (root / "run").iterdir() if p.is_file()}
    assert main(["train", "--resume", str(root / "run"), "--frames", "50"]) == 2
    err = capsys.readouterr().err
    assert err == (f"rn: error: --frames 50 is below the 100 frames {str(root / 'run')!r} has trained: a resumed run "
                   "only continues (give --frames >= 100).\n")
    assert {p.name: p.read_bytes() for p in (root / "run").iterdir() if p.is_file()} == before


def test_a_folder_killed_before_its_first_checkpoint_is_free_again(tmp_path, capsys, monkeypatch):
    """Killed between writing its config and its first checkpoint: a plain rerun of the same command is accepted."""
    run = tmp_path / "run"

    def killed(self, path):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(RNTrainer, "save", killed)
        assert main(["train", *TINY, "--out", str(run)]) == 130
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json", "config.yaml"]
    assert "nothing to resume: run the same command again" in capsys.readouterr().err
    assert main(["train", *TINY, "--out", str(run)]) == 0, capsys.readouterr().err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["frames"] == 100
