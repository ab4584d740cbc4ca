"""Plots of a run's metrics."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(history: list[dict[str, float]], path: str | Path, *, title: str = "") -> None:
    """Training and evaluation return against frames, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    frames = [r["frames"] for r in history]
    ax.plot(frames, [r["train_return"] for r in history], label="train (episodes ended in batch)")
    evals = [(r["frames"], r["eval_return"]) for r in history if "eval_return" in r]
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval (deterministic)")
    ax.set_xlabel("frames")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
