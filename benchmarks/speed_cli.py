"""The command line the speed benchmarks share (``throughput.py``, ``scaling.py``, ``tutorial_pipeline.py``)."""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from torchrl_rn.train.config import device_problem


def parse(doc: str, presets: dict[str, Any], default: str, scratch: str,
          argv: list[str] | None = None, *, device: bool = False,
          flags: dict[str, str] | None = None) -> tuple[argparse.Namespace, Any, Path]:
    """``--preset``, ``--out`` (a scratch folder unless given: ``benchmarks/results`` holds the committed figures),
    ``--threads``, ``--reps`` (where every preset has ``reps``: the preset's, replaced), with ``device=True`` ``--device``, and a boolean option per ``flags`` entry (name: help): returns
    the arguments, the chosen preset and the (created) output folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(presets), default=default)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / scratch),
                        help="output folder (default: a scratch folder; benchmarks/results holds the committed figures)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    if all(hasattr(p, "reps") for p in presets.values()):
        parser.add_argument("--reps", type=int, default=None,
                            help="measured repetitions, overriding the preset's (more give steadier medians)")
    for flag, text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    if device:
        parser.add_argument("--device", default="cpu", help="torch device of the envs and modules (cpu, cuda, ...)")
    args = parser.parse_args(argv)
    if device and (problem := device_problem(args.device)) is not None:
        parser.error(problem)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = presets[args.preset]
    if getattr(args, "reps", None) is not None:
        if args.reps < 1:
            parser.error(f"--reps must be at least 1, got {args.reps}")
        preset = dataclasses.replace(preset, reps=args.reps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, preset, out
