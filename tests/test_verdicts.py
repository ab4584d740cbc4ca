"""``benchmarks/verdicts.py``: the declared experiments judged by their own declared test, on hand-made results."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import verdicts  # noqa: E402

SEEDS = [0, 1, 2, 3, 4]
SPREAD = [-0.2, -0.1, 0.0, 0.1, 0.2]  # sd 0.158: half-width 4.3147 * 0.158 / sqrt(5) = 0.305 at m = 4


def _write(results: Path, preset: str, task: str, scores: dict[str, float | None], influence: float = 0.5):
    """Runs of every method at ``mean + SPREAD`` per seed (``None``: seeds 0-2 only)."""
    folder = results / preset
    folder.mkdir(parents=True, exist_ok=True)
    runs, again = {}, {}
    for method, mean in scores.items():
        seeds = SEEDS[:3] if mean is None else SEEDS
        base = 0.0 if mean is None else mean
        again[method] = {"seeds": {str(s): {"return": base + SPREAD[s], "episodes": 256} for s in seeds}}
        runs[method] = {"seeds": {str(s): {"eval_return": [base], "influence": {"level1": [influence]}}
                                  for s in seeds}}
    stem = folder / task.replace("/", "-")
    stem.with_suffix(".json").write_text(json.dumps({"task": task, "preset": preset, "methods": runs}))
    Path(f"{stem}.reeval.json").write_text(json.dumps({"task": task, "preset": preset, "methods": again}))


def _experiment(folder: Path) -> Path:
    folder.mkdir()
    exp = {"name": "EX", "title": "a test", "declared": "2026-12-07", "seeds": SEEDS,
           "labels": {"task_knowledge": "none", "communicates_at_execution": "all"},
           "tasks": [{"task": "vmas/a", "preset": "p", "role": "primary"},
                     {"task": "vmas/b", "preset": "p", "role": "second task"},
                     {"task": "vmas/c", "preset": "p", "role": "declared negative control"}],
           "methods": {"cand": {"role": "candidate"}, "ctrl": {"role": "control (outside the family)"},
                       "mappo": {"role": "baseline"}, "mappo-lr": {"role": "baseline sweep"},
                       "ippo": {"role": "baseline"}, "random": {"role": "reference"}},
           "family": {"m": 4}}
    (folder / "EX.yaml").write_text(yaml.safe_dump(exp))
    return folder


@pytest.mark.parametrize("b_scores, claim, verdict_b", [
    # cand 0.35 above the best sweep config (mappo-lr at 0) and IPPO: intervals +-0.305 are disjoint
    ({"cand": 1.0, "mappo": -1.0, "mappo-lr": 0.0, "ippo": 0.3}, "holds: `cand`", "wins"),
    # IPPO's interval overlaps the candidate's: a tie on b, so no win on every task
    ({"cand": 1.0, "mappo": -1.0, "mappo-lr": 0.0, "ippo": 0.7}, "does not hold", "ties"),
    # the selected MAPPO (the best of the sweep, mappo-lr) lies above the candidate: a loss
    ({"cand": 1.0, "mappo": -1.0, "mappo-lr": 2.0, "ippo": 0.0}, "does not hold", "loses"),
    # a sweep configuration short of seeds: nothing is selected yet
    ({"cand": 1.0, "mappo": -1.0, "mappo-lr": None, "ippo": 0.0}, "pending", "pending (5 of 5 seeds; baselines"),
    # the candidate short of seeds on b while it wins on a: it can still win everywhere
    ({"cand": None, "mappo": -1.0, "mappo-lr": 0.0, "ippo": 0.0}, "pending", "pending (3 of 5 seeds)"),
])
def test_verdicts_apply_the_declared_test(tmp_path, b_scores, claim, verdict_b):
    results = tmp_path / "results"
    _write(results, "p", "vmas/a", {"cand": 1.0, "ctrl": 0.0, "mappo": 0.0, "mappo-lr": -1.0, "ippo": 0.0})
    _write(results, "p", "vmas/b", b_scores)
    _write(results, "p", "vmas/c", {"cand": -5.0, "mappo": 0.0, "mappo-lr": 0.0, "ippo": 0.0})
    text = verdicts.experiments_markdown(results, _experiment(tmp_path / "exp"))
    a, b, c = text.split("vmas/a")[1], text.split("vmas/b")[1], text.split("vmas/c")[1]
    assert "| cand (`cand`) | candidate | 5 | 1 ± 0.305 | 1 | 0.50 | wins |" in a
    assert "| mappo (`mappo`) | baseline (selected: best mean of the sweep) |" in a  # 0 beats mappo-lr's -1
    assert "| ctrl (`ctrl`) | control | 5 | 0 ± 0.305 | 0 | 0.50 | ties |" in a
    assert f"| {verdict_b}" in b.split("| cand (`cand`)")[1].split("\n")[0]
    assert "| loses |" in c  # the negative control task: judged, outside the family
    assert f"Claim of EX: **{claim}" in text
    assert "Student-t at 98.75% (Bonferroni)" in text


def test_claim_fails_once_every_candidate_ties_somewhere_whatever_is_missing(tmp_path):
    results = tmp_path / "results"
    _write(results, "p", "vmas/a", {"cand": 1.0, "ctrl": 0.0, "mappo": 0.0, "mappo-lr": -1.0, "ippo": 0.8})  # a tie
    _write(results, "p", "vmas/b", {"cand": None, "mappo": -1.0, "mappo-lr": 0.0, "ippo": 0.0})  # 3 of 5 seeds
    _write(results, "p", "vmas/c", {"cand": -5.0, "mappo": 0.0, "mappo-lr": 0.0, "ippo": 0.0})
    text = verdicts.experiments_markdown(results, _experiment(tmp_path / "exp"))
    assert "| ties |" in text.split("vmas/a")[1] and "pending (3 of 5 seeds)" in text.split("vmas/b")[1]
    assert "Claim of EX: **does not hold (no candidate wins on every task of the family)**." in text


def test_interval_is_the_exact_corrected_t_interval():
    mean, half = verdicts.interval([1.0, 2.0, 3.0, 4.0, 5.0], m=1)  # t(0.975, 4) = 2.7764
    assert mean == 3.0 and half == pytest.approx(2.7764 * 1.58114 / 5 ** 0.5, rel=1e-4)
