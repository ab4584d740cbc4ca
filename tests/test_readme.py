"""The README's Python examples run as written, and their losses are finite and reach the policy."""
from __future__ import annotations

import re
import warnings
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(BLOCKS[index], f"{README}:python block {index}", "exec"), namespace)  # noqa: S102 - ours
    # what a user running it would see: Python hides deprecation notices raised inside libraries (TorchRL's own)
    hidden = (DeprecationWarning, PendingDeprecationWarning)
    shown = [str(w.message) for w in caught if not issubclass(w.category, hidden)]
    assert not shown, f"the README's example warns: {shown}"
    loss_vals = namespace["loss_vals"]
    for term in ("loss_objective", "loss_critic", "loss_entropy"):
        assert torch.isfinite(loss_vals[term]), term
    if "optimizer" not in namespace:  # an example that stops after backward: the motors' policy has a gradient
        actor = namespace["composer"].actor("agents")
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


#: the README's table of packages: a row per module, the public names it gives in backticks
PACKAGE_ROWS = re.findall(r"^\| `(torchrl_rn(?:\.\w+)?)` \| (.*) \|$", README.read_text(), flags=re.MULTILINE)


def test_readme_names_import_from_the_packages_it_names():
    import importlib

    import torchrl_rn
    from torchrl_rn import envs, train

    public = {*torchrl_rn.__all__, *envs.__all__, *train.__all__}  # the library's names, not TorchRL's it mentions
    assert len(PACKAGE_ROWS) >= 6
    checked = 0
    for module, text in PACKAGE_ROWS:
        names = {n for n in re.findall(r"`(\w+)", text) if n in public}
        loaded = importlib.import_module(module)
        missing = sorted(n for n in names if not hasattr(loaded, n))
        assert not missing, f"the README says {module} gives {missing}"
        checked += len(names)
        for name in names & set(torchrl_rn.__all__):  # and the core names import from torchrl_rn itself too
            assert getattr(torchrl_rn, name) is getattr(loaded, name), name
    assert checked >= 15
