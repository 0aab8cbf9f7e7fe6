"""The engine / application boundary: only the composition layer of nas imports torch or the CNN packages."""
import ast
from pathlib import Path

NAS = Path(__file__).resolve().parents[2] / "nas"
COMPOSITION = {"cli.py", "cli_wiring.py", "api.py", "export.py"}
APP = ("torch", "torchvision", "timm", "fvcore", "search_spaces", "trainers")


def _imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_engine_modules_import_no_torch_and_no_cnn_package():
    engine = [p for p in sorted(NAS.glob("*.py")) if p.name not in COMPOSITION]
    assert any(p.name == "user_fn.py" for p in engine) and any(p.name == "study.py" for p in engine)
    bad = {p.name: sorted(_imports(p) & set(APP)) for p in engine if _imports(p) & set(APP)}
    assert not bad, bad


def test_the_composition_layer_imports_the_application_only_lazily():
    """nas.api at module level: engine imports only, so objective= searches never load torch."""
    tree = ast.parse((NAS / "api.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not top & set(APP), top
