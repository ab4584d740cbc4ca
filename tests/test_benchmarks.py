"""The benchmark scripts run end to end with their tiny presets and write files of the documented schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=True, cwd=ROOT, timeout=300)


def test_learning_tiny_writes_json_and_png(tmp_path):
    run("learning.py", "--tiny", "--out", str(tmp_path))
    result = json.loads((tmp_path / "vmas-balance.json").read_text())
    assert (tmp_path / "vmas-balance.png").stat().st_size > 1000
    assert result["task"] == "vmas/balance" and result["preset"] == "tiny" and result["seeds"] == [0, 1]
    assert set(result["methods"]) == {"mappo", "rn-tree2"}
    for method in result["methods"].values():
        assert {"final_mean", "final_ci95", "frames_per_second", "definition", "seeds"} <= set(method)
        assert method["final_ci95"] >= 0
        for run_ in method["seeds"].values():
            assert run_["frames"] == [100, 200] and len(run_["eval_return"]) == 2


def test_throughput_tiny_writes_json_and_png_and_table(tmp_path):
    run("throughput.py", "--preset", "tiny", "--out", str(tmp_path))
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert (tmp_path / "throughput.png").stat().st_size > 1000
    assert result["training"]["rn_over_mappo"] > 0 and len(result["training"]["samples"]["rn"]) == 2
    assert {(r["motors"], r["graph"]) for r in result["policy"]} == {
        (n, g) for n in (4, 8) for g in ("flat", "tree:2", "tree:2,2")
    }
    assert result["vmas_frames_per_second"] > 0
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nSTALE TABLE\n<!-- results:end -->\noutro\n")
    run("make_table.py", "--results", str(tmp_path), "--readme", str(readme))
    text = readme.read_text()
    assert "STALE TABLE" not in text and "ratio **" in text and text.startswith("intro") and text.endswith("outro\n")
