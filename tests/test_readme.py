"""The README's Python examples run as written, and their losses are finite and reach the policy."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"{README}:python block {index}", "exec"), namespace)  # noqa: S102 - the README is ours
    loss_vals = namespace["loss_vals"]
    for term in ("loss_objective", "loss_critic", "loss_entropy"):
        assert torch.isfinite(loss_vals[term]), term
    if "optimizer" not in namespace:  # an example that stops after backward: the motors' policy has a gradient
        actor = namespace["composer"].actor("agents")
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
