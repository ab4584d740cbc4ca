"""Every ``Examples:`` block in the package runs and prints what it says."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import torchrl_rn

#: modules with no example of their own (their names are exported from, and exemplified in, other modules)
NO_EXAMPLES = {
    "torchrl_rn", "torchrl_rn.envs", "torchrl_rn.graph", "torchrl_rn.modules", "torchrl_rn.objectives",
    "torchrl_rn.rewards", "torchrl_rn.train", "torchrl_rn.train.checkpoint",
    "torchrl_rn.train.cli", "torchrl_rn.train.plots",
}
MODULES = sorted(m.name for m in pkgutil.walk_packages(torchrl_rn.__path__, "torchrl_rn."))


def test_the_list_of_modules_without_examples_is_current():
    assert NO_EXAMPLES - {"torchrl_rn", *MODULES} == set()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    if name in NO_EXAMPLES:
        assert result.attempted == 0, f"{name} has examples now: take it off NO_EXAMPLES"
        return
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
