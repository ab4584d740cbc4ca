"""PPO diagnostics of an iteration: what each group's loss reports, averaged over the iteration's minibatches.

TorchRL's PPO losses return, besides the ``loss_*`` terms, the diagnostics CleanRL logs every iteration:
``kl_approx``, ``clip_fraction``, ``entropy``, ``explained_variance``, ``ESS`` (whichever the loss computes).
:func:`loss_scalars` flattens a loss output into ``"<group>/<name>"`` columns (RNLoss nests one sub-tensordict per
group; a flat MAPPO/IPPO output is filed under the env's agent group), and :class:`MeanOver` averages them over the
minibatches of an iteration. The columns of ``metrics.csv`` are listed in :data:`COLUMNS_DOC`.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from tensordict import TensorDictBase

__all__ = ["loss_scalars", "MeanOver", "COLUMNS_DOC", "write_metrics", "nonfinite_entry"]

#: What each column of ``metrics.csv`` means (and what the TorchRL logger receives under the same name).
COLUMNS_DOC = {
    "iteration": "PPO update count (one per collected batch)",
    "frames": "environment steps collected so far",
    "train_return": "mean return (over agents) of the training episodes that ended in this batch (stochastic "
                    "policy); NaN if none ended",
    "eval_return": "mean return of one deterministic episode per eval env (--eval-envs of them, seeded seed + 1)",
    "loss": "total loss, mean over the iteration's minibatches",
    "grad_norm": "global L2 norm of the gradient before clipping (what clip_grad_norm_ returns), mean over "
                 "minibatches",
    "<group>/loss_objective, loss_critic, loss_entropy": "the group's PPO loss terms, mean over minibatches",
    "<group>/kl_approx": "approximate KL(old || new) of the group's policy, mean over minibatches",
    "<group>/clip_fraction": "fraction of the group's samples whose probability ratio was clipped",
    "<group>/entropy": "entropy of the group's policy (per vertex, mean over samples)",
    "<group>/explained_variance": "1 - Var(value_target - value) / Var(value_target) of the group's critic",
    "<group>/ESS": "effective sample size of the importance ratios, as a fraction of the minibatch",
    "<group>/grad_norm": "L2 norm of the gradient over the group loss's own parameters (RN), before clipping",
    "train_seconds": "seconds spent in the PPO update of this iteration",
    "wall_seconds": "seconds since the (resumed) run started",
}


def loss_scalars(out: TensorDictBase, *, default_group: str = "agents") -> dict[str, float]:
    """Every scalar of a loss output as ``{"<group>/<name>": value}``; the root ``"loss"`` stays ``"loss"``.

    Tensors with several entries (``explained_variance`` is per agent) are averaged; ``composite_entropy`` (per
    action head) is skipped. Losses that compute fewer diagnostics simply give fewer columns.

    Examples:
        >>> from tensordict import TensorDict
        >>> out = TensorDict({"loss": 1.0, "level1": {"kl_approx": 0.5, "loss_objective": -0.125}})
        >>> loss_scalars(out)
        {'loss': 1.0, 'level1/kl_approx': 0.5, 'level1/loss_objective': -0.125}
        >>> loss_scalars(TensorDict({"clip_fraction": 0.25}))  # a flat MAPPO/IPPO output
        {'agents/clip_fraction': 0.25}
    """
    names: list[str] = []
    values: list[torch.Tensor] = []
    for key, value in out.items(include_nested=True, leaves_only=True):
        key = key if isinstance(key, tuple) else (key,)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or "composite_entropy" in key:
            continue
        # TorchRL reduces most diagnostics to scalars; explained_variance stays per agent: average over them
        value = value.detach().mean()
        if key == ("loss",):
            name = "loss"
        elif len(key) == 1:
            name = f"{default_group}/{key[0]}"
        else:
            name = "/".join(key)
        names.append(name)
        values.append(value)
    # one conversion for all of them (a float() per value is a call and a read each): the same Python floats
    if values and all(v.dtype == values[0].dtype and v.device == values[0].device for v in values):
        return dict(zip(names, torch.stack(values).tolist()))
    return {name: float(value) for name, value in zip(names, values)}


class MeanOver:
    """Running mean of named scalars; a name missing from some steps is averaged over the steps that had it.

    Examples:
        >>> m = MeanOver()
        >>> m.add({"a": 1.0, "b": 2.0}); m.add({"a": 3.0})
        >>> m.mean()
        {'a': 2.0, 'b': 2.0}
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():  # a NaN stays NaN: a diverged loss must show in the metrics
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def mean(self) -> dict[str, float]:
        return {name: total / self._counts[name] for name, total in self._sums.items()}


def write_metrics(history: list[dict[str, float]], path: str | Path) -> None:
    """Writes a run's ``metrics.csv`` atomically, whole, from its history (so a resumed run never duplicates a row):
    the columns of :data:`COLUMNS_DOC`, the per-group diagnostics ``"<group>/<name>"`` sorted, then the timings.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> write_metrics([{"iteration": 1, "frames": 10, "agents/entropy": 0.5, "wall_seconds": 2.0}], path)
        >>> path.read_text().splitlines()[0]
        'iteration,frames,train_return,eval_return,loss,grad_norm,agents/entropy,train_seconds,wall_seconds'
    """
    fields = ["iteration", "frames", "train_return", "eval_return", "loss", "grad_norm"]
    extra = {k for row in history for k in row} - {*fields, "train_seconds", "wall_seconds"}
    fields += sorted(extra) + ["train_seconds", "wall_seconds"]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in fields} for row in history)
    os.replace(tmp, path)


def nonfinite_entry(data: TensorDictBase) -> str | None:
    """What a collected batch holds that is NaN or inf among its rewards and observations, naming its group (the
    first one found), or ``None``.

    Examples:
        >>> from tensordict import TensorDict
        >>> nonfinite_entry(TensorDict({"next": {"agents": {"reward": torch.tensor([1.0, float("nan")])}}}, []))
        "the collected batch holds NaN or inf in group 'agents''s reward ('next', 'agents', 'reward')"
    """
    for key, value in data.items(include_nested=True, leaves_only=True):
        key = key if isinstance(key, tuple) else (key,)
        if key[-1] in ("reward", "observation") and value.is_floating_point() and not value.isfinite().all():
            where = [k for k in key[:-1] if k != "next"]
            group = f"group {where[-1]!r}" if where else "the team (root)"
            return f"the collected batch holds NaN or inf in {group}'s {key[-1]} {key}"
    return None
