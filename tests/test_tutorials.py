"""Every tutorial runs top to bottom with its quick budget and writes its figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "01_first_reinforcement_network.py": ["01_curve.png", "01_graph.png"],
    "02_levelenv_in_your_torchrl_code.py": ["02_curves.png"],
    "03_dags_and_credit_assignment.py": ["03_beta_sweep.png", "03_beta_sweep.json"],
    "04_experiments.py": ["04_seeds.png", "04_seeds.json", "04_diagnostics.png", "04_network.png"],
    "05_periods_and_goals.py": ["05_goals.png", "05_goals.json"],
    "06_managers_worth_following.py": ["06_following.png", "06_following.json"],
}


@pytest.mark.slow  # a subprocess per tutorial
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs(name, tmp_path):
    # PYTHONPATH: the tutorial imports this checkout's torchrl_rn, not whichever one the venv has installed (ahead of
    # any PYTHONPATH already set, which may hold the packages themselves)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "RN_TUTORIAL_QUICK": "1", "RN_TUTORIAL_OUT": str(tmp_path), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, str(ROOT / "tutorials" / name)], env=env, cwd=ROOT, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for output in EXPECTED[name]:
        path = tmp_path / output
        assert path.stat().st_size > 0, output
        if output.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert json.loads(path.read_text())["curves"]


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in (ROOT / "tutorials").glob("[0-9]*.py")) == sorted(EXPECTED)
