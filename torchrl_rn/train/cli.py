"""The ``rn`` command line: ``rn train`` and ``rn eval``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from torchrl_rn.graph import GraphError
from torchrl_rn.train.checkpoint import CheckpointError
from torchrl_rn.train.config import TrainConfig
from torchrl_rn.train.trainer import RNTrainer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rn", description="Reinforcement Networks on TorchRL.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an RN graph or a MAPPO/IPPO baseline")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        # None = not given: TrainConfig's default for a new run, the checkpoint's value with --resume
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(default, bool):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default: {default}")
        else:
            kind = int if f.name == "n_agents" else {int: int, float: float}.get(type(default), str)
            train.add_argument(flag, type=kind, default=None, help=f"default: {default}")
    train.add_argument("--resume", default=None, help="checkpoint file or run folder to continue from")
    train.add_argument("--force", action="store_true", help="replace the run an existing --out folder holds")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev = sub.add_parser("eval", help="evaluate a checkpoint deterministically")
    ev.add_argument("checkpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rn`` command.

    Bad input (settings, task, graph, output folder, checkpoint) is refused before any work starts, with one line
    ``rn: error: ...`` and exit code 2; set ``RN_TRACEBACK=1`` for the traceback. Errors during training are bugs and
    keep theirs. Ctrl-C keeps the last checkpoint, plots, prints the resume command and exits with 130.
    """
    args = _parser().parse_args(argv)
    trainer = None
    try:
        trainer = _build(args)
        if args.command == "train":
            history = trainer.train()
            last = next((r["eval_return"] for r in reversed(history) if "eval_return" in r), float("nan"))
            print(f"done: {trainer.frames} frames, eval return {last:.3f}, results in {trainer.config.run_dir}")
        else:
            print(f"eval return {trainer.evaluate():.3f} ({trainer.frames} frames trained)")
    except _BadInput as err:
        print(f"rn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if trainer is None or args.command != "train":
            print("rn: interrupted", file=sys.stderr)
        else:
            run = trainer.config.run_dir
            print(f"rn: interrupted after iteration {trainer.iteration} ({trainer.frames} frames); resume with: "
                  f"rn train --resume {run}", file=sys.stderr)
        return 130
    return 0


class _BadInput(Exception):
    """A bad setting, task, graph, folder or checkpoint, reported in one line."""


def _build(args: argparse.Namespace) -> RNTrainer:
    """The trainer ``args`` ask for; any error here is bad input (configuration, graph, env, checkpoint loading)."""
    try:
        progress = not getattr(args, "no_progress", True)
        if args.command == "eval":
            return RNTrainer.resume(args.checkpoint, progress=False, read_only=True)
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        given = {k: v for k, v in given.items() if v is not None}
        if args.resume:
            if args.force:
                raise ValueError("--force cannot be given with --resume: a resumed run continues in its own folder.")
            return RNTrainer.resume(args.resume, settings=given, progress=progress)
        return RNTrainer(TrainConfig(**given), progress=progress, force=args.force)
    except (GraphError, CheckpointError, ValueError, ImportError) as err:
        if os.environ.get("RN_TRACEBACK"):
            raise
        raise _BadInput(str(err).splitlines()[0] if str(err) else type(err).__name__) from err


if __name__ == "__main__":
    sys.exit(main())
