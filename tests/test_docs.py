"""Every ``Examples:`` block in the package runs and prints what it says."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["value_norm", "rewards", "graph", "vertex", "composer", "level_env", "advantage", "loss", "train.config", "train.trainer", "envs",
           "train.diagnostics", "train.stats", "train.evaluate", "train.multiseed",
           "train.show"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"torchrl_rn.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"torchrl_rn.{name} has no runnable example"
    assert result.failed == 0
