"""``TrainConfig``: every knob of a training run, as one dataclass."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from torchrl_rn.graph import PHI_OPTIONS as PHIS

__all__ = ["TrainConfig", "ALGOS", "LOGGERS"]

ALGOS = ("rn", "mappo", "ippo")
#: TorchRL's loggers (``torchrl.record.loggers.get_logger``) and the package each needs ("" logs nothing)
LOGGERS = {"": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
           "trackio": "trackio"}
NEIGHBOURHOODS = ("both", "up", "down")
CRITICS = ("group", "local")
#: settings only RN uses; with ``--algo mappo/ippo`` they must keep their defaults
RN_ONLY = ("graph", "phi", "beta", "neighbourhood", "critic", "detach_messages", "manager_cells", "periods",
           "observe_clock")

@dataclass
class TrainConfig:
    """Every knob of a run. Defaults follow TorchRL's MAPPO tutorial, with 10 epochs and a short budget.

    Examples:
        >>> TrainConfig(task="vmas/navigation", frames=12_000).frames_per_batch
        6000
    """

    task: str = "vmas/balance"
    n_agents: int | None = None
    algo: str = "rn"
    graph: str = "tree:2"
    frames: int = 60_000
    frames_per_batch: int = 6_000
    max_steps: int = 100
    epochs: int = 10
    minibatch_size: int = 400
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    gamma: float = 0.99
    lmbda: float = 0.9
    clip_epsilon: float = 0.2
    entropy_coeff: float = 1e-4
    normalize_advantage: bool = False
    num_cells: int = 256
    manager_cells: int = 64
    share_params: bool = True
    # RN-specific: message function of non-motor vertices, graph-advantage mixing, critic scope, gradient flow
    phi: str = "identity"
    beta: float = 0.0
    neighbourhood: str = "both"
    critic: str = "group"
    detach_messages: bool = False
    # RN-specific: decision period per level from the motors up ("1,5": managers decide every 5 steps); "" = all 1
    periods: str = ""
    # RN-specific: subordinates also observe the steps left until their superiors' next decisions (with --periods)
    observe_clock: bool = False
    eval_every: int = 2
    eval_envs: int = 16
    seed: int = 0
    device: str = "cpu"
    logger: str = "csv"
    out: str | None = None

    def __post_init__(self) -> None:
        """Refuses a bad setting in one line naming the option, before anything is built or written."""
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {ALGOS}.")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {[k for k in LOGGERS if k]} or ''.")
        package = LOGGERS[self.logger]
        if package and importlib.util.find_spec(package) is None:  # fail now, not after the first batch
            raise ValueError(f"logger {self.logger!r} needs the {package} package: pip install {package}")
        for name in ("frames", "frames_per_batch", "epochs", "minibatch_size", "max_steps", "eval_every", "eval_envs",
                     "num_cells", "manager_cells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}.")
        if self.n_agents is not None and self.n_agents < 1:
            raise ValueError(f"--n-agents must be >= 1, got {self.n_agents}.")
        if self.frames_per_batch % self.max_steps:
            raise ValueError(
                f"--frames-per-batch ({self.frames_per_batch}) must be a multiple of --max-steps ({self.max_steps}): "
                "the collector runs frames_per_batch / max_steps vectorised envs."
            )
        if self.minibatch_size > self.frames_per_batch:
            raise ValueError(f"--minibatch-size ({self.minibatch_size}) must be <= --frames-per-batch "
                             f"({self.frames_per_batch}): an epoch samples frames_per_batch // minibatch_size "
                             "minibatches.")
        for name, low, high, closed_low in (("lr", 0.0, float("inf"), False), ("gamma", 0.0, 1.0, False),
                                            ("lmbda", 0.0, 1.0, True), ("clip_epsilon", 0.0, float("inf"), False),
                                            ("max_grad_norm", 0.0, float("inf"), False),
                                            ("entropy_coeff", 0.0, float("inf"), True), ("beta", 0.0, 1.0, True)):
            value = getattr(self, name)
            if not (low <= value if closed_low else low < value) or not value <= high or math.isnan(value):
                if high < float("inf"):
                    interval = f"in {'[' if closed_low else '('}{low:g}, {high:g}]"
                else:
                    interval = f">= {low:g}" if closed_low else f"> {low:g}"
                raise ValueError(f"{_flag(name)} must be {interval}, got {value}.")
        if self.phi not in PHIS:
            raise ValueError(f"--phi must be one of {PHIS}, got {self.phi!r}.")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"--neighbourhood must be one of {NEIGHBOURHOODS}, got {self.neighbourhood!r}.")
        if self.critic not in CRITICS:
            raise ValueError(f"--critic must be one of {CRITICS}, got {self.critic!r}.")
        self.period_list  # noqa: B018 (parses --periods: refuses a bad value here)
        if self.algo != "rn":  # RN-only settings would be silently ignored by the baselines: refuse them
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            changed = [_flag(name) for name in RN_ONLY if getattr(self, name) != defaults[name]]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(f"{', '.join(changed)} {verb} only to --algo rn, not to --algo {self.algo}.")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ValueError(f"--device {self.device!r} is not a torch device (e.g. cpu, cuda, cuda:1).") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device!r}: CUDA is not available in this torch build or machine.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {self.device!r}: MPS is not available on this machine.")
        if self.out is not None:
            _check_writable(Path(self.out))

    @property
    def period_list(self) -> list[int] | None:
        """``periods`` as one int per level from the motors up (``None`` when empty: every vertex decides each step)."""
        if not self.periods.strip():
            return None
        try:
            values = [int(p) for p in self.periods.split(",")]
        except ValueError:
            values = []
        if not values or any(p < 1 for p in values):
            raise ValueError(f"--periods must be positive ints, one per level from the motors up (e.g. 1,5), "
                             f"got {self.periods!r}.")
        return values

    @property
    def num_envs(self) -> int:
        return self.frames_per_batch // self.max_steps

    @property
    def run_dir(self) -> Path:
        """The run's folder: ``out``, or ``results/<task>_<method>_seed<seed>`` (a name, never a path).

        :class:`RNTrainer` gives a run without ``out`` a fresh timestamped folder under this name instead, so that no
        run ever replaces another.
        """
        if self.out:
            return Path(self.out)
        return Path("results") / f"{_slug(self.task)}_{self.method_name}_seed{self.seed}"

    @property
    def method_name(self) -> str:
        """``mappo``, ``ippo`` or ``rn-<graph>``; a graph read from a file is ``rn-file`` (a path is no name)."""
        if self.algo != "rn":
            return self.algo
        graph = "file" if self.graph.endswith(".json") or os.sep in self.graph or "/" in self.graph else self.graph
        periods = f"-p{self.periods.replace(',', '-')}" if self.period_list else ""
        return f"rn-{_slug(graph.replace(':', '').replace(',', '-') + periods)}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _slug(text: str) -> str:
    """``text`` with everything but letters, digits, ``.``, ``+`` and ``-`` replaced by ``-``: a file name."""
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text).strip(".-") or "run"


def _check_writable(out: Path) -> None:
    """Refuses an ``--out`` that cannot be created or written, without creating anything."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder.")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {str(out)!r} cannot be created: {str(existing)!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r} is not writable ({str(existing)!r} is read-only).")
