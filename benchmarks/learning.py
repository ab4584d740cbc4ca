"""Learning benchmark: RN graphs against TorchRL's MAPPO and IPPO, same budget, batch, epochs and seeds.

For every task and method, train with :class:`torchrl_rn.RNTrainer` (the same pipeline for all methods), evaluate
deterministically every ``eval_every`` iterations, and write ``<out>/<task>.json`` (every curve point of every
seed) and ``<out>/<task>.png`` (mean with a 95% confidence band over seeds); ``<out>`` defaults to
``benchmarks/results/<preset>``.

    python benchmarks/learning.py --quick          # 1 seed, short budget: all tasks and methods in < 20 min
    python benchmarks/learning.py --full           # 3 seeds, 1M frames per run
    python benchmarks/learning.py --full --tasks vmas/balance --seeds 0   # one slice of it; reruns add the rest
    python benchmarks/learning.py --graphs flat,tree:2,tree:2,2,dag --tasks vmas/balance
                                                   # every graph shape beside MAPPO and IPPO on one task
    python benchmarks/report.py                    # docs/results.md, docs/performance.md, the README summary

Presets are ``benchmarks/presets/<name>.yaml`` (each with its history as ``notes``), methods
``benchmarks/methods.yaml`` (a method's definition overrides the preset); ``harness.py`` runs them. Two slices can
run side by side (say ``--threads 1`` each on 2 cores): every save merges into the JSON on disk under a file lock,
so neither loses the other's runs. A rerun of the same preset keeps the runs it already holds, and a run cut short
resumes from its last checkpoint with the metrics of a run never stopped. A JSON file written with other training
hyperparameters is never mixed in: the rerun starts that task afresh (adding a method or a seed keeps what was run).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from harness import (  # noqa: F401 - re-exported: reference.py, reevaluate.py and older scripts import them here
    LEGACY,
    METHODS,
    PRESETS,
    REEVAL_EPISODES,
    REFERENCE,
    TASK_KNOWLEDGE,
    Preset,
    claim_run,
    definition,
    graph_methods,
    load_result,
    merge_from_disk,
    run_dir,
    run_one,
    run_task,
    save_result,
    uses_task_knowledge,
)

from torchrl_rn.graph import GraphError, RNGraph


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    for name in PRESETS:
        group.add_argument(f"--{name}", dest="preset", action="store_const", const=name)
    parser.add_argument("--out", default=None, help="folder for <task>.json / <task>.png "
                        "(default: benchmarks/results/<preset>)")
    parser.add_argument("--tasks", nargs="*", help="subset of the preset's tasks")
    parser.add_argument("--methods", nargs="*", help="subset of the preset's methods")
    parser.add_argument("--seeds", nargs="*", type=int, help="subset of the preset's seeds (e.g. one seed of every "
                        "method first); the JSON still counts the preset's seeds")
    parser.add_argument("--graphs", default=None, help="compare graph shapes: MAPPO, IPPO and an RN per graph "
                        "spec (e.g. flat,tree:2,tree:2,2,dag), with the preset's budget and seeds; results go to "
                        "benchmarks/results/graphs-<preset> unless --out is given")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default: torch's)")
    parser.add_argument("--reeval", type=int, default=REEVAL_EPISODES, metavar="EPISODES",
                        help="re-evaluate each finished run on this many deterministic episodes (eval seed 1000 + "
                        "seed) into <task>.reeval.json, as reevaluate.py does; also runs kept from the JSON whose "
                        "folder is here and that have no score yet; 0: do not [default: %(default)s]")
    args = parser.parse_args(argv)
    if args.reeval < 0:
        parser.error(f"--reeval: a number of episodes >= 0, got {args.reeval}")
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.preset or "quick"
    preset = PRESETS[name]
    if args.graphs:
        if args.methods:
            parser.error("--graphs and --methods: give one of them")
        args.methods = graph_methods(args.graphs)
        preset = dataclasses.replace(preset, methods=tuple(args.methods))
        name = f"graphs-{name}"
    for method in args.methods or ():
        try:
            definition(method)
        except KeyError:
            parser.error(f"--methods: {method!r} is neither one of {list(METHODS)} nor rn[<graph spec>]")
    if unknown := [v for v in args.seeds or () if v not in preset.seeds]:
        parser.error(f"--seeds: {unknown} not in {list(preset.seeds)}")  # before any run starts, not after hours
    for method in args.methods or ():  # a bad graph spec fails now, not after the runs before it
        if definition(method)["algo"] == "rn":
            n_agents = [preset.n_agents.get(t, 4) for t in args.tasks or preset.tasks]
            try:
                for n in n_agents:
                    RNGraph.from_spec(definition(method)["graph"], n)
            except (GraphError, ValueError, OSError) as err:
                parser.error(f"--graphs: {method}: {err}")
    out = Path(args.out or f"benchmarks/results/{name}")
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks or preset.tasks:
        run_task(out, task, preset, name, methods=args.methods, seeds=args.seeds, reeval=args.reeval or None)


if __name__ == "__main__":
    main()
