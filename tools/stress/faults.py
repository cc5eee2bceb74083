"""``hsd stress --faults``: faults on the machine's side, each injected while ANOTHER user decodes.

Every case is judged on three things: the answer to the faulty request (one sentence for a
person, or a complete result where the fault costs only a side file), the bystander (a normal
``/generate`` started just before the fault must finish with exactly the tokens the same request
gives alone), and the server (it still answers, and a well-formed request after the case works).

The cases:
1. a model folder whose ``model.safetensors`` is random bytes (a corrupt download);
2. the same file cut to half its length (an interrupted copy);
3. a model folder with its ``tokenizer.json`` missing;
4. profile uploads that are empty, 50 MB of JSON-looking junk, and bytes that are not UTF-8;
5. the download folder made unwritable (a FILE where the app's ``hsd-explorer`` folder goes, in
   the launched app's TMPDIR): the decode still returns its text, only the download is missing;
6. a client that disconnects mid-stream;
7. eight what-if edits at once, each answered exactly as the same edit sent alone;
8. decodes cancelled while their panels are being drawn (closed at different moments).

Cases 1-3 and 5 need files on this machine and a family of local folders, so they run only when
this command launched the app (``family`` given); with ``--url`` they are reported as not run.
Requests go through the plain REST API (uploads through ``gradio_client``); nothing here imports
the app.
"""
from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

from tools.stress import fuzz, soak
from tools.stress.cases import NORMAL_PROMPTS, family_folders
from tools.stress.checks import one_sentence
from tools.stress.client import Outcome, call, make_client, rest_call, token_list
from tools.stress.report import classify_log
from tools.stress.server import answers, check_loopback

BYSTANDER_TOKENS = 40


def _generate_body(params, prompt: str, tokens: int, seed: int, family: str | None = None) -> dict:
    """/generate's body; with ``family``, that family's target alone."""
    family_values = {} if family is None else {"family": family, "models": []}
    return fuzz.request_body(params["/generate"], prompt=prompt, max_new_tokens=tokens, seed=seed, **family_values)


class Bystander:
    """A normal decode in a thread, and what the same request gives alone (run first)."""

    def __init__(self, url: str, params, seed: int):
        self.url, self.body = url, _generate_body(params, NORMAL_PROMPTS[seed % 4], BYSTANDER_TOKENS, seed)
        alone = rest_call(url, raw_body=fuzz._encode(self.body), timeout_s=300)
        self.alone = token_list(alone.final) if alone.kind == "ok" else None
        self.outcome: Outcome | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.outcome = rest_call(self.url, raw_body=fuzz._encode(self.body), timeout_s=300)

    def start(self) -> "Bystander":
        self.thread.start()
        time.sleep(0.3)                     # it is decoding when the fault comes
        return self

    def verdict(self) -> tuple[bool, str]:
        self.thread.join(300)
        out = self.outcome
        if out is None or out.kind != "ok":
            return False, f"the other user's decode ended {out.kind if out else 'never'}: {(out.message if out else '')[:80]}"
        if self.alone is None or token_list(out.final) != self.alone:
            return False, "the other user's decode differs from the same request run alone"
        return True, f"the other user's {len(self.alone)} tokens equal the same request alone"


def _case(name: str, answer_ok: bool, answer: str, bystander: tuple[bool, str], after_ok: bool,
          alive: bool) -> dict:
    held = answer_ok and bystander[0] and after_ok and alive
    return {"case": name, "held": held, "answer": answer[:200], "bystander": bystander[1],
            "next_request": "ok" if after_ok else "FAILED", "server_alive": alive}


def _family_folder(family: str | None) -> Path | None:
    folders = family_folders(family) if family else []
    return Path(folders[-1]) if folders and Path(folders[-1], "config.json").exists() else None


def broken_copies(source: Path, scratch: Path) -> dict[str, Path]:
    """Three damaged copies of one model folder: random weights, half-length weights, no tokenizer."""
    out = {}
    rng = random.Random(0)
    for name in ("corrupt weights", "truncated weights", "missing tokenizer"):
        dst = scratch / name.replace(" ", "-")
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(source, dst)
        weights = dst / "model.safetensors"
        if name == "corrupt weights":
            weights.write_bytes(bytes(rng.getrandbits(8) for _ in range(4096)))
        elif name == "truncated weights":
            data = weights.read_bytes()
            weights.write_bytes(data[: len(data) // 2])
        else:
            (dst / "tokenizer.json").unlink()
        out[name] = dst
    return out


def _upload(url: str, path: Path, params) -> Outcome:
    """/upload_profile with a file, through gradio_client (it uploads the file first)."""
    from gradio_client import handle_file

    client = make_client(url)
    names = [p.name for p in params["/upload_profile"]]
    args = [p.default for p in params["/upload_profile"]]
    args[names.index("path")] = handle_file(str(path))
    return call(client, args, timeout_s=120, endpoint="/upload_profile")


def bad_uploads(scratch: Path) -> dict[str, Path]:
    files = {"empty profile upload": scratch / "empty.json", "50 MB profile upload": scratch / "big.json",
             "profile upload that is not UTF-8": scratch / "binary.json"}
    files["empty profile upload"].write_bytes(b"")
    with open(files["50 MB profile upload"], "w", encoding="utf-8") as f:
        f.write('{"models": [' + ",".join(['"m"'] * 10) + '], "junk": "')
        chunk = "x" * (1 << 20)
        for _ in range(50):
            f.write(chunk)
        f.write('"}')
    files["profile upload that is not UTF-8"].write_bytes(bytes(range(256)) * 64)
    return files


def _judge_answer(out: Outcome, want: str) -> tuple[bool, str]:
    """``want``: 'sentence' (refused in one sentence) or 'result' (a complete answer)."""
    if want == "result":
        return out.kind == "ok", f"{out.kind}: {out.message[:120]}" if out.kind != "ok" else "a complete result"
    ok = out.kind == "error" and one_sentence(out.message)
    return ok, f"{out.kind}: {out.message[:160]}"


def run_faults(url: str, pid: int | None, *, scratch: Path, family: str | None, alive=lambda: True,
               server_log=None, log=print) -> dict:
    """Each case in turn (module docstring); the report (plain dict, ``held`` overall)."""
    url = check_loopback(url)
    params = fuzz.endpoints(url)
    cases: list[dict] = []
    seed = [0]

    def well_formed() -> bool:
        seed[0] += 1
        out = rest_call(url, raw_body=fuzz._encode(_generate_body(params, "x = 1\n", 6, seed[0])), timeout_s=300)
        return out.kind == "ok"

    def with_bystander(name: str, fault, want: str) -> None:
        seed[0] += 1
        other = Bystander(url, params, seed[0]).start()
        out = fault()
        ok, answer = (out if isinstance(out, tuple) else _judge_answer(out, want))
        cases.append(_case(name, ok, answer, other.verdict(), well_formed(), bool(alive()) and answers(url)))
        log(f"  {name}: {'held' if cases[-1]['held'] else 'FAILED'} ({cases[-1]['answer'][:90]})")

    source = _family_folder(family)
    if source is None:
        for name in ("corrupt weights", "truncated weights", "missing tokenizer", "unwritable download folder"):
            cases.append({"case": name, "held": None, "answer": "not run: the app was not launched by this "
                          "command from local folders", "bystander": "", "next_request": "", "server_alive": True})
    else:                                                                               # 1) - 3)
        for name, folder in broken_copies(source, scratch).items():
            with_bystander(name, lambda f=folder: rest_call(
                url, raw_body=fuzz._encode(_generate_body(params, "def f():\n", 6, 1, family=str(f))), timeout_s=300),
                "sentence")
    for name, path in bad_uploads(scratch).items():                                    # 4)
        with_bystander(name, lambda p=path: _upload(url, p, params), "sentence")
    if source is not None:                                                              # 5)
        blocker = scratch / "hsd-explorer"          # the launched app's TMPDIR is ``scratch``
        shutil.rmtree(blocker, ignore_errors=True)
        blocker.write_text("a file where the download folder should be", encoding="utf-8")
        try:
            with_bystander("unwritable download folder", lambda: rest_call(
                url, raw_body=fuzz._encode(_generate_body(params, "def g(x):\n", 8, 5)), timeout_s=300), "result")
        finally:
            blocker.unlink()
    with_bystander("a client disconnects mid-stream", lambda: _disconnect(url, params), "")     # 6)
    cases.append(_what_ifs_at_once(url, params, alive))                                 # 7)
    log(f"  8 what-if edits at once: {'held' if cases[-1]['held'] else 'FAILED'}")
    with_bystander("decodes cancelled while their panels draw", lambda: _cancel_while_drawing(url, params), "")  # 8)
    exceptions = classify_log(server_log()) if server_log else None
    held = all(c["held"] is not False for c in cases)
    return {"format": "hsd-faults/1", "url": url, "held": held, "cases": cases, "server_log_exceptions": exceptions}


def _disconnect(url: str, params) -> tuple[bool, str]:
    """A long decode whose client goes away mid-stream (seeds are tried until one streams long
    enough: a random tiny model may write its end-of-text token at once)."""
    for seed in range(9, 19):
        verdict, secs = soak.cancelled_generate(url, _generate_body(params, "class A:\n", soak.CANCEL_TOKENS, seed), 120)
        if verdict != "finished":
            break
    return verdict == "cancelled", f"the client left mid-stream after {secs:.1f} s ({verdict})"


def _cancel_while_drawing(url: str, params, n: int = 6) -> tuple[bool, str]:
    """n long decodes, each dropped at another moment (0.2 s to 1.2 s after its first tokens)."""
    verdicts = []
    for k in range(n):
        body = _generate_body(params, NORMAL_PROMPTS[k % 4], soak.CANCEL_TOKENS, 20 + k)
        t = threading.Thread(target=lambda b=body: verdicts.append(soak.cancelled_generate(url, b, 120)[0]))
        t.start()
        time.sleep(0.2 * (k + 1))
        t.join(130)
    bad = [v for v in verdicts if v not in ("cancelled", "finished")]
    ok = not bad and len(verdicts) == n and "cancelled" in verdicts
    return ok, (f"{verdicts.count('cancelled')} of {n} decodes dropped mid-stream, "
                f"{verdicts.count('finished')} ended first at end-of-text" + (f", {len(bad)} failed" if bad else ""))


def _what_if_body(params, k: int, alphas: dict | None = None) -> dict:
    """Edit k: the k-th cost multiplier (in turn) set to 0.5 + 0.25 k, on the family's α table."""
    ps = params["/what_if"]
    edit = {} if alphas is None else {"alphas": alphas}
    costs = [p.name for p in ps if p.name.startswith("cost_")]
    if costs:
        edit[costs[k % len(costs)]] = round(0.5 + 0.25 * k, 2)
    return fuzz.request_body(ps, **edit)


def _ensure_profile(url: str, params) -> str:
    """A what-if edits the family's profile: where the app has none (a family of folders), the
    Optimise tab's 'measure now' makes one first.  How the first what-if then ended."""
    probe = rest_call(url, raw_body=fuzz._encode(_what_if_body(params, 0)), timeout_s=120, endpoint="/what_if")
    if probe.kind == "ok" or "no profile" not in probe.message.lower():
        return probe.kind
    body = fuzz.request_body(params["/optimize"], source="measure now")
    measured = rest_call(url, raw_body=fuzz._encode(body), timeout_s=600, endpoint="/optimize")
    return measured.kind


def _what_ifs_at_once(url: str, params, alive) -> dict:
    """Eight what-if edits sent together; each answer must equal the same edit answered alone."""
    _ensure_profile(url, params)
    alphas = soak.current_alphas(url, params)
    bodies = [_what_if_body(params, k, alphas) for k in range(8)]
    together: list = [None] * 8

    def send(k):
        together[k] = rest_call(url, raw_body=fuzz._encode(bodies[k]), timeout_s=120, endpoint="/what_if")
    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(130)
    alone = [rest_call(url, raw_body=fuzz._encode(b), timeout_s=120, endpoint="/what_if") for b in bodies]
    same = sum(1 for a, b in zip(together, alone)
               if a is not None and a.kind == b.kind == "ok" and _plan_text(a.final) == _plan_text(b.final))
    ok = same == 8
    kinds = sorted({o.kind for o in together if o is not None} | {o.kind for o in alone})
    return {"case": "8 what-if edits at once", "held": ok and bool(alive()),
            "answer": f"{same} of 8 answers equal the same edit answered alone (answers: {', '.join(kinds)}"
                      + ("" if ok else f"; {next((o.message for o in alone if o.kind != 'ok'), '')[:80]}") + ")",
            "bystander": "",
            "next_request": "", "server_alive": bool(alive())}


def _plan_text(final) -> str:
    """The parts of a /what_if answer that say which plan won (the status text and the table)."""
    return json.dumps([x for x in (final or []) if isinstance(x, (str, dict)) and not _is_plot(x)], sort_keys=True,
                      default=str)


def _is_plot(x) -> bool:
    return isinstance(x, dict) and ("plot" in x or x.get("type") == "plotly")


def print_faults_report(report: dict, out=None) -> None:
    import sys

    out = out or sys.stdout
    w = max(len(c["case"]) for c in report["cases"])
    print(f"\n{'fault':<{w}}  result  answer / the other user", file=out)
    for c in report["cases"]:
        mark = {True: "held", False: "FAILED", None: "n/a"}[c["held"]]
        print(f"{c['case']:<{w}}  {mark:<6}  {c['answer'][:110]}" + (f" | {c['bystander']}" if c["bystander"] else ""),
              file=out)
    exc = report.get("server_log_exceptions")
    if exc is not None:
        print("exceptions in the server log: " + (", ".join(f"{k} x{v}" for k, v in exc.items()) or "none"), file=out)
    print("EVERYTHING HELD" if report["held"] else "FAILURES", file=out)
