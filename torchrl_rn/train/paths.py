"""Paths a run is asked to write: refused in one short line when the file system cannot hold them.

Examples:
    >>> path_problem("results/run", "--out") is None
    True
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["path_problem"]


def path_problem(path: str | Path, flag: str) -> str | None:
    """Why ``path`` cannot name a file here (a part or the whole over the file system's length limits), as ``flag``'s
    one short error line, or ``None``.

    Examples:
        >>> path_problem("results/run", "--out") is None
        True
        >>> path_problem("results/" + "a" * 300, "--out")
        "--out 'results/aaaa...': a part of it is 300 bytes long, over this file system's limit of 255."
    """
    text = str(path)
    shown = text if len(text) <= 60 else text[:60] + "..."
    name_max, path_max = 255, 4096
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name_max = os.pathconf(next((str(p) for p in Path(text).absolute().parents if p.exists()), "/"), "PC_NAME_MAX")
    longest = max((len(os.fsencode(part)) for part in Path(text).parts), default=0)
    if longest > name_max:
        return f"{flag} {shown!r}: a part of it is {longest} bytes long, over this file system's limit of {name_max}."
    if len(os.fsencode(text)) >= path_max:
        return f"{flag} {shown!r} is {len(os.fsencode(text))} bytes long, over the limit of {path_max - 1}."
    return None
