"""The ``rn`` command line: ``rn train``, ``rn eval`` and ``rn show``.

``rn train``'s options are generated from :class:`TrainConfig`'s field docs (meaning, unit, default and choices);
``--config exp.yaml`` reads an experiment file (flags override it) and ``--seeds 0,1,2`` runs one folder per seed
plus an aggregate curve with a 95% band.

Imports are lazy: this module loads the standard library only, ``rn --help`` answers without loading torch, and
``rn train`` loads :class:`TrainConfig` (and torch) for its options only when it is the command given.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchrl_rn.train.config import TrainConfig
    from torchrl_rn.train.trainer import RNTrainer

__all__ = ["main"]

_EXAMPLES = """

examples:
  rn train --task vmas/balance --graph tree:2 --frames 60000
  rn train --config exp.yaml --lr 1e-3        # flags override the file
  rn train --config results/RUN/config.yaml   # run a recorded config again
  rn train --task vmas/balance --seeds 0,1,2  # one folder per seed + aggregate.png (mean, 95% CI)
  rn train --sweep beta=0,0.5 --seeds 0,1,2    # one aggregate per value + sweep.png"""

_EVAL_EPILOG = """\
why the return may differ from the one recorded during training: training evaluates on its own eval envs
(seeded with the run's seed + 1, --eval-envs of them, one episode each); rn eval draws --episodes fresh
episodes from envs seeded with --seed. Both are deterministic (the policy's mode), but different initial
states give a different sample mean: compare the 95% CIs, not the means."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``rn: error: ...``, exit code 2) like every other bad input."""

    #: the command line being parsed (set by :func:`main`), for hints that depend on it
    argv: list[str] = []

    def error(self, message: str):
        extra = message.removeprefix("unrecognized arguments:").split()
        if message.startswith("unrecognized arguments:") and "--seeds" in self.argv and all(
                x.lstrip("-").isdigit() for x in extra):  # `--seeds 0 1`: the rest of a space-separated list
            message += " (--seeds takes one comma-separated list: --seeds 0,1,2)"
        self.exit(2, f"rn: error: {message}\n")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``rn`` parser; given the ``command`` being run, only that command's options are built (``rn train``'s
    import :class:`TrainConfig`, and torch with it: ``rn --help`` and ``rn eval --help`` do not)."""
    parser = _Parser(prog="rn", description="Reinforcement Networks on TorchRL.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train an RN graph or a MAPPO/IPPO baseline",
        description="Train one run (or one per --seeds) and write config.yaml, metrics.csv, curve.png and "
                    "checkpoint.pt into its folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command in (None, "train"):
        _train_options(train)
    _eval_and_show(sub)
    return parser


def _train_options(train: argparse.ArgumentParser) -> None:
    from torchrl_rn.train.config import GRAPH_SPEC_HELP, TrainConfig, field_help

    train.epilog = GRAPH_SPEC_HELP + _EXAMPLES
    for f in TrainConfig.flat_fields():
        # None = not given: the --config file's value, else TrainConfig's default (the checkpoint's with --resume)
        flag, default = "--" + f.name.replace("_", "-"), f.default
        if isinstance(default, bool):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=field_help(f))
            continue
        kind = int if f.name in ("n_agents", "max_steps") else {int: int, float: float}.get(type(default), str)
        metavar = (f.metadata.get("unit") or f.name).upper().replace(" ", "_") if kind is not str else None
        train.add_argument(flag, type=kind, default=None, choices=f.metadata.get("choices"), metavar=metavar,
                           help=field_help(f))
    train.add_argument("--config", default=None, metavar="YAML",
                       help="experiment file of TrainConfig fields (e.g. a run's config.yaml); flags given on the "
                            "command line override its values")
    train.add_argument("--seeds", default=None, type=_seed_list, metavar="S1,S2,...",
                       help="run these seeds one after another (overrides --seed), one folder per seed (<out>/seed<S> "
                            "with --out), then write aggregate.png/.csv/.json: mean and t-based 95%% CI over seeds")
    train.add_argument("--sweep", default=None, metavar="FIELD=V1,V2,...",
                       help="train once per value of any TrainConfig field (e.g. beta=0,0.25,0.5 or "
                            "graph=flat,tree:2; separate values with ';' when they hold commas: "
                            "'graph=tree:2;tree:2,2'), each over --seeds (default: --seed), in <out>/<FIELD><V>; "
                            "then write sweep.png (one 95%% band per value) and sweep.json")
    train.add_argument("--resume", default=None, metavar="RUN",
                       help="checkpoint file or run folder to continue from, in that folder, with the config it "
                            "recorded (only --frames may change; any other flag given must equal the recorded value)")
    train.add_argument("--force", action="store_true",
                       help="replace the run an existing --out folder holds, moving it aside into "
                            "replaced-<time>/ there (without it such a folder is refused)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _eval_and_show(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval", help="evaluate a trained run over N deterministic episodes", epilog=_EVAL_EPILOG,
        description="Evaluate a checkpoint: mean, std and 95% CI of the episode return over --episodes "
                    "deterministic episodes, optionally with a GIF of one rollout.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("checkpoint", metavar="RUN", help="a run folder (holding checkpoint.pt) or a checkpoint file")
    ev.add_argument("--episodes", type=int, default=32, metavar="N",
                    help="episodes to average, one per vectorised env, each max_steps long [default: 32]")
    ev.add_argument("--seed", type=int, default=12345, metavar="S",
                    help="seed of the evaluation envs (not the training seed) [default: 12345]")
    ev.add_argument("--video", action="store_true",
                    help="also render one more episode from the same seed (VMAS tasks) to a GIF")
    ev.add_argument("--out", default=None, metavar="PATH", help="where to write the GIF [default: <RUN>/eval.gif]")
    ev.add_argument("--device", default=None, help="torch device of the envs and policy [default: the run's own, or "
                                                   "the CPU where this machine lacks it]")

    show = sub.add_parser(
        "show", help="draw a trained network with what each vertex does",
        description="Draw the run's agent graph by level: vertices coloured by group and annotated with their "
                    "evaluation return, policy entropy and influence (mean |change| of their subordinates' action "
                    "means when their instruction is replaced by another sample).",
    )
    show.add_argument("run", metavar="RUN", help="a run folder (holding checkpoint.pt) or a checkpoint file")
    show.add_argument("--out", default=None, metavar="PNG",
                      help="where to write the picture [default: <RUN>/network.png]")
    show.add_argument("--episodes", type=int, default=8, metavar="N",
                      help="deterministic episodes the statistics are measured on [default: 8]")
    show.add_argument("--seed", type=int, default=12345, metavar="S", help="seed of those episodes [default: 12345]")
    show.add_argument("--device", default=None, help="torch device of the envs and policy [default: the run's own, or "
                                                     "the CPU where this machine lacks it]")


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct integers, got {text!r}")
    return seeds


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: the ``--config`` file (if any), overridden by the flags given on the command line."""
    from torchrl_rn.train.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in TrainConfig.flat_fields()}
    given = {k: v for k, v in given.items() if v is not None}
    if args.config:
        return TrainConfig.from_yaml(args.config, **given)
    return TrainConfig(**given)


def _train(args: argparse.Namespace, config: TrainConfig) -> None:
    """``--seeds`` / ``--sweep``: one run per seed (and value), then the aggregate pictures."""
    if args.resume or args.force:
        raise _BadInput("--seeds/--sweep start new runs in new folders: they take no --resume or --force.")
    if args.sweep:
        from torchrl_rn.train.multiseed import parse_sweep, run_sweep

        name, values = _bad_input(parse_sweep, args.sweep)
        for value in values:  # every value's config is refused now, not after the runs of the values before it
            _bad_input(lambda v: dataclasses.replace(config, **{name: v}), value)
        with _graph_errors_are_bad_input():
            folder = run_sweep(config, name, values, args.seeds or [config.seed], progress=not args.no_progress)
        print(f"done: {name} in {values}, comparison in {folder / 'sweep.png'}")
        return
    from torchrl_rn.train.multiseed import run_seeds

    with _graph_errors_are_bad_input():
        folder = run_seeds(config, args.seeds, progress=not args.no_progress)
    print(f"done: {len(args.seeds)} seeds, aggregate curve in {folder / 'aggregate.png'}")


@contextlib.contextmanager
def _graph_errors_are_bad_input() -> Iterator[None]:
    # a graph is built (and refused) when a run is set up, never during training: one line, not a traceback
    from torchrl_rn.graph import GraphError

    try:
        yield
    except GraphError as err:
        if os.environ.get("RN_TRACEBACK"):
            raise
        raise _BadInput(str(err).splitlines()[0]) from err


def _report(trainer: RNTrainer, history: list[dict[str, float]]) -> None:
    last = next((r["eval_return"] for r in reversed(history) if "eval_return" in r), float("nan"))
    print(f"done: {trainer.frames} frames, eval return (deterministic, {trainer.config.eval_envs} episodes) "
          f"{last:.3f}, results in {trainer.config.run_dir}")


def _eval(args: argparse.Namespace) -> None:
    from torchrl_rn.train.evaluate import evaluate_run

    report = evaluate_run(args.checkpoint, episodes=args.episodes, seed=args.seed, video=args.video,
                          video_path=args.out, device=args.device)
    print(report.summary())


def _show(args: argparse.Namespace) -> None:
    from torchrl_rn.train.show import show_run

    path = show_run(args.run, out=args.out, episodes=args.episodes, seed=args.seed, device=args.device)
    print(f"network drawn in {path}")


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """Silences TorchRL's INFO lines and known harmless warnings for the duration of one ``rn`` command, and sends
    the rest of its console log to stderr (stdout holds ``rn``'s results only).

    Scoped (restored on exit), so tests and library users still see everything.
    """
    torchrl_logger = logging.getLogger("torchrl")
    level = torchrl_logger.level
    torchrl_logger.setLevel(logging.WARNING)
    # TorchRL's console handler writes to the stdout it found when imported (TORCHRL_CONSOLE_STREAM aside)
    to_stdout = {h: h.stream for h in torchrl_logger.handlers
                 if type(h) is logging.StreamHandler and h.stream is not sys.stderr}
    for handler in to_stdout:
        handler.setStream(sys.stderr)
    torchrl_logger.addFilter(_known_harmless)
    try:
        with warnings.catch_warnings():
            # torchrl 0.14 deprecations inside its own collectors, not something a user of rn can act on
            warnings.filterwarnings("ignore", message=r".*WeightUpdaterBase is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*Nested TransformedEnvs", category=UserWarning)
            warnings.showwarning = _one_line_notes(warnings.showwarning)
            yield
    finally:
        torchrl_logger.setLevel(level)
        torchrl_logger.removeFilter(_known_harmless)
        for handler, stream in to_stdout.items():
            handler.setStream(stream)


def _known_harmless(record: logging.LogRecord) -> bool:
    """False for TorchRL log lines a user of ``rn`` cannot act on: MultiSyncCollector's ``use_buffer`` guess (it
    guesses right; printed once per run with ``--workers``)."""
    return not str(record.msg).startswith("use_buffer not specified")


def _one_line_notes(show: Callable) -> Callable:
    """``warnings.showwarning`` that prints :class:`DeviceFallbackWarning` as one ``rn: note: ...`` line."""
    def showwarning(message, category, *args, **kwargs):
        from torchrl_rn.train.run import DeviceFallbackWarning

        if issubclass(category, DeviceFallbackWarning):
            print(f"rn: note: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)
    return showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rn`` command.

    Bad input (settings, task, graph, output folder, checkpoint) is refused before any work starts, with one line
    ``rn: error: ...`` and exit code 2; set ``RN_TRACEBACK=1`` for the traceback. Errors during training are bugs and
    keep theirs. Ctrl-C keeps the last checkpoint, plots, prints the resume command and exits with 130.
    """
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser(next((a for a in given if not a.startswith("-")), ""))
        parser.argv = given
        args = parser.parse_args(given)
    except SystemExit as stop:  # --help (0), or a flag argparse refused, already printed in one line (2)
        return stop.code if isinstance(stop.code, int) else 2
    from torchrl_rn.train.trainer import NonFiniteError

    trainer = None
    with quiet_console():
        try:
            if args.command == "train" and (args.seeds or args.sweep):
                config = _bad_input(config_from_args, args)
                _train(args, config)
            elif args.command == "train":
                trainer = _bad_input(_build, args)
                _bad_input(trainer.claim)  # a folder another live run trains in: refused in one line
                _report(trainer, trainer.train())
            elif args.command == "eval":
                _bad_input(_eval, args)
            else:
                _bad_input(_show, args)
        except _BadInput as err:
            print(f"rn: error: {err}", file=sys.stderr)
            return 2
        except NonFiniteError as err:  # the data or the loss diverged: not bad input, but no traceback helps either
            print(f"rn: stopped: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if trainer is None:
                print("rn: interrupted", file=sys.stderr)
            elif not (trainer.config.run_dir / "checkpoint.pt").exists():  # its folder is free again: no run in it
                print("rn: interrupted before the first checkpoint; nothing to resume: run the same command again",
                      file=sys.stderr)
            else:
                print(f"rn: interrupted after iteration {trainer.iteration} ({trainer.frames} frames); resume with: "
                      f"rn train --resume {trainer.config.run_dir}", file=sys.stderr)
            return 130
    return 0


class _BadInput(Exception):
    """A bad setting, task, graph, folder or checkpoint, reported in one line."""


def _bad_input(fn, *args):
    """``fn(*args)``, with any error of configuration, graph, env or checkpoint loading turned into :class:`_BadInput`
    (one line). Call it only on work that reads input, never around training: a bug there keeps its traceback."""
    from torchrl_rn.graph import GraphError
    from torchrl_rn.train.checkpoint import CheckpointError

    try:
        return fn(*args)
    except (GraphError, CheckpointError, ValueError, ImportError) as err:
        if os.environ.get("RN_TRACEBACK"):
            raise
        raise _BadInput(str(err).splitlines()[0] if str(err) else type(err).__name__) from err


def _build(args: argparse.Namespace) -> RNTrainer:
    """The trainer ``rn train`` asks for (a new run, or ``--resume``)."""
    from torchrl_rn.train.config import TrainConfig
    from torchrl_rn.train.trainer import RNTrainer

    progress = not args.no_progress
    if args.resume:
        if args.force or args.config or args.seeds or args.sweep:
            raise ValueError("--resume continues one run as it was configured: it takes no --force, --config, "
                             "--seeds or --sweep.")
        given = {f.name: getattr(args, f.name) for f in TrainConfig.flat_fields()}
        return RNTrainer.resume(args.resume, settings={k: v for k, v in given.items() if v is not None},
                                progress=progress)
    return RNTrainer(config_from_args(args), progress=progress, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
