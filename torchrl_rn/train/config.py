"""``TrainConfig``: every knob of a training run, as one dataclass."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig", "ALGOS", "LOGGERS"]

ALGOS = ("rn", "mappo", "ippo")
#: TorchRL's loggers (``torchrl.record.loggers.get_logger``) and the package each needs ("" logs nothing)
LOGGERS = {"": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
           "trackio": "trackio"}

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
    eval_every: int = 2
    eval_envs: int = 16
    seed: int = 0
    device: str = "cpu"
    workers: int = field(default=1, metadata={"help": "collector processes (TorchRL's MultiSyncCollector, or Ray actors "
                                                       "with --ray); each runs num_envs / workers envs"})
    ray: str | None = field(default=None, metadata={"help": "Ray address for collection: 'local' starts a loopback-only "
                                                            "instance here, '<head>:6379' joins a cluster"})
    logger: str = "csv"
    out: str | None = None

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {ALGOS}.")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {[k for k in LOGGERS if k]} or ''.")
        package = LOGGERS[self.logger]
        if package and importlib.util.find_spec(package) is None:  # fail now, not after the first batch
            raise ValueError(f"logger {self.logger!r} needs the {package} package: pip install {package}")
        for name in ("frames", "frames_per_batch", "epochs", "minibatch_size", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.frames_per_batch % self.max_steps:
            raise ValueError(
                f"frames_per_batch ({self.frames_per_batch}) must be a multiple of max_steps ({self.max_steps}): "
                "the collector runs frames_per_batch / max_steps vectorised envs."
            )

        if self.workers < 1 or self.num_envs % self.workers:
            raise ValueError(f"workers ({self.workers}) must divide the number of envs, frames_per_batch / max_steps = "
                             f"{self.num_envs}: each worker runs the same share of envs.")
        if self.ray is not None and importlib.util.find_spec("ray") is None:
            raise ValueError(f"ray {self.ray!r} needs Ray: pip install 'torchrl-rn[distributed]'")

    @property
    def num_envs(self) -> int:
        return self.frames_per_batch // self.max_steps

    @property
    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        name = self.algo if self.algo != "rn" else f"rn-{self.graph.replace(':', '').replace(',', '-')}"
        return Path("results") / f"{self.task.replace('/', '-')}_{name}_seed{self.seed}"
