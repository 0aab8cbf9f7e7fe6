"""The house's import rules, checked by reading every module's imports (function-level ones included):

    nas (engine)  <-  search_spaces  <-  trainers  <-  nas composition layer (cli, cli_wiring, export, api)

The engine knows nothing of CNNs or training: no torch, no search_spaces, no trainers. search_spaces never
reaches up into trainers, and neither package imports the composition layer.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# nas modules where the engine meets the CNN packages
COMPOSITION = {"cli", "cli_wiring", "export", "export_source", "api", "api_data", "api_study"}
TORCH = {"torch", "torchvision", "timm", "fvcore", "onnx", "onnxruntime"}
COMPOSITION_MODULES = {f"nas.{m}" for m in COMPOSITION}


def imports_of(source: str) -> set[str]:
    """Every module name imported anywhere in `source` (absolute imports; relative ones are package-local)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def _forbidden(path: Path, roots: set[str], exact: set[str] = frozenset()) -> set[str]:
    names = imports_of(path.read_text())
    return (_roots(names) & roots) | (names & exact)


@pytest.mark.parametrize("path", [p for p in modules("nas") if p.stem not in COMPOSITION], ids=lambda p: p.stem)
def test_engine_modules_import_no_torch_and_no_cnn_package(path):
    bad = _forbidden(path, TORCH | {"search_spaces", "trainers"}, COMPOSITION_MODULES)
    assert not bad, f"nas/{path.name} is engine code but imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("search_spaces"), ids=lambda p: p.stem)
def test_search_spaces_never_reach_up(path):
    bad = _forbidden(path, {"trainers"}, COMPOSITION_MODULES)
    assert not bad, f"search_spaces/{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("trainers"), ids=lambda p: p.stem)
def test_trainers_do_not_import_the_composition_layer(path):
    bad = _forbidden(path, set(), COMPOSITION_MODULES)
    assert not bad, f"trainers/{path.name} imports {sorted(bad)}"


def test_the_scanner_sees_imports_inside_functions():
    src = "import os\ndef f():\n    from search_spaces.builder import build_model\n    import torch.nn as nn\n"
    assert {"os", "search_spaces.builder", "search_spaces.builder.build_model", "torch.nn"} <= imports_of(src)
    assert _roots(imports_of(src)) & {"torch", "search_spaces"} == {"torch", "search_spaces"}
