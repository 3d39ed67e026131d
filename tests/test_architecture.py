"""The library's shape: no import cycles, and no module imports from a layer below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slicemri_lite"

# ARCHITECTURE.md's layers, top (imported by everything) to bottom (imports the rest).
LAYERS = [
    {"validation", "atomic", "env", "geometry", "distributed"},
    {
        "cohort",
        "splits",
        "intensity",
        "anatomy",
        "ageing",
        "render",
        "synthetic",
        "nifti",
        "oasis",
        "data",
        "streaming",
    },
    {"metrics", "baselines"},
    {"encoders", "paper_checkpoint", "models", "saving", "slice_chunks"},
    {"features"},
    {"recipes", "train", "profiles"},
    {"runs", "experiments", "compare", "positions"},
    {"viz", "bench", "cachedir", "interpret", "saliency_scores"},
]


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    raise AssertionError(f"slicemri_lite/{module}.py is in no layer: add it to ARCHITECTURE.md")


def imports() -> dict[str, set[str]]:
    """Every module's imports of sibling modules, lazy (in-function) ones included.

    TYPE_CHECKING imports and a module ``__getattr__`` that re-exports a higher module's
    names for the public contract (``models.save_model``) are not dependencies.
    """
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    found = {}
    for name in modules:
        deps = set()
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slicemri_lite"):
                parts = node.module.split(".")
                deps |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        found[name] = deps & modules - {name}
    return found


def test_every_module_has_a_layer_and_imports_only_upwards():
    graph = imports()
    for module, deps in graph.items():
        for dep in deps:
            assert layer_of(dep) <= layer_of(module), f"{module} imports {dep} from below it"


def test_there_are_no_import_cycles():
    graph = imports()

    def visit(node, path):
        for dep in graph[node]:
            assert dep not in path, "import cycle: " + " -> ".join([*path, dep])
            visit(dep, [*path, dep])

    for module in graph:
        visit(module, [module])
