"""The old name of ``report.py``, kept so that older notes' commands still work: writes the README summary,
``docs/results.md`` and ``docs/performance.md`` from the benchmark JSON files.

    python benchmarks/make_table.py [--results benchmarks/results] [--readme README.md]   # == report.py
"""
from __future__ import annotations

from report import main  # this script runs from benchmarks/

if __name__ == "__main__":
    main()
