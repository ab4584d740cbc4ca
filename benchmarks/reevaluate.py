"""Re-evaluates a learning benchmark's finished runs on many more episodes than its 16-episode evaluations.

The learning benchmark scores a run by one deterministic evaluation of ``eval_envs`` (16) episodes, seeded with the
training seed + 1. On tasks with a sparse or noisy return (dropout: +1 once, an energy cost every step) that leaves
a large share of a run's score to which 16 episodes it drew. This script reloads every finished run of a preset's
task (``<preset>/runs/<task>/<method>/seed<S>``, the checkpoint of its last iteration), evaluates it on
``--episodes`` fresh deterministic episodes (eval seed ``1000 + S``, the same episodes for every method of a seed)
and writes ``<preset>/<task>.reeval.json``: ``methods -> seeds -> {"return", "episodes"}``. ``report.py``
puts it beside the task's scores in docs/results.md, with verdicts against MAPPO and IPPO scored like the main ones.

    python benchmarks/reevaluate.py --preset dropout --task vmas/dropout --episodes 256
    python benchmarks/reevaluate.py --preset spread-vn --task vmas/simple_spread --methods mappo rn-tree2-p5 \\
        rn-tree4-addressed-p5-goal0-w
    python benchmarks/reevaluate.py --preset spread-vn --task vmas/simple_spread --seeds 12 13 14 15 16
                                       # only those seeds; the others keep their earlier scores
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from harness import run_dir, score_run  # this script runs from benchmarks/, as learning.py does

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help="the learning preset (its folder under benchmarks/results)")
    parser.add_argument("--task", required=True, help="e.g. vmas/dropout")
    parser.add_argument("--episodes", type=int, default=256, help="episodes per run")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="the methods to re-evaluate (default: every method the JSON lists)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="the seeds to re-evaluate (default: every finished seed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder, stem = args.results / args.preset, args.task.replace("/", "-")
    summary_path, path = folder / f"{stem}.json", folder / f"{stem}.reeval.json"
    summary = json.loads(summary_path.read_text())
    unknown = sorted(set(args.methods or ()) - set(summary["methods"]))
    if unknown:
        parser.error(f"--methods {' '.join(unknown)}: not in {summary_path} (it lists {', '.join(summary['methods'])})")
    out = {"task": args.task, "preset": args.preset, "episodes": args.episodes, "eval_seed": "1000 + training seed",
           "methods": {}}
    earlier = {}  # with --methods or --seeds, the runs not named keep their earlier scores (same episodes only)
    if (args.methods or args.seeds) and path.exists():
        previous = json.loads(path.read_text())
        if previous.get("episodes") == args.episodes:
            earlier = previous["methods"]
    for method, entry in summary["methods"].items():  # the runs the benchmark's JSON lists as finished
        seeds = dict(earlier.get(method, {}).get("seeds", {}))
        named = entry["seeds"] if not args.methods or method in args.methods else ()
        for s in sorted(named, key=int):
            if args.seeds and int(s) not in args.seeds:
                continue
            run = run_dir(folder, args.task, method, int(s))
            if not run.is_dir():
                parser.error(f"{run} is missing: its run folder is not on this machine (the benchmark writes it; "
                             "--methods leaves its method out)")
            seeds[s] = {"return": score_run(run, int(s), episodes=args.episodes),
                        "episodes": args.episodes}
            print(method, s, round(seeds[s]["return"], 3))
        if seeds:
            out["methods"][method] = {"seeds": dict(sorted(seeds.items(), key=lambda kv: int(kv[0])))}
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
