"""Checkpoints of a run: written atomically, loaded with a clear error when a file is not one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT", "CheckpointError", "load_checkpoint"]

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ValueError):
    """A path given to ``--resume`` / ``rn eval`` that is not a torchrl-rn checkpoint."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint file (or the ``checkpoint.pt`` of a run folder), with a clear error if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is "not a checkpoint"
        raise CheckpointError(f"{str(path)!r} is not a torchrl-rn checkpoint ({type(err).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != "torchrl-rn/1":
        raise CheckpointError(f"{str(path)!r} is not a torchrl-rn checkpoint.")
    return state
