"""The repository explains itself truly: every path the README and the docs name exists, every
command the README shows is one the code accepts (the subcommand and each of its options), the
Makefile has the README's two targets, the README stays short, and every test that
docs/design.md cites exists."""
from __future__ import annotations

import argparse
import glob
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))}
TOP = ("app.py", "ui/", "hsd/", "visual/", "tools/", "assets/", "docs/", "scripts/", "tests/", ".ci/")


def _expand(pattern: str) -> list[str]:
    """Brace alternatives (``a-{b,c}.json``) expanded, as a shell would."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [x for alt in m.group(1).split(",") for x in _expand(pattern[:m.start()] + alt + pattern[m.end():])]


def _exists(path: str) -> bool:
    return all(glob.glob(str(ROOT / p)) for p in _expand(path.rstrip("/")))


EXTENSIONS = r"(txt|toml|md|ini|sh|py|json|png|svg|css|html|gguf|\*|\}|/)"


def _named_paths(text: str, bare: bool) -> set[str]:
    """Paths of this repository written in backticks or as markdown links: ``dir/...`` under a
    top-level folder (a test id's ``::name`` cut off), and with ``bare`` also lone file names
    (``requirements.txt``).  Module attributes (``tests/stats.exact_law``) are not paths."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s#]+)\)", text):
        token = token.split("::")[0].rstrip(".,:;")
        if "://" in token or "..." in token or "…" in token:
            continue
        if token.startswith(TOP) and (token.endswith("/") or re.search(rf"\.{EXTENSIONS}$", token)
                                      or token in TOP):
            found.add(token)
        elif bare and re.fullmatch(r"[\w-]+(\.[\w-]+)*\.(txt|toml|md|ini|sh|py|json|png|svg)", token):
            found.add(token)
    return found


def test_the_readme_is_short_enough_to_read_in_ten_minutes():
    assert len(README.splitlines()) <= 250


@pytest.mark.parametrize("name", ["README.md"] + [f"docs/{n}" for n in DOCS])
def test_every_path_a_document_names_exists(name):
    text = README if name == "README.md" else DOCS[name.split("/")[1]]
    base = ROOT if name == "README.md" else ROOT / "docs"
    missing = []
    for path in sorted(_named_paths(text, bare=name == "README.md")):
        relative_to_doc = name != "README.md" and not path.startswith(TOP) and (base / path).exists()
        if not relative_to_doc and not _exists(path):
            missing.append(path)
    assert not missing, f"{name} names paths that do not exist: {missing}"


def _readme_commands() -> list[list[str]]:
    """Every ``hsd ...`` line of the README's code blocks, as argv (comments and [options] cut)."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", README, flags=re.M | re.S):
        for line in block.splitlines():
            line = re.sub(r"#.*", "", line)
            line = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(" | ")[0], line).strip()
            if line.startswith("hsd "):
                out.append(shlex.split(line)[1:])
    return out


def test_every_hsd_command_the_readme_shows_parses_with_its_options():
    from hsd.tools.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = _readme_commands()
    assert {c[0] for c in commands} >= {"generate", "profile", "optimize", "validate", "bench", "shapes",
                                        "export-gguf", "stress"}
    for argv in commands:
        assert argv[0] in sub.choices, f"hsd {argv[0]} is not a command"
        if argv[0] == "stress":
            from tools.stress.cli import build_parser as stress_parser

            options = {o for a in stress_parser()._actions for o in a.option_strings}
        else:
            options = {o for a in sub.choices[argv[0]]._actions for o in a.option_strings}
        unknown = [a.split("=")[0] for a in argv[1:] if a.startswith("--") and a.split("=")[0] not in options]
        assert not unknown, f"hsd {' '.join(argv)}: unknown options {unknown}"


def test_the_readmes_make_targets_and_modules_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in re.findall(r"^make (\w+)", README, flags=re.M) + ["run", "test"]:
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    test_line = next(line for line in README.splitlines() if line.startswith("make test"))
    assert "make test" in "\n".join(ci) and test_line in ci, f"CI must run the README's {test_line!r}"
    for module in re.findall(r"python -m ([\w.]+)", README):
        path = ROOT.joinpath(*module.split("."))
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), f"python -m {module}"


def test_every_test_the_design_notes_cite_exists():
    """``tests/test_x.py::name`` and the ``…name`` that follow it (the same file) all exist, in
    every document (design.md cites dozens)."""
    counts = {}
    for doc, text in DOCS.items():
        cited = []
        current = None
        for m in re.finditer(r"`(?:tests/(test_\w+\.py)::|…)(\w+)`", text):
            current = m.group(1) or current
            cited.append((current, m.group(2)))
        counts[doc] = len(cited)
        for file, name in cited:
            source = (ROOT / "tests" / file).read_text(encoding="utf-8")
            assert re.search(rf"def \w*{re.escape(name)}\w*\(", source), f"docs/{doc} cites tests/{file}::{name}"
    assert counts["design.md"] > 30 and counts["architecture.md"] >= 2


def test_the_space_installs_the_cpu_build_of_the_torch_the_requirements_pin():
    pinned = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements.txt").read_text(), flags=re.M).group(1)
    pre = (ROOT / "pre-requirements.txt").read_text()
    assert f"torch=={pinned}+cpu" in pre and "download.pytorch.org/whl/cpu" in pre


def test_every_file_and_folder_in_the_readmes_layout_exists():
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.M | re.S)
    block = next(b for lang, b in blocks if b.startswith("app.py"))
    parent, checked = "", []
    for line in block.splitlines():
        if not line.strip() or line.startswith(" " * 4):        # a description's continuation
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r"\s{2,}", line.strip())[0]
        for name in (n.strip() for n in names.split(",")):
            path = name if indent == 0 else parent + name
            assert (ROOT / path).exists(), f"the README's layout names {path}, which does not exist"
            checked.append(path)
        if indent == 0:
            parent = names if names.endswith("/") else ""
    assert len(checked) > 25
    for folder in ("ui", "hsd", "hsd/levels", "hsd/plan", "tools/stress"):
        assert any(c.rstrip("/") == folder or c.startswith(folder + "/") for c in checked), folder


def test_the_readmes_python_example_runs_on_the_bundled_family(capsys):
    block = next(b for lang, b in re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.M | re.S) if lang == "python")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.text and len(result.token_ids) == 64 and namespace["s"].tokens_per_target_call > 1
    assert capsys.readouterr().out.startswith(result.text)
