"""benchmarks/reference.py: the hand-written reference policies drawn as dashed lines in the learning plots."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(monkeypatch, name: str):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its sibling modules import
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_spread_assignment_takes_the_least_distance_assignment_and_steers_there(monkeypatch):
    reference = load(monkeypatch, "reference")
    policy = reference.SpreadAssignment(2, u_range=1.0, gain=1.0, damping=0.5)
    # agent 0 at (0, 0) moving (0.2, 0); agent 1 at (1, 0), still. Landmarks A at (1.1, 0) and B at (0, 0.3):
    # assignment 0->A, 1->B costs 1.1 + 1.04; 0->B, 1->A costs 0.3 + 0.1, so agent 0 goes to B, agent 1 to A
    obs = torch.tensor([[0.0, 0.0, 0.2, 0.0, 1.1, 0.0, 0.0, 0.3],
                        [1.0, 0.0, 0.0, 0.0, 0.1, 0.0, -1.0, 0.3]])
    action = policy(obs[None])[0]
    torch.testing.assert_close(action, torch.tensor([[0.0 - 0.1, 0.3], [0.1, 0.0]]))
    far = policy(obs[None] * 10)[0]  # far targets: the force is clipped to u_range
    assert far.abs().max() == 1.0


def test_spread_assignment_reads_pettingzoo_observations_and_acts_discretely(monkeypatch):
    reference = load(monkeypatch, "reference")
    policy = reference.SpreadAssignment(2, u_range=1.0, gain=2.0, damping=0.5, vel=0, discrete=True)
    # the case above in PettingZoo's layout [vel, pos, landmark - pos]: forces (-0.1, 0.6) and (0.2, 0), so agent 0
    # goes +y (action 4) and agent 1 +x (action 2); MPE's discrete actions are 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y
    obs = torch.tensor([[0.2, 0.0, 0.0, 0.0, 1.1, 0.0, 0.0, 0.3],
                        [0.0, 0.0, 1.0, 0.0, 0.1, 0.0, -1.0, 0.3]])
    assert policy(obs[None])[0].tolist() == [4, 2]
    assert policy(-obs[None])[0].tolist() == [3, 1]  # every vector reversed: the opposite directions
    assert policy(obs[None] * 0.01)[0].tolist() == [0, 0]  # forces below u_range / 10: no-op


def test_pettingzoo_spread_reference_runs_through_the_benchmark_pipeline(monkeypatch):
    pytest.importorskip("mpe2")
    reference = load(monkeypatch, "reference")
    out = reference.heuristic_return("pettingzoo/simple_spread_v3", n_agents=3, max_steps=25, seeds=[0], num_envs=4,
                                     continuous_actions=False)
    assert out["episodes"] == 4 and out["policy"].startswith("SpreadAssignment")
    assert -15 < out["mean"] < -4  # a uniformly random policy scores about -27 there, MAPPO's published about -9


def test_random_policy_floor_is_seeded_and_below_the_heuristic(monkeypatch):
    pytest.importorskip("mpe2")
    reference = load(monkeypatch, "reference")
    setting = dict(n_agents=3, max_steps=25, seeds=[0, 1], num_envs=4, continuous_actions=False)
    out = reference.random_return("pettingzoo/simple_spread_v3", **setting)
    assert out["episodes"] == 8
    assert -45 < out["mean"] < -15  # about -27 (the test above): far below the heuristic's -15 to -4
    assert reference.random_return("pettingzoo/simple_spread_v3", **setting) == out  # seeded: the same floor again


def test_closest_goes_moves_only_the_agent_nearest_the_goal(monkeypatch):
    reference = load(monkeypatch, "reference")
    policy = reference.ClosestGoes(u_range=1.0, gain=1.0, damping=0.5)
    # [pos, vel, goal - pos, eaten]: agent 1 is nearest the goal (0.2 away); agent 0 is 0.5 away and moving
    obs = torch.tensor([[0.0, 0.0, 0.4, 0.0, 0.5, 0.0, 0.0],
                        [0.3, 0.0, 0.2, 0.0, 0.2, 0.0, 0.0],
                        [0.0, 1.0, 0.0, 0.0, -0.6, 0.6, 0.0]])
    action = policy(obs[None])[0]
    torch.testing.assert_close(action, torch.tensor([[0.0, 0.0], [0.2 - 0.1, 0.0], [0.0, 0.0]]))


def rows(text: str) -> dict[str, str]:
    """The rows of a report's tables, by their first cell."""
    return {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines() if line.startswith("| ")}


def test_reference_lines_reach_the_plot_and_the_table(monkeypatch, tmp_path):
    load(monkeypatch, "learning")
    report = load(monkeypatch, "report")
    ref = {"vmas/balance": {"policy": "p", "mean": 13.0, "ci95": 1.0, "episodes": 4, "n_agents": 4, "max_steps": 100,
                            "random": {"mean": -3.25, "ci95": 0.5, "episodes": 8}},
           "vmas/navigation": {"skipped": "needs cvxpy"}}
    (tmp_path / "reference.json").write_text(json.dumps(ref))
    harness = sys.modules["harness"]  # what learning.py runs: its plots read the reference there
    monkeypatch.setattr(harness, "REFERENCE", tmp_path / "reference.json")
    result = {"task": "vmas/balance", "hyperparameters": {"n_agents": {"vmas/balance": 4}, "max_steps": 100}}
    assert harness._reference(result)["mean"] == 13.0
    result["hyperparameters"]["max_steps"] = 25  # a preset with other episodes gets no line
    assert harness._reference(result) is None
    text = report.results_markdown(tmp_path)
    assert "| vmas/balance (4 agents, 100 steps) | `p` | 13.0 ± 1.0 (4 episodes) | -3.2 ± 0.5 (8 episodes) |" in text
    assert "| vmas/navigation | none: needs cvxpy | | not run |" in text


def test_table_labels_methods_that_use_task_knowledge(monkeypatch, tmp_path):
    report = load(monkeypatch, "report")
    runs = {str(s): {"eval_return": [1.0, 2.0 + s]} for s in (0, 1)}
    result = {"task": "vmas/balance", "preset": "rewards", "seeds": [0, 1],
              "hyperparameters": {"frames": 10, "time_limit": "truncated"},
              "methods": {"mappo": {"seeds": runs},
                          "rn-tree2-p5-goal": {"definition": {"vertex_reward": "goal:pos"}, "seeds": runs},
                          "rn-tree2-p5": {"definition": {"periods": "1,5"}, "seeds": runs}}}
    (tmp_path / "vmas-balance.json").write_text(json.dumps(result))
    reeval = {"task": "vmas/balance", "preset": "rewards", "episodes": 256,
              "methods": {m: {"seeds": {"0": {"return": 1.0}, "1": {"return": 2.0}}} for m in result["methods"]}}
    (tmp_path / "vmas-balance.reeval.json").write_text(json.dumps(reeval))
    text = rows(report.results_markdown(tmp_path))
    goal = text["RN pairs, period 5, position goals + 0.1 team (`rn-tree2-p5-goal`)"]
    # labelled in its row, which carries its verdicts on the final return and on the re-evaluation (2 seeds each)
    assert goal.endswith("| task knowledge |") and goal.count(", 2 seeds |") == 2
    assert "re-evaluated (256 episodes)" in report.results_markdown(tmp_path)
    assert text["RN pairs, period 5 (`rn-tree2-p5`)"].endswith("|  |")  # the method without goals is not labelled
    learning = load(monkeypatch, "learning")
    assert learning.TASK_KNOWLEDGE == {m for m, d in learning.METHODS.items() if "goal" in d.get("vertex_reward", "")}
    assert {"rn-tree2-p5-goal", "rn-tree4-addressed-p5-goal0-w"} <= learning.TASK_KNOWLEDGE  # same rule
    assert not {"mappo", "rn-tree4-addressed", "rn-tree2-p5-adv"} & learning.TASK_KNOWLEDGE


def test_verdicts_need_disjoint_intervals(monkeypatch, tmp_path):
    report = load(monkeypatch, "report")

    def runs(*finals):
        return {"seeds": {str(i): {"eval_return": [0.0, f]} for i, f in enumerate(finals)}}

    result = {"task": "vmas/balance", "preset": "p", "seeds": [0, 1, 2, 3, 4], "hyperparameters": {"frames": 10,
              "time_limit": "truncated"},
              "methods": {"mappo": runs(1.0, 2.0, 3.0, 4.0, 5.0), "rn-a": runs(9.0, 10.0, 11.0, 12.0, 13.0),
                          "rn-b": runs(2.0, 3.0, 4.0, 5.0, 6.0), "rn-c": runs(-9.0, -8.0), "rn-d": runs(-30.0, -29.0),
                          "ippo": runs(100.0, 101.0)}}
    (tmp_path / "vmas-balance.json").write_text(json.dumps(result))
    text = report.results_markdown(tmp_path)
    # 1..5: 3.0 ± 2.0 (t(4) = 2.776 x sd 1.58 / sqrt(5) = 1.96); 9..13: 11.0 ± 2.0, disjoint; 2..6 overlaps
    assert "| `rn-a` | 5 | 11.0 ± 2.0 | wins: 11.0 ± 2.0 vs 3.0 ± 2.0, 5 seeds |" in text
    assert "| `rn-b` | 5 | 4.0 ± 2.0 | ties: 4.0 ± 2.0 vs 3.0 ± 2.0, 5 seeds |" in text
    # two seeds are scored against MAPPO's same two seeds (1, 2: 1.5 ± 6.4, t(1) = 12.706 x 0.707 / sqrt(2)), not
    # against all five: -9, -8 overlaps it (against 3.0 ± 2.0 it would lose); -30, -29 is below it
    assert "| ties (provisional: fewer than 5 seeds): -8.5 ± 6.4 vs 1.5 ± 6.4, 2 seeds |" in rows(text)["`rn-c`"]
    assert "| loses (provisional: fewer than 5 seeds): -29.5 ± 6.4 vs 1.5 ± 6.4, 2 seeds |" in rows(text)["`rn-d`"]
    assert report._pm(-0.784, 0.0312) == "-0.78 ± 0.03" and report._pm(50.71, 1.94) == "50.7 ± 1.9"
    # only RN methods get a verdict
    assert rows(text)["IPPO (`ippo`)"].startswith("| IPPO (`ippo`) | 2 | 100.5 ± 6.4 (2 of 5 seeds) |  |  |")


def test_reevaluated_runs_get_their_own_verdict_table(monkeypatch, tmp_path):
    report = load(monkeypatch, "report")

    def runs(*returns):
        return {"seeds": {str(i): {"return": r, "episodes": 256} for i, r in enumerate(returns)}}

    reeval = {"task": "vmas/dropout", "preset": "d", "episodes": 256,
              "methods": {"mappo": runs(-1.0, -0.9, -0.8, -0.7, -0.6), "rn-a": runs(-0.2, -0.1, 0.0, 0.1, 0.2),
                          "rn-b": runs(-0.9, -0.8, -0.7, -0.6, -0.5)}}
    (tmp_path / "vmas-dropout.reeval.json").write_text(json.dumps(reeval))
    text = report.results_markdown(tmp_path)
    # -1.0..-0.6: -0.80 ± 0.20 (t(4) = 2.776 x sd 0.158 / sqrt(5)); -0.2..0.2: 0.00 ± 0.20, disjoint; rn-b overlaps
    assert "re-evaluated (256 episodes)" in text
    assert "| `rn-a` | 5 |  |  |  |  | 0.00 ± 0.20 | wins: 0.00 ± 0.20 vs -0.80 ± 0.20, 5 seeds |" in text
    assert "| `rn-b` | 5 |  |  |  |  | -0.70 ± 0.20 | ties: -0.70 ± 0.20 vs -0.80 ± 0.20, 5 seeds |" in text
    assert "No learning results yet" in text  # a re-evaluation is not read as a task's learning results


def test_declared_seed_groups_get_their_own_verdict_rows(monkeypatch, tmp_path):
    report = load(monkeypatch, "report")

    def runs(values, key="eval_return"):
        return {"seeds": {str(i): ({key: [0.0, v]} if key == "eval_return" else {key: v, "episodes": 4})
                          for i, v in enumerate(values)}}

    mappo, rn = [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 11.0, 12.0]
    result = {"task": "vmas/balance", "preset": "p", "seeds": list(range(8)),
              "hyperparameters": {"frames": 10, "time_limit": "truncated", "seed_groups": {"replication": [5, 6, 7],
                                                                                           "all": list(range(8))}},
              "methods": {"mappo": runs(mappo), "rn-a": runs(rn)}}
    (tmp_path / "vmas-balance.json").write_text(json.dumps(result))
    reeval = {"task": "vmas/balance", "preset": "p", "episodes": 4,
              "methods": {"mappo": runs(mappo, "return"), "rn-a": runs(rn, "return")}}
    (tmp_path / "vmas-balance.reeval.json").write_text(json.dumps(reeval))
    text = report.results_markdown(tmp_path)
    # seeds 5-7 alone: 11.0 ± 2.5 against 2.0 ± 2.5 (t(2) = 4.303 x sd 1 / sqrt(3)), disjoint; all 8 overlap
    group = rows(text)["`rn-a` (replication: seeds 5, 6, 7)"]
    assert group.startswith("| `rn-a` (replication: seeds 5, 6, 7) | 3 | 11.0 ± 2.5 | wins ")
    # the same verdict on the final return and on the re-evaluation
    assert group.count("| wins (provisional: fewer than 5 seeds): 11.0 ± 2.5 vs 2.0 ± 2.5, 3 seeds |") == 2
    assert rows(text)["`rn-a`"].startswith("| `rn-a` | 8 | ")
    assert "(all: seeds" not in text  # a group of every seed adds no row
