"""The benchmark's presets and methods as data (``benchmarks/presets/*.yaml``, ``benchmarks/methods.yaml``) give
exactly the values the code gave before, and every committed result is a run of its preset."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: written once from the old ``benchmarks/learning.py`` (its ``dataclasses.asdict(PRESETS[name])``, ``Preset()``,
#: ``LEGACY``, ``METHODS`` and ``TASK_KNOWLEDGE``) before its presets moved to YAML
BEFORE = json.loads((ROOT / "tests" / "data" / "benchmark_presets_before.json").read_text())
RESULTS = ROOT / "benchmarks" / "results"
#: methods of committed results that no preset runs any more (each file keeps its own definition)
RETIRED = {"rn-tree2-p5-adv-unitspread"}
TASK_FILES = sorted(p for p in RESULTS.glob("*/*.json") if not p.name.endswith(".reeval.json")
                    and p.parent.name != "threads1")


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the scripts run: their sibling modules import
    spec = importlib.util.spec_from_file_location("harness", ROOT / "benchmarks" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "harness", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: what a preset may gain after its move to YAML without touching its runs: methods and seeds to run (new
#: declarations) and seed groups; every training hyperparameter stays as it was
DECLARED = ("tasks", "methods", "seeds", "seed_groups")


def _training(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in DECLARED}


def test_yaml_presets_give_the_hyperparameters_of_before(harness):
    assert set(harness.PRESETS) >= set(BEFORE["presets"])
    for name, before in BEFORE["presets"].items():
        now = json.loads(json.dumps(dataclasses.asdict(harness.PRESETS[name])))
        assert _training(now) == _training(before), name
        for field in DECLARED:  # declarations only grow: nothing declared before is dropped
            assert set(map(str, before[field])) <= set(map(str, now[field])), (name, field)
    assert json.loads(json.dumps(dataclasses.asdict(harness.Preset()))) == BEFORE["defaults"]
    assert harness.LEGACY == BEFORE["legacy"]


def test_yaml_methods_give_the_definitions_of_before(harness):
    assert list(harness.METHODS)[:len(BEFORE["methods"])] == list(BEFORE["methods"])  # new methods come after
    assert {m: harness.METHODS[m] for m in BEFORE["methods"]} == BEFORE["methods"]
    assert set(BEFORE["task_knowledge"]) <= set(harness.TASK_KNOWLEDGE)


def test_every_method_says_what_it_is_and_carries_its_labels(harness):
    for name, info in harness.METHOD_INFO.items():
        definition = harness.METHODS[name]
        assert info["label"] and info["description"], name
        assert info["task_knowledge"] == harness.uses_task_knowledge(definition), name
        # a manager that reads its subordinates' observations when acting: every RN whose graph is not flat, and
        # CPPO's centralised actor (each agent acts on every agent's observation)
        communicates = (definition["algo"] == "rn" and definition["graph"] != "flat") or definition["algo"] == "cppo"
        assert info["communicates_at_execution"] == communicates == harness.communicates_at_execution(definition), name
    every = {m for p in harness.PRESETS.values() for m in p.methods}
    assert every <= set(harness.METHODS)


def test_every_preset_has_its_notes_and_every_field_is_checked(harness, tmp_path):
    for name, info in harness.PRESET_INFO.items():
        assert info["summary"], name
    (tmp_path / "bad.yaml").write_text("frames: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown preset fields \['learning_rate'\]"):
        harness.load_presets(tmp_path)
    (tmp_path / "bad.yaml").write_text("lr: 1e-3\n")  # YAML 1.1 reads this as a string
    with pytest.raises(ValueError, match=r"bad.yaml: lr: '1e-3' is not a float"):
        harness.load_presets(tmp_path)
    (tmp_path / "bad.yaml").write_text("base: nowhere\n")
    with pytest.raises(ValueError, match=r"bad.yaml: base 'nowhere' is not another preset"):
        harness.load_presets(tmp_path)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_result_is_a_run_of_its_preset(harness, path):
    # a rerun of the preset keeps these runs (and resumes the unfinished ones) only if this holds
    result = json.loads(path.read_text())
    preset = harness.PRESETS[result["preset"]]
    if "time_limit" not in result["hyperparameters"]:
        # written before Preset.time_limit, with VMAS's horizon as a termination (LEGACY): a rerun starts afresh
        preset = dataclasses.replace(preset, time_limit=harness.LEGACY["time_limit"])
        legacy = harness.load_result(path.with_name("none.json"), result["task"], preset, result["preset"])
        legacy["hyperparameters"].pop("time_limit")
        assert harness._same_training(result, legacy)
    else:
        fresh = harness.load_result(path.with_name("none.json"), result["task"], preset, result["preset"])
        assert harness._same_training(result, fresh)
        assert result["seeds"] == list(preset.seeds)
    for method, entry in result["methods"].items():
        if method not in RETIRED:
            assert entry["definition"] == harness.definition(method), method
