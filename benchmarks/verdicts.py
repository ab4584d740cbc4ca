"""The verdicts of the declared experiments (``benchmarks/experiments/*.yaml``), from the result JSON files.

Each experiment file declares its tasks (a preset each), its methods with their roles, its seeds, its primary score
and its comparison family of ``m`` comparisons. This module applies the declared test and nothing else:

* the primary score of a run is its re-evaluation (``<task>.reeval.json``, ``return``); a method's interval is the
  Student-t interval at level ``1 - 0.05 / m`` over the declared seeds (Bonferroni);
* the MAPPO compared against on a task is the configuration of MAPPO's declared sweep with the highest mean primary
  score there, once every configuration has all the declared seeds (a choice in MAPPO's favour);
* a candidate **wins** on a task if its interval lies entirely above both the selected MAPPO's and IPPO's,
  **loses** if it lies entirely below either, and **ties** otherwise; without all the declared seeds of the
  candidate and of the baselines it is **pending**. The same rule is applied to controls and references, outside
  the family. The experiment's claim holds if one candidate wins on every task of the family.

Run through ``benchmarks/report.py`` (a section of ``docs/results.md``); needs no torch.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import yaml

__all__ = ["experiments_markdown", "interval", "verdict"]

HERE = Path(__file__).resolve().parent


def interval(values: list[float], m: int) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t interval at level ``1 - 0.05 / m``.

    Examples:
        >>> mean, half = interval([1.0, 2.0, 3.0, 4.0, 5.0], m=4)  # t(1 - 0.05 / 8, 4) = 4.3147, sd 1.5811
        >>> round(mean, 4), round(half, 4)
        (3.0, 3.0509)
    """
    from scipy.stats import t  # the exact quantile (stdlib has none)

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.inf
    return mean, float(t.ppf(1 - 0.05 / (2 * m), len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def verdict(mine: tuple[float, float], baselines: list[tuple[float, float]]) -> str:
    """``wins`` above every baseline's interval, ``loses`` below any, else ``ties`` (intervals as (mean, half)).

    Examples:
        >>> verdict((10.0, 1.0), [(5.0, 2.0), (7.0, 1.5)]), verdict((10.0, 1.0), [(5.0, 2.0), (12.5, 1.0)])
        ('wins', 'loses')
    """
    low, high = mine[0] - mine[1], mine[0] + mine[1]
    if any(high < b - h for b, h in baselines):
        return "loses"
    return "wins" if all(low > b + h for b, h in baselines) else "ties"


def _applies(entry: dict, task: str) -> bool:
    return "tasks" not in entry or task in entry["tasks"]


def _runs(results: Path, preset: str, task: str) -> tuple[dict, dict]:
    """``(result, reeval)`` of a preset's task (empty dicts where absent)."""
    stem = results / preset / task.replace("/", "-")
    load = [json.loads(p.read_text()) if p.exists() else {} for p in (stem.with_suffix(".json"),
                                                                      Path(f"{stem}.reeval.json"))]
    return load[0], load[1]


def _task_section(exp: dict, spec: dict, results: Path, m: int, labels: dict) -> tuple[list[str], dict[str, str]]:
    """The table of one task and each candidate's verdict there."""
    task, seeds = spec["task"], [str(s) for s in exp["seeds"]]
    result, reeval = _runs(results, spec["preset"], task)
    scores, influence, final = {}, {}, {}
    for method, entry in exp["methods"].items():
        if method == "random" or not _applies(entry or {}, task):
            continue
        again = reeval.get("methods", {}).get(method, {}).get("seeds", {})
        scores[method] = [again[s]["return"] for s in seeds if s in again]
        runs = result.get("methods", {}).get(method, {}).get("seeds", {})
        finals = [runs[s]["eval_return"][-1] for s in seeds if s in runs]
        final[method] = f"{statistics.fmean(finals):.3g}" if finals else ""
        last = [statistics.fmean(c[-1] for c in runs[s]["influence"].values()) for s in seeds
                if runs.get(s, {}).get("influence")]
        influence[method] = f"{statistics.fmean(last):.2f}" if last else ""
    complete = {k: len(v) == len(seeds) for k, v in scores.items()}
    sweep = [k for k in scores if k.startswith("mappo")]
    chosen = max(sweep, key=lambda k: statistics.fmean(scores[k])) if sweep and all(
        complete[k] for k in sweep) else None
    ready = chosen is not None and complete.get("ippo", False)
    rows = ["| method | role | seeds | primary score (mean ± half-width) | final (16 episodes, mean) | influence | "
            "verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = {}
    for method, values in scores.items():
        role = str((exp["methods"][method] or {}).get("role", "")).split(";")[0].split("(")[0].strip()
        cell = ""
        if values:
            mean, half = interval(values, m)
            cell = f"{mean:.3g} ± {half:.3g}" if len(values) > 1 else f"{mean:.3g}"
        if method == chosen:
            role += " (selected: best mean of the sweep)"
        judged = not (method.startswith("mappo") or method == "ippo")
        text = ""
        if judged:
            if ready and complete[method]:
                base = [interval(scores[chosen], m), interval(scores["ippo"], m)]
                text = verdict(interval(values, m), base)
            else:
                text = f"pending ({len(values)} of {len(seeds)} seeds" + ("" if ready else "; baselines incomplete") + ")"
            if role.startswith("candidate"):
                verdicts[method] = text
        rows.append(f"| {labels.get(method, method)} (`{method}`) | {role} | {len(values)} | {cell} | "
                    f"{final.get(method, '')} | {influence.get(method, '')} | {text} |")
    floor = _random(results, task)
    if floor:
        rows.append(f"\nA uniformly random policy scores {floor} there (`reference.json`).")
    return rows, verdicts


def _random(results: Path, task: str) -> str:
    path = results / "reference.json"
    rand = json.loads(path.read_text()).get(task, {}).get("random") if path.exists() else None
    return f"{rand['mean']:.3g} ± {rand['ci95']:.2g} ({rand['episodes']} episodes)" if rand else ""


def experiments_markdown(results: Path, folder: Path = HERE / "experiments", labels: dict | None = None) -> str:
    """One section per declared experiment: per task, every method's primary score at the corrected level and each
    candidate's verdict; then the claim (holds; does not hold, as soon as every candidate ties or loses on some task;
    or pending while a candidate can still win everywhere)."""
    parts = []
    for path in sorted(folder.glob("*.yaml")):
        exp = yaml.safe_load(path.read_text())
        m = int(exp["family"]["m"])
        level = 100 * (1 - 0.05 / m)
        parts.append(f"### {exp['name']}: {exp['title']}\n\n`benchmarks/experiments/{path.name}`, declared "
                     f"{exp['declared']}; seeds {', '.join(map(str, exp['seeds']))}; family of m = {m} comparisons: "
                     f"each interval is Student-t at {level:.2f}% (Bonferroni). Labels: task knowledge: "
                     f"{exp['labels']['task_knowledge']}; communicates at execution: "
                     f"{exp['labels']['communicates_at_execution']}.")
        family: dict[str, list[str]] = {}
        for spec in exp["tasks"]:
            rows, verdicts = _task_section(exp, spec, results, m, labels or {})
            inside = "control" not in spec["role"]
            parts.append(f"{spec['task']} (preset `{spec['preset']}`; {spec['role']}):\n\n" + "\n".join(rows))
            if inside:
                for method, text in verdicts.items():
                    family.setdefault(method, []).append(text)
        if any(all(v == "wins" for v in texts) for texts in family.values()):
            claim = "holds: " + ", ".join(f"`{k}`" for k, v in family.items() if all(t == "wins" for t in v))
        elif any(all(t == "wins" or t.startswith("pending") for t in texts) for texts in family.values()):
            claim = "pending (runs missing)"  # some candidate can still win on every task
        else:  # every candidate already ties or loses somewhere, whatever the missing runs give
            claim = "does not hold (no candidate wins on every task of the family)"
        parts.append(f"Claim of {exp['name']}: **{claim}**.")
    return "\n\n".join(parts)
