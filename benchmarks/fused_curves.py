"""One short fixed-seed run with the fused loss and the same run with the per-group reference, on one plot.

``RNLoss(fused=True)`` (``--fused-loss``) evaluates every group's policy and value directly on its networks and hands
them to the group's TorchRL ``ClipPPOLoss``; the reference (``fused=False``) calls each group's loss with its modules.
``tests/objectives/test_fused_loss.py`` shows the two equal term by term on random batches; this run shows it over a
whole training run: RN (``throughput.py``'s graph and task, balance ``tree:2``), the same seed, both paths, every
iteration's train and evaluation return, and the largest difference between the two curves.

Writes ``<out>/fused_curves.json`` and ``<out>/fused_curves.png``:

    python benchmarks/fused_curves.py --threads 1 --out benchmarks/results    # about 3 minutes on one core
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import speed_cli  # this script runs from benchmarks/

from torchrl_rn.train import RNTrainer, TrainConfig


@dataclass(frozen=True)
class Preset:
    task: str = "vmas/balance"
    n_agents: int = 4
    rn_graph: str = "tree:2"
    frames: int = 30_000
    frames_per_batch: int = 3_000
    max_steps: int = 100
    epochs: int = 4
    minibatch_size: int = 400
    num_cells: int = 256
    seed: int = 0


PRESETS = {
    "default": Preset(),
    "tiny": Preset(frames=400, frames_per_batch=200, max_steps=10, epochs=1, minibatch_size=100, num_cells=16),
}


def curves(p: Preset) -> dict:
    """Both paths' per-iteration train and evaluation returns, and the largest difference between them."""
    result: dict = {}
    for name, fused in (("per_group", False), ("fused", True)):
        with tempfile.TemporaryDirectory() as scratch:  # the runs' folders: only their curves are kept
            cfg = TrainConfig(task=p.task, n_agents=p.n_agents, algo="rn", graph=p.rn_graph, frames=p.frames,
                              frames_per_batch=p.frames_per_batch, max_steps=p.max_steps, epochs=p.epochs,
                              minibatch_size=p.minibatch_size, num_cells=p.num_cells, seed=p.seed, eval_every=1,
                              fused_loss=fused, logger="", out=str(Path(scratch) / name))
            trainer = RNTrainer(cfg, progress=False)
            try:
                history = trainer.train()
            finally:
                trainer.close()
        result[name] = {"frames": [r["frames"] for r in history],
                        "train_return": [r["train_return"] for r in history],
                        "eval_return": [r.get("eval_return") for r in history],
                        "loss": [r.get("loss") for r in history]}
    result["max_abs_difference"] = {
        key: max(abs(a - b) for a, b in zip(result["per_group"][key], result["fused"][key])
                 if a is not None and b is not None)
        for key in ("train_return", "eval_return", "loss")}
    return result


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, style in (("per_group", dict(lw=4, alpha=0.4)), ("fused", dict(lw=1.2, ls="--"))):
        run = result[name]
        ax.plot(run["frames"], run["eval_return"], label=f"{name.replace('_', '-')} loss", **style)
    diff = result["max_abs_difference"]["eval_return"]
    ax.set(xlabel="frames", ylabel="evaluation return",
           title=f"RN {result['preset']['rn_graph']} on {result['preset']['task']}, seed {result['preset']['seed']}: "
                 f"largest difference {diff:.1e}")
    ax.title.set_fontsize(9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args, p, out = speed_cli.parse(__doc__, PRESETS, "default", "torchrl-rn-fused-curves", argv)
    result = {"preset": dataclasses.asdict(p), **curves(p)}
    print("largest difference between the fused and per-group runs: "
          + ", ".join(f"{k} {v:.3g}" for k, v in result["max_abs_difference"].items()), flush=True)
    (out / "fused_curves.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "fused_curves.png")


if __name__ == "__main__":
    main()
