"""``docs/results.md``, ``docs/performance.md`` and the README's summary are what ``benchmarks/report.py`` makes of
the committed results (so they cannot drift from the JSON), and no markdown table is wider than 10 columns."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: its sibling modules import
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "report", module)
    spec.loader.exec_module(module)
    return module


def test_committed_reports_are_what_the_results_give(report, monkeypatch):
    monkeypatch.chdir(ROOT)  # the reports name the result files relative to the checkout, as report.py runs
    outputs = report.outputs(Path("benchmarks/results"), Path("README.md"), Path("docs"))
    for path, text in outputs.items():
        assert path.read_text() == text, f"{path} is out of date: run python benchmarks/report.py"


def table_widths(path: Path) -> list[tuple[int, int]]:
    """``(line number, columns)`` of every markdown table row of ``path`` outside code blocks."""
    widths, code = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            code = not code
        elif not code and line.startswith("|"):
            widths.append((number, len(re.split(r"(?<!\\)\|", line.strip())) - 2))
    return widths


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_no_table_is_wider_than_10_columns(path):
    assert path.exists()
    wide = [(n, w) for n, w in table_widths(path) if w > 10]
    assert not wide, f"{path.name}: rows wider than 10 columns (line, columns): {wide}"


def test_every_doc_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, doc.name


def test_summary_counts_no_provisional_verdict(report, tmp_path):
    """A win on fewer than 5 seeds is provisional in docs/results.md and no win in the README's summary."""
    def runs(values):
        return {"seeds": {str(i): {"eval_return": [v]} for i, v in enumerate(values)}}

    def result(rn_values):
        return {"task": "vmas/x", "preset": "p", "seeds": [0, 1, 2, 3, 4],
                "hyperparameters": {"frames": 100, "time_limit": "truncation"},
                "methods": {"mappo": runs([0.0, 0.1, -0.1, 0.05, -0.05]), "rn-x": runs(rn_values)}}

    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / "vmas-x.json"
    path.write_text(json.dumps(result([5.0, 5.1])))  # two seeds, far above MAPPO
    assert "| 0 wins / 0 ties / 0 loses |" not in report.summary_markdown(tmp_path)  # nothing counted
    assert "`rn-x`" not in report.summary_markdown(tmp_path)
    assert "wins (provisional" in report.results_markdown(tmp_path)
    path.write_text(json.dumps(result([5.0, 5.1, 4.9, 5.05, 4.95])))  # five seeds: a win
    assert "| 1 wins / 0 ties / 0 loses |" in report.summary_markdown(tmp_path)
    assert "`rn-x`" in report.summary_markdown(tmp_path)
