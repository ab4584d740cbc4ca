"""Writes the README's results table from the benchmark JSON files (never typed by hand).

    python benchmarks/make_table.py [--results results] [--readme README.md]

The table goes between the markers ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmark_stats import mean_ci95  # the benchmark's own statistics (this script runs from benchmarks/)

START, END = "<!-- results:start -->", "<!-- results:end -->"
#: evaluations averaged by the second table
LATE = 5
#: The seeds a verdict needs (the bar: 5+ seeds at equal frames); fewer is marked provisional.
MIN_SEEDS = 5


def _pm(mean: float, ci: float | None = None) -> str:
    """``mean ± ci`` with one decimal, or two for a mean below 1 in size (dropout's returns lie in [-2, 1])."""
    digits = 2 if abs(mean) < 1 else 1
    return f"{mean:.{digits}f}" + ("" if ci is None else f" ± {ci:.{digits}f}")


#: scaling.py's outputs: on CPU, on CUDA, and on CUDA as CUDA graphs, rendered in that order
SCALING_FILES = ("scaling.json", "scaling-cuda.json", "scaling-cuda-cudagraphs.json")


def table(results: Path) -> str:
    speed_files = ("throughput.json", *SCALING_FILES, "training-cuda.json", "tutorial_pipeline.json", "reference.json",
                   "breakdown.json")
    tasks = sorted(p for p in results.rglob("*.json")
                   if p.name not in speed_files and not p.name.endswith(".reeval.json")
                   and not {"runs", "superseded"} & set(p.parts))
    data = {p: json.loads(p.read_text()) for p in tasks}  # read once: every table below is drawn from it
    learned = list(data.values())
    knowledge = _task_knowledge(learned)
    reeval = _reevaluated(sorted(results.rglob("*.reeval.json")), knowledge, data)
    speed = [_throughput(tp) for tp in sorted(results.rglob("throughput.json"), key=lambda tp: len(tp.parts))]
    scaling = [_scaling(p) for name in SCALING_FILES for p in sorted(results.rglob(name))]
    speed += [_training_gpu(p) for p in sorted(results.rglob("training-cuda.json"))]
    pipeline = [_tutorial_pipeline(p) for p in sorted(results.rglob("tutorial_pipeline.json"))]
    pipeline += [_breakdown(p) for p in sorted(results.rglob("breakdown.json"))]
    reference = [_reference(p) for p in sorted(results.rglob("reference.json"))]
    return "\n\n".join(filter(None, [_learning(learned, knowledge), reeval, *reference, *speed, *pipeline, *scaling]))


def _reference(path: Path) -> str:
    """The hand-written reference policies of ``benchmarks/reference.py`` (dashed lines in the learning plots)."""
    rows = ["| task | reference policy | return (mean ± 95% CI) |", "| --- | --- | --- |"]
    for task, r in json.loads(path.read_text()).items():
        if "skipped" in r:
            rows.append(f"| {task} | none: {r['skipped']} | |")
        else:
            rows.append(f"| {task} ({r['n_agents']} agents, {r['max_steps']} steps) | `{r['policy']}` | "
                        f"{_pm(r['mean'], r['ci95'])} ({r['episodes']} episodes) |")
    return ("Reference policies (`python benchmarks/reference.py`; hand-written, not learned, evaluated like the "
            "learners):\n\n" + "\n".join(rows))


def _learning(data: list[dict], knowledge: set[str]) -> str:
    if not data:
        return "_No learning results yet: run `python benchmarks/learning.py`._"
    methods = list(dict.fromkeys(m for d in data for m in d["methods"]))
    final = _table(data, methods, lambda run: run["eval_return"][-1], knowledge)
    late = _table(data, methods, lambda run: statistics.fmean(run["eval_return"][-LATE:]), knowledge)
    return (f"{_verdicts(data, knowledge)}\n\n{final}\n\nFinal deterministic evaluation return at the frame budget, mean ± 95% CI half-width over "
            "seeds (the mean alone with one seed). Curves: `benchmarks/results/<preset>/<task>.png`.\n\n"
            f"The same runs scored by the mean of their last {LATE} evaluations (the last 150k frames of the full "
            "preset), less sensitive to one noisy evaluation of 16 episodes:\n\n"
            f"{late}")


def _task_knowledge(data: list[dict]) -> set[str]:
    """The methods that use task knowledge: a goal vertex reward (``learning.uses_task_knowledge``, not imported:
    this script needs no torch). Every table labels them so."""
    return {m for d in data for m, e in d["methods"].items()
            if str(e.get("definition", {}).get("vertex_reward", "")).startswith("goal")}


def _label(method: str, knowledge: set[str]) -> str:
    return f"{method} (task knowledge)" if method in knowledge else method


def _verdict(rn: list[float], mappo: list[float]) -> tuple[str, str, str]:
    """``(RN cell, MAPPO cell, verdict)`` for paired per-seed scores: a win or a loss needs disjoint 95% CIs."""
    mean, ci = mean_ci95(rn)
    base, base_ci = mean_ci95(mappo)
    verdict = "wins" if mean - ci > base + base_ci else "loses" if mean + ci < base - base_ci else "ties"
    verdict += f" (provisional: fewer than {MIN_SEEDS} seeds)" * (len(rn) < MIN_SEEDS)
    return _pm(mean, ci), _pm(base, base_ci), verdict


def _verdict_rows(label: str, methods: dict, score, knowledge: set[str], groups: dict) -> list[str]:
    """One verdict row per RN method against MAPPO on the seeds both ran (at least 2), and one more per declared
    seed group (``Preset.seed_groups``: e.g. a replication on fresh seeds) that both ran, scored on it alone."""
    rows = []
    mappo = methods.get("mappo", {}).get("seeds", {})
    for method, entry in methods.items():
        shared = sorted(set(entry["seeds"]) & set(mappo), key=int)
        if not method.startswith("rn") or len(shared) < 2:
            continue
        subsets = [("", shared)] + [(f" ({name}: seeds {', '.join(map(str, group))})",
                                     [s for s in shared if int(s) in group]) for name, group in groups.items()]
        for name, seeds in subsets:
            if len(seeds) < 2 or (name and len(seeds) == len(shared)):
                continue
            cells = _verdict([score(entry["seeds"][s]) for s in seeds], [score(mappo[s]) for s in seeds])
            rows.append(f"| {label} | {_label(method, knowledge)} | {len(seeds)}{name} | " + " | ".join(cells) + " |")
    return rows


def _reevaluated(paths: list[Path], knowledge: set[str], tasks: dict[Path, dict]) -> str:
    """``benchmarks/reevaluate.py``'s results: every finished run scored again on many fresh episodes (``tasks``:
    the benchmark's own task JSON files, read, whose declared seed groups apply to their re-evaluation too)."""
    rows = ["| task (preset, episodes per run) | RN method | seeds | RN | MAPPO | verdict |",
            "| --- | --- | --- | --- | --- | --- |"]
    for path in paths:
        d = json.loads(path.read_text())
        runs = tasks.get(path.with_name(path.name.removesuffix(".reeval.json") + ".json"), {})
        groups = runs.get("hyperparameters", {}).get("seed_groups", {})
        rows += _verdict_rows(f"{d['task']} ({d['preset']}, {d['episodes']})", d["methods"], lambda r: r["return"],
                              knowledge, groups)
    if len(rows) == 2:
        return ""
    return ("The same comparison with every finished run re-evaluated on many fresh episodes "
            "(`python benchmarks/reevaluate.py`; the benchmark's own evaluation is 16 episodes):\n\n" + "\n".join(rows))


def _verdicts(data: list[dict], knowledge: set[str]) -> str:
    """Per task, each RN method against MAPPO on the final return: wins or loses only where the 95% CIs are disjoint.

    Both sides are scored on the seeds they share (same seeds for every method), and again on each seed group the
    preset declared. Only results of the current harness (time limits as truncations) with at least 2 shared seeds
    count; a comparison on fewer than ``MIN_SEEDS`` seeds is marked provisional.
    """
    rows = ["| task (preset, frames) | RN method | seeds | RN | MAPPO | verdict |",
            "| --- | --- | --- | --- | --- | --- |"]
    for d in data:
        hp = d["hyperparameters"]
        if "time_limit" in hp:
            rows += _verdict_rows(f"{d['task']} ({d['preset']}, {hp['frames']:,})", d["methods"],
                                  lambda r: r["eval_return"][-1], knowledge, hp.get("seed_groups", {}))
    if len(rows) == 2:
        return ""
    return ("Where RN wins, ties or loses against MAPPO (final return, mean ± 95% CI; a win or a loss needs disjoint "
            "intervals):\n\n" + "\n".join(rows))


def _table(data: list[dict], methods: list[str], score, knowledge: set[str]) -> str:
    """One row per task file, one cell per method: ``score(run)`` averaged over seeds, with its 95% CI."""
    lines = [
        "| task (preset, seeds, frames) | "
        + " | ".join(_label(m, knowledge) for m in methods) + " |",
        "| --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for d in data:
        frames = d["hyperparameters"]["frames"]
        cells = []
        for m in methods:
            r = d["methods"].get(m)
            if r is None or not r["seeds"]:
                cells.append("")
                continue
            # one seed has no interval; a method still short of the preset's seeds says how many it has
            n = len(r["seeds"])
            mean, ci = mean_ci95([score(run) for run in r["seeds"].values()])
            cells.append(_pm(mean, ci if n > 1 else None)
                         + (f" ({n} of {len(d['seeds'])} seeds)" if n < len(d["seeds"]) else ""))
        extra = ", normalized advantages" if d["hyperparameters"].get("normalize_advantage") else ""
        # runs from before the harness treated VMAS time limits as truncations (benchmarks/learning.py LEGACY)
        extra += ", time limit as termination" if "time_limit" not in d["hyperparameters"] else ""
        lines.append(f"| {d['task']} ({d['preset']}, {len(d['seeds'])}, {frames:,}{extra}) | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def _throughput(tp: Path) -> str:
    if not tp.exists():
        return ""
    t = json.loads(tp.read_text())
    rates = t["training"]["frames_per_second"]
    largest = max((r for r in t["policy"] if r["graph"] == "tree:2,2"), key=lambda r: r["motors"])
    return (f"Throughput ({t['preset']['task']}, {t['preset']['frames_per_batch']} frames/batch, "
            f"{t['preset']['epochs']} epochs, {t['threads']} thread{'s' * (t['threads'] != 1)}, "
            f"median of {t['preset']['reps']}): "
            f"RN {t['preset']['rn_graph']} {rates['rn']:.0f} frames/s, MAPPO {rates['mappo']:.0f} frames/s, "
            f"ratio **{t['training']['rn_over_mappo']:.2f}**; a {largest['motors']}-motor 3-level graph steps at "
            f"{largest['speed_vs_flat_mlp']:.2f}x a flat MultiAgentMLP's speed; raw VMAS "
            f"{t['vmas_frames_per_second']:.0f} frames/s. Plot: `{tp.with_suffix('.png').as_posix()}`.")


def _tutorial_pipeline(path: Path) -> str:
    t = json.loads(path.read_text())
    p, rates = t["preset"], t["frames_per_second"]
    return (f"TorchRL's multi-agent PPO tutorial pipeline (VMAS {p['scenario']}, {p['n_agents']} agents, "
            f"{p['frames_per_batch']} frames/batch, {p['epochs']} epochs, {t['threads']} thread"
            f"{'s' * (t['threads'] != 1)}, median of {p['reps']} alternated iterations): stock {rates['stock']:.0f} "
            f"frames/s, with LevelEnv + GraphComposer + RNLoss ({p['rn_graph']}) dropped in {rates['rn']:.0f} "
            f"frames/s, ratio **{t['rn_over_stock']:.2f}**. Plot: `{path.with_suffix('.png').as_posix()}`.")


def _breakdown(path: Path) -> str:
    """Where RN's extra time per iteration goes (``breakdown.py``)."""
    t = json.loads(path.read_text())
    p, it, mb = t["preset"], t["iteration_seconds"], t["minibatch_ms"]
    rows = [(f"Where the time goes (`{path.as_posix()}`, `breakdown.py`, {p['task']}, RN {p['rn_graph']} against "
            f"MAPPO, {t['threads']} thread{'s' * (t['threads'] != 1)}, medians):"), "",
            ("| | collection (s / iteration) | policy (ms / step) | env (ms / step) | update (s / iteration) | "
             "loss forward (ms / minibatch) | loss backward (ms / minibatch) |"),
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("mappo", "rn"):
        st = t["step_ms"][name]
        rows.append(f"| {name.upper() if name == 'mappo' else 'RN'} | {it[name]['collection']:.2f} | "
                    f"{st['policy']:.1f} | {st['env']:.1f} | {it[name]['update']:.2f} | {mb[name]['forward']:.1f} | "
                    f"{mb[name]['backward']:.1f} |")
    groups = "; ".join(
        f"`{g}` ({info['vertices']} vertices, {info['parameters']:,} parameters) {t['rn_group_forward_ms'][g]:.1f} ms "
        f"on {p['minibatch_size']} frames, {t['rn_group_forward_ms_tiny'][g]:.1f} ms on {p['tiny_frames']}"
        for g, info in t["groups"].items())
    rows += ["", f"RN's loss forward per group (each a TorchRL `ClipPPOLoss`): {groups}."]
    return "\n".join(rows)


def _training_gpu(path: Path) -> str:
    t = json.loads(path.read_text())
    rates = t["frames_per_second"]
    return (f"Training on a GPU (`{path.as_posix()}`, `throughput.py --device cuda`, vmas/balance, "
            f"RN tree:2 against MAPPO, alternated, median of {len(t['samples']['rn'])}): RN {rates['rn']:.0f} "
            f"frames/s, MAPPO {rates['mappo']:.0f} frames/s, ratio **{t['rn_over_mappo']:.2f}**.")


def _scaling(path: Path) -> str:
    t = json.loads(path.read_text())
    where = (f"{t['threads']} thread{'s' * (t['threads'] != 1)}" if t.get("device", "cpu") == "cpu" else
             f"on one {t['device_name']} (torch {t['torch']}; peak memory: the GPU's)")
    if t.get("cudagraphs"):
        where += (", both policies replayed as CUDA graphs (`CudaGraphModule`; peak memory: what a replay allocates "
                  "outside the graph's own pool)")
    lines = [(f"Policy step time per vertex over a flat MAPPO actor's (`ProbabilisticActor` over `MultiAgentMLP`) per "
             f"agent, {t['preset']['num_envs']} envs, {where}, median of "
             f"{t['preset']['reps']} (plot: `{path.with_suffix('.png').as_posix()}`):"),
             "",
             ("| motors | graph | levels | RN us per vertex | flat us per agent | ratio per vertex | "
              "peak memory RN / flat (MiB) |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in t["rows"]:
        lines.append(f"| {r['motors']:,} | {r['graph']} | {r['levels']} | {1e6 * r['rn_seconds_per_vertex']:.1f} | "
                     f"{1e6 * r['flat_seconds_per_agent']:.1f} | {r['ratio']:.2f} | "
                     f"{r['rn_peak_bytes'] / 2**20:.1f} / {r['flat_peak_bytes'] / 2**20:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(Path(args.results))}\n{END}{tail}")


if __name__ == "__main__":
    main()
