"""Statistics of the benchmark reports, shared by ``harness.py`` and ``report.py``.

They are the package's own (``torchrl_rn/train/stats.py``, also used by ``rn train --seeds``), loaded from its file
so that the table script does not import torch and starts in a blink.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "torchrl_rn_stats", Path(__file__).resolve().parents[1] / "torchrl_rn" / "train" / "stats.py")
_stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_stats)
mean_ci95 = _stats.mean_ci95
_t975 = _stats._t975
