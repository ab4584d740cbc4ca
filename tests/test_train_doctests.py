"""The ``Examples:`` blocks of the trainer modules that ``tests/test_docs.py`` does not list (yet): they run and print
what they say. (Drop a module from here once ``test_docs.py`` discovers it.)"""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["train.algorithms", "train.algorithms.base", "train.algorithms.rn", "train.algorithms.ppo_baselines",
           "train.run", "train.episodes", "train.settings"]


@pytest.mark.parametrize("name", MODULES)
def test_trainer_module_examples(name):
    module = importlib.import_module(f"torchrl_rn.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"torchrl_rn.{name} has no runnable example"
    assert result.failed == 0
