"""Plots of a run's metrics."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves", "plot_aggregate"]


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


def plot_aggregate(rows: list[dict[str, float]], path: str | Path | None, *, title: str = "", ax=None,
                   label: str | None = None) -> None:
    """Mean evaluation return over seeds with its 95% band (rows of :func:`~torchrl_rn.train.multiseed.aggregate`).

    With ``ax`` the curve is drawn into that matplotlib axes (to compare several configs) and nothing is saved.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 4))
    points = [r for r in rows if "eval_return_mean" in r]
    frames = [r["frames"] for r in points]
    mean = [r["eval_return_mean"] for r in points]
    lo = [r["eval_return_mean"] - r["eval_return_ci95"] for r in points]
    hi = [r["eval_return_mean"] + r["eval_return_ci95"] for r in points]
    n = points[0]["n"] if points else 0
    line, = ax.plot(frames, mean, "o-", label=label or f"eval (deterministic), mean of {n} seeds")
    ax.fill_between(frames, lo, hi, color=line.get_color(), alpha=0.25,
                    label=None if label else "95% CI (Student t over seeds)")
    ax.set_xlabel("frames")
    ax.set_ylabel("mean episode return")
    if own:
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
