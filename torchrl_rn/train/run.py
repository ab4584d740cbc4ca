"""The run folder policy: where a run writes, what it may replace, and what a resumed or read run is configured as.

* A new run never takes another run's folder: one that holds a run (any of :data:`RUN_FILES`) is refused
  (:func:`refuse_existing_run`) unless ``force``, which moves that run's files aside into ``replaced-<time>/`` when
  training starts (:func:`prepare_folder`); a run without ``out`` goes to ``results/<task>_<method>_seed<seed>`` or,
  when that holds a run, to the same name with a timestamp (:func:`free_folder`).
* While a run trains (or a resumed one continues), its folder is locked (:class:`RunLock`): any other run on it is
  refused (:class:`RunInUse`), whatever its flags. Files are written atomically through fresh temporary names that
  never follow links (:func:`~torchrl_rn.train.checkpoint.atomic_write`).
* A resumed run writes into its checkpoint's folder, with the configuration it recorded: only the settings in
  :data:`RESUMABLE` may change, any other one given must equal the recorded one (:func:`resumed_config`).
* A run read for ``rn eval`` or ``rn show`` (``read_only``) needs no writable folder and runs on its own device, or on
  the CPU where this machine lacks it (with a :class:`DeviceFallbackWarning`).

Examples:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> free_folder(folder) == folder, holds_run(folder)
    (True, [])
    >>> (folder / "metrics.csv").touch()
    >>> holds_run(folder), free_folder(folder).name.startswith(folder.name + "_")
    (['metrics.csv'], True)
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from torchrl_rn.train.checkpoint import CHECKPOINT, CheckpointError, atomic_write, load_checkpoint
from torchrl_rn.train.config import TrainConfig, device_problem, is_stored_graph
from torchrl_rn.train.paths import path_problem

__all__ = ["RUN_FILES", "RESUMABLE", "DeviceFallbackWarning", "run_folder", "holds_run", "refuse_existing_run",
           "free_folder", "stored_graph", "self_contained", "check_output_file", "check_writable", "prepare_folder",
           "resumed_config", "RunLock", "RunInUse"]

#: the files of a run in its folder (``--force`` removes exactly these before a new run starts there)
RUN_FILES = (CHECKPOINT, "config.json", "config.yaml", "metrics.csv", "curve.png", "logs")
#: settings ``--resume`` can change; any other given setting must equal the checkpoint's
RESUMABLE = ("frames",)

class DeviceFallbackWarning(UserWarning):
    """A read-only trainer (``rn eval``, ``rn show``) runs on the CPU because this machine lacks the run's device."""


def run_folder(path: str | Path) -> Path:
    """The folder of a run given as its folder or as its checkpoint file."""
    return Path(path) if Path(path).is_dir() else Path(path).parent


def holds_run(folder: Path) -> list[str]:
    """The run files :data:`RUN_FILES` that ``folder`` holds, none where it has neither a checkpoint nor metrics (a
    run killed before its first checkpoint left only its config files: the folder is free again)."""
    if not folder.is_dir() or not any((folder / name).exists() for name in (CHECKPOINT, "metrics.csv")):
        return []
    return [name for name in RUN_FILES if (folder / name).exists()]


def refuse_existing_run(folder: Path) -> None:
    """Raises a :class:`ValueError` if ``folder`` holds a run (it names the files, ``--resume`` and ``--force``)."""
    if found := holds_run(folder):
        raise ValueError(f"--out {str(folder)!r} already holds a run ({', '.join(found)}); continue it with "
                         f"'rn train --resume {folder}', or pass --force to replace it.")


def free_folder(folder: Path) -> Path:
    """``folder`` if it holds no run, else ``folder`` with a timestamp (and a counter if that is taken too)."""
    if not holds_run(folder):
        return folder
    stamped = folder.with_name(f"{folder.name}_{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, k = stamped, 1
    while candidate.exists():
        k += 1
        candidate = stamped.with_name(f"{stamped.name}-{k}")
    return candidate


def stored_graph(spec: str) -> str:
    """``--graph``'s value as a run stores it: a ``.json`` file's graph itself (compact node-link JSON, so the run no
    longer depends on the file), any other spec as it is.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "g.json"
        >>> _ = path.write_text('{"nodes": [{"id": "m0"}],  "edges": []}')
        >>> stored_graph(str(path)), stored_graph("tree:2")
        ('{"nodes":[{"id":"m0"}],"edges":[]}', 'tree:2')
    """
    if not spec.endswith(".json"):
        return spec
    try:
        data = json.loads(Path(spec).read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"cannot read graph file {spec!r}: {' '.join(str(err).split())[:120]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"graph file {spec!r} holds no JSON object.")
    return json.dumps(data, separators=(",", ":"))


def self_contained(config: TrainConfig) -> TrainConfig:
    """``config`` with a graph read from a file stored in it (:func:`stored_graph`): the run's config.yaml and
    checkpoint hold the graph, and ``rn eval``/``rn show``/``--resume`` use it whatever happens to the file. A file
    that cannot be read is left named: building the graph then refuses it in one line."""
    try:
        graph = stored_graph(config.graph)
    except ValueError:
        return config
    return config if graph == config.graph else dataclasses.replace(config, graph=graph)


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuses an output file that cannot be written (a folder, a read-only file or folder, a missing folder), before
    any work; returns it as a ``Path``."""
    if (problem := path_problem(path, flag)) is not None:
        raise ValueError(problem)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a folder, not a file.")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {str(path)!r}: its folder {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {str(path)!r} is not writable.")
    return path


def check_writable(out: Path) -> None:
    """Refuses an ``--out`` that cannot be created or written, without creating anything."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder.")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {str(out)!r} cannot be created: {str(existing)!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r} is not writable ({str(existing)!r} is read-only).")


def prepare_folder(run_dir: Path, config: TrainConfig, *, force: bool = False) -> Path | None:
    """Creates the run folder and writes the run's ``config.json`` and ``config.yaml`` (the config this run ran:
    ``rn train --config`` runs it again), atomically. With ``force``, the old run's files (:data:`RUN_FILES`) are
    first moved aside into ``replaced-<time>/`` inside the folder, never deleted: a new run that then fails loses no
    run. Returns that folder (``None`` where nothing was moved)."""
    aside = None
    if force and (found := holds_run(run_dir)):
        aside = run_dir / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
        k = 1
        while aside.exists():
            k += 1
            aside = aside.with_name(f"{aside.name.split('~')[0]}~{k}")
        aside.mkdir()
        for name in found:
            os.replace(run_dir / name, aside / name)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "config.json",
                 lambda f: f.write(json.dumps(config.to_flat(), indent=2, default=str).encode()))
    atomic_write(run_dir / "config.yaml", lambda f: f.write(config.to_yaml().encode()))
    return aside


class RunInUse(ValueError):
    """A run folder that another live process is training in (its lock is held)."""


class RunLock:
    """An exclusive lock on a run folder, held while a run trains there: a second run (or resume) on the same
    folder is refused, whatever its flags, until the first one ends or dies (``fcntl.flock`` on ``<folder>/.lock``,
    which the kernel releases with its process; the file is opened without following links).

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "run"
        >>> with RunLock(folder):
        ...     try:
        ...         RunLock(folder).acquire()
        ...     except RunInUse as err:
        ...         print(str(err).split(";")[0].replace(str(folder), "RUN"))
        --out 'RUN' is in use by another run (pid ...)
        >>> RunLock(folder).acquire().release()  # free again once the first one ended
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path) -> None:
        self.folder, self._fd = Path(folder), None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunInUse(f"--out {str(self.folder)!r} is in use by another run (pid {holder}); wait for it to end, "
                           "or give another --out.") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def resumed_config(path: str | Path, *, frames: int | None = None, settings: dict[str, Any] | None = None,
                   read_only: bool = False, device: str | None = None, state: dict | None = None) -> TrainConfig:
    """The configuration of the run a checkpoint holds, as it continues (or is read) here.

    Args:
        path: a checkpoint file or a run folder.

    Keyword Args:
        frames (int, optional): a new frame budget (the only setting a resumed run may change).
        settings (dict, optional): other settings given with the resume (e.g. from the command line); each must
            equal the checkpoint's, otherwise a :class:`ValueError` names it.
        read_only (bool): the run will not train (e.g. ``rn eval``): its folder need not be writable.
        device (str, optional): where a read-only run runs (e.g. ``"cpu"`` for a run trained on a GPU). Default: the
            run's own device, or the CPU where this machine lacks it. A run that trains continues on its own device.
        state (dict, optional): the checkpoint, if already loaded.

    Raises:
        ValueError: a setting differs from the checkpoint's, or the device is unavailable for a training run.
        CheckpointError: the checkpoint's configuration cannot be read by this torchrl-rn.
    """
    state = load_checkpoint(path) if state is None else state
    folder = run_folder(path)
    if not read_only and Path(path).is_file() and Path(path).name != CHECKPOINT:
        raise ValueError(f"--resume {str(path)!r}: a resumed run writes into its checkpoint's folder, and this file is "
                         f"not the {CHECKPOINT} of a run folder; copy it as {CHECKPOINT} into a folder of its own "
                         "and resume that folder.")
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{str(path)!r} holds no configuration mapping (its config is "
                              f"{type(state.get('config')).__name__}).")
    config = dict(state["config"])
    recorded = str(config.get("device", "cpu"))
    if read_only:
        config["device"] = device if device is not None else (recorded if device_problem(recorded) is None else "cpu")
        if device is None and config["device"] != recorded:
            warnings.warn(f"{str(path)!r} was trained on {recorded!r}, which this machine lacks: it runs on the "
                          "CPU here (--device chooses).", DeviceFallbackWarning, stacklevel=3)
    elif device is not None:
        raise ValueError("a resumed run trains on its own device; device= applies to read-only trainers only.")
    elif device_problem(recorded) is not None:
        raise ValueError(f"{str(path)!r} was trained on {recorded!r}, which this machine lacks: resume it where "
                         f"{recorded!r} is available, or evaluate it here with 'rn eval' (it falls back to the CPU).")
    defaults = TrainConfig().to_flat()
    for name, value in TrainConfig.flatten(settings or {}).items():
        if name == "out":
            if Path(value).resolve() != folder.resolve():
                raise ValueError(f"--out {value!r} with --resume: a resumed run writes into its own folder "
                                 f"{str(folder)!r}.")
        elif name in RESUMABLE:
            frames = value if frames is None else frames
        elif name not in config:  # a setting added since the checkpoint: the run has it at its default
            if name not in defaults or value != defaults[name]:
                raise ValueError(f"--{name.replace('_', '-')} {value!r} cannot be given with --resume: the "
                                 "checkpoint predates the setting, so its run has the default.")
        elif name == "graph" and is_stored_graph(str(config[name])) and not is_stored_graph(value):
            if stored_graph(value) != config[name]:
                raise ValueError(f"--graph {value!r} differs from the graph the checkpoint stores (the file changed "
                                 "since the run started): a resumed run keeps its stored graph; leave --graph out.")
        elif value != config[name]:
            flag, changeable = "--" + name.replace("_", "-"), ", ".join("--" + r for r in RESUMABLE)
            raise ValueError(f"{flag} {value!r} differs from the checkpoint's {config[name]!r}: --resume "
                             f"continues a run as configured (only {changeable} can change).")
    config["out"] = str(folder)  # where the run lives now, even if it was copied or started without --out
    try:  # the checkpoint's own config first: a foreign or tampered one (sizes over the limits) is named as such
        TrainConfig(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{str(path)!r} holds a configuration this torchrl-rn cannot read ({err})") from None
    done = state.get("frames", 0)
    if frames is not None and not read_only and isinstance(done, int) and frames < done:
        raise ValueError(f"--frames {frames} is below the {done} frames {str(folder)!r} has trained: a resumed run "
                         f"only continues (give --frames >= {done}).")
    if frames is not None:
        config["frames"] = frames
    config = TrainConfig(**config)
    if not read_only:
        check_writable(config.run_dir)
    return config
