"""Checkpoints of a run: plain tensors and containers, written atomically, loaded with ``weights_only=True``.

A checkpoint holds the configuration, counters, history, parameters, optimiser state and every random generator's
state (python, numpy, torch CPU and CUDA, through :class:`torchrl.checkpoint.GlobalRNGState`) as dicts, lists,
tuples, numbers, strings and tensors only, so :func:`load_checkpoint` reads it with ``torch.load(...,
weights_only=True)``: a file from elsewhere can never run code while it is loaded.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torchrl.checkpoint import GlobalRNGState

__all__ = ["CHECKPOINT", "FORMAT", "CheckpointError", "load_checkpoint", "atomic_save", "atomic_write", "rng_for_here",
           "isolated_rng"]

CHECKPOINT = "checkpoint.pt"
#: the ``format`` entry of every checkpoint this version writes (torchrl-rn/1 had no random state but torch's CPU one)
FORMAT = "torchrl-rn/2"


class CheckpointError(ValueError):
    """A path given to ``--resume`` / ``rn eval`` that is not a torchrl-rn checkpoint."""


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file of ``path``: the file itself, or the ``checkpoint.pt`` of a run folder."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint file (or the ``checkpoint.pt`` of a run folder), with a clear error if it is not one.

    The file is read with ``weights_only=True``: a file whose unpickling would run code is refused, not run.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is "not a checkpoint"
        detail = "it holds objects other than tensors and plain containers" if "weights_only" in str(err) else (
            type(err).__name__)
        raise CheckpointError(f"{str(path)!r} is not a torchrl-rn checkpoint ({detail}).") from None
    if not isinstance(state, dict) or not str(state.get("format", "")).startswith("torchrl-rn/"):
        raise CheckpointError(f"{str(path)!r} is not a torchrl-rn checkpoint.")
    if state["format"] != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a {state['format']} checkpoint; this torchrl-rn reads {FORMAT} only.")
    return state


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then a rename: a crash mid-write leaves the previous file intact.

    The temporary file gets a fresh name in the same folder, created exclusively (``tempfile.mkstemp``): two writers
    never share it, and a file or link planted under a predictable name is never followed or overwritten.
    """
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Writes ``path`` atomically: ``write(f)`` into a fresh, exclusively created temporary file of the same folder
    (binary mode), then a rename over ``path``; the temporary file is removed if ``write`` fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the mode a plain open() gives, not mkstemp's private 0600
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_for_here(rng: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's random state without the generators of accelerators this machine lacks (a run trained on a GPU,
    read on a CPU machine): ``GlobalRNGState`` refuses to load those."""
    missing = {"torch_cuda": not torch.cuda.is_available(), "torch_mps": not torch.backends.mps.is_available(),
               "torch_xpu": not (hasattr(torch, "xpu") and torch.xpu.is_available())}
    return {key: value for key, value in rng.items() if not missing.get(key, False)}


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Runs a block without changing any global random generator (python, numpy, torch CPU and CUDA)."""
    state = GlobalRNGState().state_dict()
    try:
        yield
    finally:
        GlobalRNGState().load_state_dict(state)
