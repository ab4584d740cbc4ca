"""``rn train --seeds 0,1,2``: one run per seed, one after another, then an aggregate curve with a 95% band.

Like BenchMARL's benchmark runs: each seed is an ordinary run in its own folder (``<out>/seed<S>`` with ``out``,
else the usual ``results/<task>_<name>_seed<S>``), and the aggregate folder (``out``, else
``results/<task>_<name>_seeds<S1>-<S2>-...``) holds ``aggregate.csv``, ``aggregate.json`` and ``aggregate.png``: at
each evaluation point the mean over seeds and the half-width of a t-based 95% confidence interval
(:func:`~torchrl_rn.train.stats.mean_ci95`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

from torchrl_rn.train.config import TrainConfig
from torchrl_rn.train.plots import plot_aggregate
from torchrl_rn.train.stats import mean_std_ci95
from torchrl_rn.train.trainer import RNTrainer

__all__ = ["run_seeds", "seed_configs", "aggregate", "aggregate_dir", "run_sweep", "parse_sweep"]

CURVES = ("eval_return", "train_return")


def aggregate_dir(config: TrainConfig, seeds: list[int]) -> Path:
    """Where the aggregate of ``seeds`` goes: ``config.out``, else the run folder named by the seed list."""
    if config.out:
        return Path(config.out)
    name = dataclasses.replace(config, seed=0).run_dir.name.removesuffix("_seed0")
    return Path("results") / f"{name}_seeds{'-'.join(map(str, seeds))}"


def seed_configs(config: TrainConfig, seeds: list[int]) -> list[TrainConfig]:
    """One config per seed; with ``config.out`` each goes to ``<out>/seed<S>``.

    Examples:
        >>> [c.out for c in seed_configs(TrainConfig(out="exp"), [0, 1])]
        ['exp/seed0', 'exp/seed1']
    """
    return [dataclasses.replace(config, seed=s, out=str(Path(config.out) / f"seed{s}") if config.out else None)
            for s in seeds]


def aggregate(histories: dict[int, list[dict[str, float]]]) -> list[dict[str, float]]:
    """Per frame count: ``n`` seeds, then ``<curve>_mean``, ``_std`` and ``_ci95`` of each curve over seeds.

    A frame count enters only if every seed logged it; NaN values (no episode ended in a batch) are left out.

    Examples:
        >>> rows = aggregate({0: [{"frames": 10, "eval_return": 1.0}], 1: [{"frames": 10, "eval_return": 3.0}]})
        >>> rows[0]["eval_return_mean"], round(rows[0]["eval_return_ci95"], 3)  # t(0.975, 1) = 12.706
        (2.0, 12.706)
    """
    by_seed = [{r["frames"]: r for r in h} for h in histories.values()]
    frames = sorted(set.intersection(*(set(d) for d in by_seed))) if by_seed else []
    rows = []
    for f in frames:
        row: dict[str, float] = {"frames": f, "n": len(by_seed)}
        for curve in CURVES:
            values = [d[f][curve] for d in by_seed if curve in d[f] and not math.isnan(d[f][curve])]
            if values:
                row[f"{curve}_mean"], row[f"{curve}_std"], row[f"{curve}_ci95"] = mean_std_ci95(values)
        rows.append(row)
    return rows


def run_seeds(config: TrainConfig, seeds: list[int], *, env_fn=None, progress: bool = True) -> Path:
    """Trains ``config`` once per seed and writes the aggregate; returns the aggregate folder."""
    folder = aggregate_dir(config, seeds)
    histories, runs = {}, {}
    for cfg in seed_configs(config, seeds):
        trainer = RNTrainer(cfg, env_fn=env_fn, progress=progress)
        histories[cfg.seed] = trainer.train()
        runs[cfg.seed] = str(cfg.run_dir)
    rows = aggregate(histories)
    folder.mkdir(parents=True, exist_ok=True)
    fields = ["frames", "n"] + [f"{c}_{s}" for c in CURVES for s in ("mean", "std", "ci95")]
    with (folder / "aggregate.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in fields} for row in rows)
    final = next((r for r in reversed(rows) if "eval_return_mean" in r), {})
    summary = {"config": {**config.to_flat(), "seed": None}, "seeds": list(seeds), "runs": runs,
               "final_eval_return": {k.removeprefix("eval_return_"): v for k, v in final.items()
                                     if k.startswith("eval_return_")},
               "curves": rows}
    (folder / "aggregate.json").write_text(json.dumps(summary, indent=2))
    title = f"{config.task} {config.algo if config.algo != 'rn' else 'rn ' + config.graph_name}, {len(seeds)} seeds"
    plot_aggregate(rows, folder / "aggregate.png", title=title)
    return folder


def parse_sweep(text: str) -> tuple[str, list]:
    """``"beta=0,0.5"`` -> ``("beta", [0.0, 0.5])``, each value converted to the field's type.

    Values are separated by commas, or by semicolons when the text has one, for values that hold commas themselves
    (``tree:2,2``, ``periods=1,5``, ``goal:pos,beta=0.1``).

    Examples:
        >>> parse_sweep("beta=0,0.5"), parse_sweep("graph=flat,tree:2")
        (('beta', [0.0, 0.5]), ('graph', ['flat', 'tree:2']))
        >>> parse_sweep("vertex_reward=psi;goal:pos,beta=0.1")
        ('vertex_reward', ['psi', 'goal:pos,beta=0.1'])
    """
    name, sep, values = text.partition("=")
    fields = {f.name: f for f in TrainConfig.flat_fields()}
    if not sep or name not in fields or name in ("seed", "out"):
        raise ValueError(f"--sweep takes FIELD=V1,V2,... (or V1;V2;... for values with commas) with a TrainConfig "
                         f"field other than seed/out, got {text!r}.")
    default = fields[name].default
    kind = int if name == "n_agents" else type(default) if default is not None else str
    if kind is bool:
        def kind(v: str) -> bool:
            if v.lower() not in ("true", "false", "1", "0"):
                raise ValueError(v)
            return v.lower() in ("true", "1")
    try:
        parsed = [kind(v) for v in values.split(";" if ";" in values else ",") if v]
    except ValueError:
        raise ValueError(f"--sweep {name}: cannot read {values!r} as {kind.__name__} values.") from None
    if len(parsed) < 2:
        raise ValueError(f"--sweep {name} needs at least two values, got {values!r}.")
    return name, parsed


def run_sweep(config: TrainConfig, name: str, values: list, seeds: list[int], *, env_fn=None,
              progress: bool = True) -> Path:
    """One :func:`run_seeds` per value of field ``name`` (in ``<out>/<name><value>``), then ``sweep.png`` (one mean
    curve with its 95% band per value) and ``sweep.json`` in ``out`` (default ``results/<run name>_sweep-<name>``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(config.out) if config.out else Path("results") / (
        f"{dataclasses.replace(config, seed=0).run_dir.name.removesuffix('_seed0')}_sweep-{name}")
    summaries = {}
    for value in values:
        folder_name = f"{name}{value}".replace(":", "").replace(",", "-").replace("/", "-")
        cfg = dataclasses.replace(config, **{name: value}, out=str(root / folder_name))
        folder = run_seeds(cfg, seeds, env_fn=env_fn, progress=progress)
        summaries[str(value)] = json.loads((folder / "aggregate.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for value, summary in summaries.items():
        plot_aggregate(summary["curves"], None, ax=ax, label=f"{name}={value}")
    ax.set_title(f"{config.task}: {name} sweep, mean eval return over {len(seeds)} seed(s), 95% band")
    ax.legend()
    fig.tight_layout()
    fig.savefig(root / "sweep.png", dpi=100)
    plt.close(fig)
    (root / "sweep.json").write_text(json.dumps(
        {"field": name, "values": list(summaries), "seeds": list(seeds),
         "final_eval_return": {v: s["final_eval_return"] for v, s in summaries.items()},
         "curves": {v: s["curves"] for v, s in summaries.items()}}, indent=2))
    return root
