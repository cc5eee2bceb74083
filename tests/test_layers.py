"""The import direction of DESIGN §1: app.py -> visual/ -> hsd/ (plain data); hsd/ knows nothing
of gradio or plotly; visual/ never touches torch or transformers.

One sanctioned exception: the benchmark command (hsd/bench.py) writes its Plotly figure through
``visual.bench`` with an import inside the function that writes the file, so ``import hsd`` (and
every engine path) never loads plotly or visual."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAZY_VISUAL_OK = {"hsd/bench.py"}


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree)
    if module_level_only:
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(top)]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_package_imports_neither_gradio_plotly_visual_nor_app():
    for path in (ROOT / "hsd").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        bad = _imports(path, module_level_only=True) & {"gradio", "plotly", "visual", "app", "spaces"}
        assert not bad, f"{rel} imports {bad} at module level"
        banned = {"gradio", "plotly", "app", "spaces"} | (set() if rel in LAZY_VISUAL_OK else {"visual"})
        bad = _imports(path) & banned
        assert not bad, f"{rel} imports {bad}"


def test_visual_package_reads_plain_data_only():
    for path in (ROOT / "visual").rglob("*.py"):
        bad = _imports(path) & {"torch", "transformers", "gradio", "app", "accelerate"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
