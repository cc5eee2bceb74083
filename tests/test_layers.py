"""The import direction of docs/design.md §1, read from the source (every import, lazy ones included):

    app.py -> ui/ -> visual/ -> hsd/ (plain data: trace, profile, plan)
              ui/ -> hsd/

- only ``ui/`` and ``app.py`` import gradio, gradio_client or spaces;
- ``visual/`` never touches torch, transformers or accelerate (plain data in, figures out);
- ``hsd/`` imports neither gradio, plotly nor ``ui``/``app``; its one sanctioned use of ``visual`` is
  the benchmark's HTML figure (``hsd/tools/bench/report.py``, inside the function that writes it);
- the engine core (``hsd/*.py`` but the ``__main__`` entry point, and ``hsd/levels/``) imports nothing from ``hsd.plan``,
  ``hsd.tools`` or ``hsd.family``; ``hsd.plan`` imports nothing from ``hsd.tools`` or ``hsd.family``;
- ``tools/`` (the load and fault tester) drives the app from outside: nothing in ``hsd/``,
  ``ui/``, ``visual/`` or ``app.py`` imports it, and it imports neither ``ui``, ``visual`` nor the app;
- there is no import cycle among the project's modules."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hsd", "visual", "ui", "tools", "tests", "scripts")
UI_ONLY = {"gradio", "gradio_client", "spaces"}
LAZY_VISUAL_OK = {"hsd/tools/bench/report.py"}
TOOLING = ("hsd.plan", "hsd.tools", "hsd.family")


def _files():
    yield ROOT / "app.py"
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(name: str) -> str:
    """``a.b.c`` -> the longest prefix that is a module of this project (or the name itself)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return ".".join(parts[:n])
    return name


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (``from a import b`` counts as ``a.b``
    when that is a module of this project)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {_resolve(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names.add(_resolve(f"{node.module}.{a.name}"))
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_only_the_ui_package_and_app_py_import_gradio_gradio_client_or_spaces():
    for path in _files():
        rel = _rel(path)
        if rel == "app.py" or rel.startswith(("ui/", "tests/", "scripts/")):
            continue
        if rel.startswith("tools/"):            # an HTTP client of the app: gradio_client only
            bad = _top(_imports(path)) & (UI_ONLY - {"gradio_client"})
            assert not bad, f"{rel} imports {bad}"
            continue
        bad = _top(_imports(path)) & UI_ONLY
        assert not bad, f"{rel} imports {bad}"


def test_engine_package_imports_neither_gradio_plotly_visual_nor_app():
    for path in (ROOT / "hsd").rglob("*.py"):
        rel = _rel(path)
        banned = {"gradio", "plotly", "app", "ui", "spaces"} | (set() if rel in LAZY_VISUAL_OK else {"visual"})
        bad = _top(_imports(path)) & banned
        assert not bad, f"{rel} imports {bad}"


def test_the_stress_tool_is_outside_the_product_and_drives_the_app_over_http_only():
    product = [ROOT / "app.py"] + [p for pkg in ("hsd", "ui", "visual") for p in (ROOT / pkg).rglob("*.py")]
    for path in product:
        assert "tools" not in _top(_imports(path)), f"{_rel(path)} imports the tools package"
    tool = sorted((ROOT / "tools").rglob("*.py"))
    assert {p.name for p in tool} >= {"server.py", "client.py", "cases.py", "checks.py", "report.py", "cli.py"}
    for path in tool:
        bad = _top(_imports(path)) & {"ui", "visual", "app", "gradio"}
        assert not bad, f"{_rel(path)} imports {bad}"
    assert not list((ROOT / "ui").glob("*stress*.py")), "the load tester left the ui package"


def test_visual_package_reads_plain_data_only():
    for path in (ROOT / "visual").rglob("*.py"):
        bad = _top(_imports(path)) & {"torch", "transformers", "gradio", "app", "ui", "accelerate"}
        assert not bad, f"{_rel(path)} imports {bad}"


def test_the_engine_core_imports_no_planning_tooling_or_family_code():
    core = [p for p in (ROOT / "hsd").glob("*.py") if p.name != "__main__.py"]   # __main__: the CLI entry
    core += list((ROOT / "hsd" / "levels").glob("*.py"))
    assert {p.name for p in core} >= {"engine.py", "verify.py", "trace.py", "errors.py", "models.py"}
    for path in core:
        bad = {n for n in _imports(path) if n.startswith(TOOLING)}
        assert not bad, f"{_rel(path)} imports {bad}"
    for path in (ROOT / "hsd" / "plan").glob("*.py"):
        bad = {n for n in _imports(path) if n.startswith(("hsd.tools", "hsd.family"))}
        assert not bad, f"{_rel(path)} imports {bad}"


def test_no_import_cycles_among_the_projects_modules():
    graph = {}
    for path in _files():
        name = _module_name(path)
        graph[name] = {n for n in _imports(path) if n.split(".")[0] in PACKAGES + ("app",) and n != name}
    state: dict[str, int] = {}                     # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]) \
                if nxt in stack else f"import cycle through {nxt}"
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert len(graph) > 40


def test_every_design_section_the_code_cites_exists_in_docs_design_md():
    import re

    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.M))
    cited = {}
    for path in [*ROOT.glob("hsd/**/*.py"), *ROOT.glob("ui/**/*.py"), *ROOT.glob("visual/*.py"), *ROOT.glob("tools/**/*.py")]:
        for n in re.findall(r"docs/design\.md §(\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(n, []).append(path.name)
    assert cited, "the code cites its design notes"
    missing = {n: files for n, files in cited.items() if n not in sections}
    assert not missing, f"cited sections missing from docs/design.md: {missing}"


def test_the_model_free_ngram_level_imports_and_decodes_rows_without_transformers():
    """The n-gram drafter needs torch only: importing it (through the ``hsd.levels`` seam) and
    building its level must not import transformers."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from hsd.levels.ngram import NGramDrafter\n"
             "from hsd.levels.sampling import SamplingSettings\n"
             "level = NGramDrafter(16).make_level(name='ngram', vocab_size=16, settings=SamplingSettings(0.0))\n"
             "rows = level.probs_after([1, 2, 3, 1, 2], 1)\n"
             "assert tuple(rows.shape) == (1, 16)\n"
             "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_no_function_is_over_sixty_lines_unless_its_steps_are_numbered():
    """A long function reads as its numbered steps (``# 1)``, ``# 2)`` … in the code); any other
    function of hsd/, ui/, visual/ or tools/ fits on a screen."""
    import re

    long = []
    for pkg in ("hsd", "ui", "visual", "tools"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        node.end_lineno - node.lineno + 1 > 60:
                    body = "\n".join(lines[node.lineno - 1:node.end_lineno])
                    if len(set(re.findall(r"#\s*\(?(\d)[.)]", body))) < 2:
                        long.append(f"{_rel(path)}:{node.lineno} {node.name}")
    assert not long, f"over 60 lines without numbered steps: {long}"
