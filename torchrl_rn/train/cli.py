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
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev = sub.add_parser("eval", help="evaluate a checkpoint deterministically")
    ev.add_argument("checkpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rn`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            if args.resume:
                trainer = RNTrainer.resume(args.resume, frames=args.frames, progress=not args.no_progress)
            else:
                given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
                config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
                trainer = RNTrainer(config, progress=not args.no_progress)
            history = trainer.train()
            last = next((r["eval_return"] for r in reversed(history) if "eval_return" in r), float("nan"))
            print(f"done: {trainer.frames} frames, eval return {last:.3f}, results in {trainer.config.run_dir}")
        else:
            trainer = RNTrainer.resume(args.checkpoint, progress=False)
            print(f"eval return {trainer.evaluate():.3f} ({trainer.frames} frames trained)")
    except (GraphError, CheckpointError, ValueError, KeyError, ImportError) as err:  # bad input: one line
        if os.environ.get("RN_TRACEBACK"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"rn: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
