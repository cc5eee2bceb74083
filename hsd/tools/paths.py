"""Where the commands find the project's assets (profiles, prompts), and the one parser of the
prompts files."""
from __future__ import annotations

import re
from pathlib import Path

from hsd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
ASSETS = ROOT / "assets"
PROMPT_FILES = {"code": ASSETS / "prompts" / "code.txt", "natural": ASSETS / "prompts" / "natural.txt",
                # the latency model's: held-out stdlib code, disjoint files (scripts/make_prompt_sets.py)
                "profile": ASSETS / "prompts" / "profile.txt", "validate": ASSETS / "prompts" / "validate.txt"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def profile_path(family: str, given: str | None, command: str) -> Path:
    """``given``, or ``assets/profile-<family>.json`` for a named family; it must exist."""
    if given:
        path = Path(given)
    elif family.isidentifier():
        path = ASSETS / f"profile-{family}.json"
    else:
        raise ConfigError(f"{command} needs --profile PATH for a family given as folders or hub ids")
    if not path.exists():
        raise ConfigError(f"no profile at {path}: measure one with "
                          f"`hsd profile --family {family} --out {path}`")
    return path


def parse_prompts(text: str) -> list[str]:
    """One prompt per line; ``\\n``, ``\\t`` and ``\\\\`` are unescaped (nothing else, so any
    other backslash stays as written); blank lines and lines starting with ``#`` are skipped."""
    prompts = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompts.append(re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], line))
    return prompts


def load_prompts(path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the prompts file {path} ({e.strerror})") from None
    prompts = parse_prompts(text)
    if not prompts:
        raise ConfigError(f"the prompts file {path} holds no prompts (one per line, '#' for comments)")
    return prompts


def default_prompts_path(family_spec: str) -> Path:
    """Python-code prompts for the bundled family, natural-language prompts for any other."""
    return PROMPT_FILES["code" if family_spec.strip().lower() == "bundled" else "natural"]


def save_or_rescue(path, write, what: str) -> bool:
    """``write(path)``; if that fails (the folder went away, the disk filled, a permission
    changed since the command checked it), ``write`` again into a fresh file in the system's
    temporary folder and say where, in one ``error:`` line: a long measurement is never lost to a
    bad path.  True when ``path`` was written."""
    import sys
    import tempfile

    try:
        write(path)
        return True
    except OSError as e:
        suffix = Path(str(path)).suffix or ".out"
        fd, rescue = tempfile.mkstemp(prefix="hsd-rescued-", suffix=suffix)
        import os

        os.close(fd)
        write(rescue)
        print(f"error: could not write the {what} to {path} ({e.strerror or e}); it is saved in {rescue}",
              file=sys.stderr)
        return False


def write_json(data, path) -> None:
    """``data`` as indented JSON, one newline at the end."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
