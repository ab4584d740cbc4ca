"""Whether two folders of runs (``benchmarks/fixed_seed_runs.sh``'s) hold the same metrics, timings aside.

    python benchmarks/compare_runs.py BEFORE AFTER

For every ``<run>/metrics.csv`` in BEFORE, the same run in AFTER must have the same rows, column for column, leaving
out wall-clock columns and the managers' ``<group>/influence`` (a measurement added later, taken without touching
training). Prints ``same`` or the first difference per run; exits 1 if any run differs.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


def _kept(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if not k.endswith(("seconds", "influence"))}


def main(before: Path, after: Path) -> int:
    differ = 0
    for path in sorted(before.glob("*/metrics.csv")):
        with open(path) as a, open(after / path.parent.name / "metrics.csv") as b:
            rows_a, rows_b = [_kept(r) for r in csv.DictReader(a)], [_kept(r) for r in csv.DictReader(b)]
        first = next(({k: (x.get(k), y.get(k)) for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
                      for x, y in zip(rows_a, rows_b) if x != y), None)
        same = len(rows_a) == len(rows_b) and first is None
        differ += not same
        print(path.parent.name, f"same ({len(rows_a)} rows)" if same else f"DIFFERENT: {first or 'row count'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
