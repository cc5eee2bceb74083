"""The import direction of DESIGN §1: app.py -> visual/ -> hsd/ (plain data); hsd/ knows nothing
of gradio or plotly; visual/ never touches torch or transformers."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_package_imports_neither_gradio_plotly_visual_nor_app():
    for path in (ROOT / "hsd").rglob("*.py"):
        bad = _imports(path) & {"gradio", "plotly", "visual", "app", "spaces"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_visual_package_reads_plain_data_only():
    for path in (ROOT / "visual").rglob("*.py"):
        bad = _imports(path) & {"torch", "transformers", "gradio", "app", "accelerate"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
