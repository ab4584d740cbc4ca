"""The package's import map, read from the source (no import executed): no circles, no upward imports, no
library module importing the trainer, no module over 400 lines; and ``import torchrl_rn`` loads no trainer."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2] / "torchrl_rn"

#: the layers, lowest first: a module may import its own layer's modules and lower layers' only
LAYERS = [{"keys", "value_norm", "periods"}, {"rewards"}, {"graph"}, {"modules"}, {"envs"}, {"objectives"}, {"train"}]
#: modules allowed over the size limit (none: keep it so)
OVERSIZE: set[str] = set()
MAX_LINES = 400


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """The torchrl_rn modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "torchrl_rn")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torchrl_rn":
            for alias in node.names:  # ``from package import submodule`` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = nx.DiGraph((name, imported) for name, path in MODULES.items() for imported in _imports(path))


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's facade, torchrl_rn/__init__.py, exports every layer
    return next(i for i, layer in enumerate(LAYERS) if parts[1] in layer)


def test_every_module_has_a_layer():
    assert all(_layer(m) is not None for m in MODULES if m != "torchrl_rn")


def test_no_import_circles():
    assert list(nx.simple_cycles(GRAPH)) == []


def test_no_module_imports_a_higher_layer():
    upward = [(a, b) for a, b in GRAPH.edges
              if _layer(a) is not None and (_layer(b) is None or _layer(b) > _layer(a))]
    assert upward == []


def test_no_library_module_imports_the_trainer():
    assert [(a, b) for a, b in GRAPH.edges if not a.startswith("torchrl_rn.train") and
            b.startswith("torchrl_rn.train")] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES or module in OVERSIZE, f"{module} has {lines} lines (limit {MAX_LINES})"


def test_import_torchrl_rn_loads_no_trainer():
    code = ("import sys, torchrl_rn; assert 'torchrl_rn.train' not in sys.modules, 'trainer loaded'; "
            "from torchrl_rn import RNTrainer, TrainConfig; assert 'torchrl_rn.train' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


def test_import_torchrl_rn_installs_no_module_hook():
    code = ("import torch.nn.modules.module as m; before = len(m._global_module_registration_hooks); "
            "import torchrl_rn; assert len(m._global_module_registration_hooks) == before")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
