"""visual/: figures build from plain data, show what they claim, and stay JSON-serialisable.

Traces are built by a tiny in-test hierarchy (3 levels, 8-token vocabulary, fixed per-context
distributions) whose verifications call the REAL rules in hsd/verify.py, so every diagnostics
dict has the shape the engine produces.  ``python tests/test_visual.py`` writes example HTML of
every figure (light and dark) to artifacts/visual/ for looking at (``--png``: screenshots too).
"""
from __future__ import annotations

import ast
import json
import math
import pathlib
import sys
import zlib
from types import SimpleNamespace

import networkx as nx
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsd.trace import Committed, Drafted, Finished, Prefill, Started, Trace, Verified  # noqa: E402
from hsd.verify import RULES  # noqa: E402

import visual  # noqa: E402
from visual import theme  # noqa: E402

VOCAB = ["a", " the", "\n", "def", " x", "(", "):", "<eos>"]
EOS = 7
NAMES = ("tiny-0.4M", "small-2M", "target-27M")
COST_MS = (0.8, 2.9, 12.9)          # one forward pass per level (fake clock)


# ------------------------------------------------------------------------------------------
# a tiny hierarchy on hand-made distributions, verified by the real rules
# ------------------------------------------------------------------------------------------

def _probs(level: int, ctx: tuple, temperature: float) -> torch.Tensor:
    """(V,) distribution of model ``level`` after ``ctx``: shared base logits + level noise that
    shrinks with size, so bigger models agree more with the target (level 2)."""
    g = torch.Generator().manual_seed(zlib.crc32(repr((ctx[-2:], "base")).encode()))
    base = torch.randn(len(VOCAB), generator=g, dtype=torch.float64) * 1.5
    base[EOS] -= 2.5
    g2 = torch.Generator().manual_seed(zlib.crc32(repr((ctx[-2:], level)).encode()))
    logits = base + torch.randn(len(VOCAB), generator=g2, dtype=torch.float64) * (0.0, 1.2, 0.5)[level] * (level < 2)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), len(VOCAB)).to(torch.float64)
    return torch.softmax(logits / temperature, -1)


class _Sim:
    def __init__(self, rule: str, temperature: float, buffers=(3, 4), seed: int = 0):
        self.rule, self.temperature, self.buffers = rule, temperature, buffers
        self.gen = torch.Generator().manual_seed(seed)
        self.clock, self.round, self.events = 0.0, 0, []
        self.truth: list[str] = []      # ground-truth category of every committed token

    def tick(self, ms: float) -> float:
        t, self.clock = self.clock, self.clock + ms
        return t

    def draft(self, ctx: list) -> tuple[list, list, list, list]:
        """Level 0: T_0 tokens one at a time; returns tokens, origins, kinds, rows."""
        toks, rows = [], []
        for _ in range(self.buffers[0]):
            row = _probs(0, tuple(ctx + toks), self.temperature)
            toks.append(int(torch.multinomial(row, 1, generator=self.gen)))
            rows.append(row)
        n = len(toks)
        t0 = self.tick(COST_MS[0] * n)
        self.events.append(Drafted(round=self.round, level=0, context_len=len(ctx), tokens=tuple(toks),
                                   texts=tuple(VOCAB[t] for t in toks), forward_passes=n, t_ms=t0,
                                   dur_ms=COST_MS[0] * n))
        return toks, [0] * n, ["draft"] * n, rows

    def verify(self, level: int, ctx: list, toks: list, origins: list, kinds: list, rows: list):
        """One forward pass of ``level`` over the block; the real rule decides."""
        vp = torch.stack([_probs(level, tuple(ctx + toks[:t]), self.temperature) for t in range(len(toks) + 1)])
        verdict = RULES[self.rule](torch.tensor(toks), torch.stack(rows), vp, self.gen)
        n = verdict.n_accepted
        t0 = self.tick(COST_MS[level] * (1 + 0.05 * len(toks)))
        out = toks[:n] + [verdict.next_token]
        self.events.append(Verified(
            round=self.round, level=level, context_len=len(ctx), proposed=tuple(toks),
            proposed_texts=tuple(VOCAB[t] for t in toks), proposed_origins=tuple(origins), n_accepted=n,
            next_token=verdict.next_token, next_text=VOCAB[verdict.next_token], next_kind=verdict.next_kind,
            handed_up=len(out), rule=self.rule, diagnostics=verdict.diagnostics, t_ms=t0,
            dur_ms=COST_MS[level] * (1 + 0.05 * len(toks))))
        return out, origins[:n] + [level], kinds[:n] + [verdict.next_kind], [vp[t] for t in range(n + 1)]

    def middle(self, ctx: list):
        """Level 1: verify level-0 blocks until it holds at least T_1 tokens."""
        held, origins, kinds, rows = [], [], [], []
        while len(held) < self.buffers[1]:
            t, o, k, rr = self.verify(1, ctx + held, *self.draft(ctx + held))
            held, origins, kinds, rows = held + t, origins + o, kinds + k, rows + rr
        return held, origins, kinds, rows

    def run(self, prompt: list, max_new_tokens: int) -> Trace:
        self.events.append(Started(models=NAMES, buffers=self.buffers, rules=(self.rule,) * 2,
                                   temperature=self.temperature, top_k=0, top_p=1.0, seed=0,
                                   max_new_tokens=max_new_tokens, prompt_tokens=len(prompt), prompt_text="def f(x):"))
        for lv in range(3):
            self.events.append(Prefill(level=lv, n_tokens=len(prompt), t_ms=self.tick(COST_MS[lv] * 1.5),
                                       dur_ms=COST_MS[lv] * 1.5))
        out, reason = [], "max_new_tokens"
        while len(out) < max_new_tokens:
            self.round += 1
            ctx = prompt + out
            new, new_org, new_kind, _ = self.verify(2, ctx, *self.middle(ctx))
            cut = new.index(EOS) + 1 if EOS in new else len(new)
            reason = "eos" if EOS in new else reason
            cut = min(cut, max_new_tokens - len(out))
            new, new_org, new_kind = new[:cut], new_org[:cut], new_kind[:cut]
            out += new
            self.truth += [f"L{o} {k}" for o, k in zip(new_org, new_kind)]
            self.events.append(Committed(round=self.round, tokens=tuple(new), texts=tuple(VOCAB[t] for t in new),
                                         origins=tuple(new_org), text="".join(VOCAB[t] for t in new),
                                         total_tokens=len(out), t_ms=self.clock))
            if reason == "eos":
                break
        self.events.append(Finished(reason=reason, n_tokens=len(out), t_ms=self.clock))
        return Trace(events=list(self.events), meta={"source": "tests/test_visual.py simulator", "truth": self.truth})


def make_trace(rule: str = "hsd", temperature: float = 1.0, max_new_tokens: int = 24, seed: int = 0) -> Trace:
    """A 3-level trace; ``trace.meta["truth"]`` holds each committed token's true category."""
    return _Sim(rule, temperature, seed=seed).run([3, 4, 5], max_new_tokens)


def make_plan():
    """A real optimiser plan (hsd/optimize.py) on a made-up 5-model profile: 65 nodes, 1600 arcs."""
    from hsd.plan.optimize import optimal_hierarchy
    from hsd.plan.profile import Profile

    names = ["xs", "s", "m", "l", "xl"]
    base_ms = [0.4, 1.2, 3.0, 8.0, 25.0]
    cost_ms = {n: [b * (1 + 0.03 * k) for k in range(17)] for n, b in zip(names, base_ms)}
    acc = [[1.0] * 5 for _ in range(5)]
    for i in range(5):
        for j in range(i + 1, 5):
            acc[i][j] = acc[j][i] = min(0.95, 0.55 + 0.1 * i + 0.05 * (3 - (j - i)))
    return optimal_hierarchy(Profile(models=names, cost_ms=cost_ms, acceptance=acc), max_buffer=16)


def make_handmade_plan(n_models: int = 5, buffers=range(1, 17)) -> SimpleNamespace:
    """A Plan-shaped object built by hand: layered (model, buffer) DAG with the documented attrs."""
    g = nx.DiGraph()
    target = ("target", n_models - 1)
    names = [f"m{i}" for i in range(n_models)]
    for m in range(n_models - 1):
        for b in buffers:
            g.add_node(("draft", m, b), model=m, name=names[m], buffer=b, best_cost_ms=1.0 + m + 0.1 * b)
    g.add_node(target, model=n_models - 1, name=names[-1], buffer=None, best_cost_ms=5.0)
    for u in list(g.nodes):
        for v in list(g.nodes):
            if u[0] == "draft" and (v == target or (v[0] == "draft" and v[1] > u[1])):
                g.add_edge(u, v, cost_ms=0.5 * v[1] + 0.1 * u[2], gain=u[2] / 2 + 0.5, on_optimal=False)
    path = [("draft", 0, 4), ("draft", 2, 6), target]
    for u, v in zip(path[:-1], path[1:]):
        g.edges[u, v]["on_optimal"] = True
    runner = SimpleNamespace(path=[("draft", 1, 5), target], chain=[1, n_models - 1], buffers=[5])
    return SimpleNamespace(graph=g, path=path, chain=[0, 2, n_models - 1], names=[names[0], names[2], names[-1]],
                           buffers=[4, 6], expected_ms_per_token=3.21, speedup_vs_ar=2.4, runners_up=[runner])


def make_lab() -> dict:
    """The docs/design.md §3 toy (V={a,b}, p=(1/3,2/3), q=(2/3,1/3), γ=2): 'ba' has 2/9 under the
    target but 1/3 under hsd-uncapped (other numbers illustrative)."""
    seqs = ["aa", "ab", "ba", "bb"]
    target = [1 / 9, 2 / 9, 2 / 9, 4 / 9]
    lossy = [1 / 9, 2 / 9 - 1 / 18, 1 / 3, 4 / 9 - 1 / 18]
    tv = 0.5 * sum(abs(a - b) for a, b in zip(target, lossy))
    rules = {r: {"probs": list(target), "tv": 1e-16, "lossless": True, "expected_accepted": ea}
             for r, ea in (("token", 10 / 9), ("block", 11 / 9), ("hsd", 11 / 9))}
    rules["hsd-uncapped"] = {"probs": lossy, "tv": tv, "lossless": False, "expected_accepted": 1.3}
    return {"sequences": seqs, "target": target, "rules": rules}


COMPARE = {
    "AR (target only)": {"tokens_per_s": 70.0, "tokens_per_target_call": 1.0, "predicted_ms_per_token": 13.5, "measured_ms_per_token": 14.2},
    "tiny → target": {"tokens_per_s": 118.0, "tokens_per_target_call": 2.6, "predicted_ms_per_token": 7.9, "measured_ms_per_token": 8.5},
    "tiny → small → target": {"tokens_per_s": 140.0, "tokens_per_target_call": 3.9, "predicted_ms_per_token": 6.5, "measured_ms_per_token": 7.1},
    "custom (no prediction)": {"tokens_per_s": 90.0, "tokens_per_target_call": 2.0, "predicted_ms_per_token": None, "measured_ms_per_token": 11.0},
}


@pytest.fixture(scope="module")
def trace() -> Trace:
    return make_trace("hsd")


def _json_ok(fig) -> dict:
    return json.loads(fig.to_json())


def _target_events(tr: Trace, level: int = 2) -> list:
    return [e for e in tr.of_kind("verified") if e.level == level]


# ------------------------------------------------------------------------------------------
# layering
# ------------------------------------------------------------------------------------------

FORBIDDEN = {"torch", "transformers", "gradio", "accelerate", "safetensors"}


def test_visual_sources_import_no_torch_transformers_or_gradio():
    for path in sorted((ROOT / "visual").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in FORBIDDEN, f"{path.name} imports {mod}"
                assert not mod.startswith("hsd") or mod == "hsd.trace", f"{path.name} imports {mod}"
                assert mod.split(".")[0] != "app", f"{path.name} imports the app"


def test_importing_visual_does_not_load_torch():
    import subprocess

    code = "import sys, visual; bad = {'torch', 'transformers', 'gradio'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ------------------------------------------------------------------------------------------
# theme
# ------------------------------------------------------------------------------------------

def test_level_palette_is_distinct_and_kept_apart_from_accept_reject():
    colors = [theme.level_color(i) for i in range(6)]
    assert len(set(colors)) == 6
    assert theme.ACCEPT_COLOR not in colors and theme.REJECT_COLOR not in colors
    assert theme.ACCEPT_SYMBOL != theme.REJECT_SYMBOL


def test_escape_token_makes_whitespace_visible_and_html_inert():
    assert theme.escape_token(" the") == "␣the"
    assert theme.escape_token("\n\t") == "↵⇥"
    assert theme.escape_token("") == "∅"
    assert theme.escape_token("<br>") == "&lt;br&gt;"
    assert theme.escape_token("abcdefghijklmnop", 6) == "abcde…"


@pytest.mark.parametrize("dark", [False, True])
def test_apply_sets_template_height_and_constant_uirevision(dark):
    fig = theme.apply(visual.figure_empty("x").__class__(), dark=dark, height=333)
    assert fig.layout.height == 333
    assert fig.layout.uirevision == theme.UIREVISION
    assert fig.layout.template.layout.paper_bgcolor == ("rgb(17,17,17)" if dark else "white")


def test_figure_empty_centres_the_message_without_axes():
    fig = visual.figure_empty("Run a generation first.")
    assert len(fig.data) == 0
    assert fig.layout.annotations[0].text == "Run a generation first."
    assert fig.layout.xaxis.visible is False


# ------------------------------------------------------------------------------------------
# timeline
# ------------------------------------------------------------------------------------------

def test_timeline_has_one_lane_per_level_with_the_target_on_top(trace):
    fig = visual.figure_timeline(trace)
    lanes = list(fig.layout.yaxis.categoryarray)
    assert lanes[-1] == "output" and lanes[-2].startswith("L2 target")   # last category = top
    assert [lane[:2] for lane in lanes[:3]] == ["L0", "L1", "L2"]
    bars = {t.name: t for t in fig.data if t.type == "bar" and t.name.startswith("L")}
    assert len(bars) == 3
    for level, bar in enumerate(sorted(bars.values(), key=lambda b: b.name)):
        spans = [e for e in trace.events if e.kind in ("drafted", "verified") and e.level == level]
        assert len(bar.x) == len(spans)
        assert list(bar.base) == [e.t_ms for e in spans]
        assert bar.orientation == "h"
        assert bar.marker.color == theme.level_color(level)


def test_timeline_marks_every_commit_and_labels_verifications_with_accepted_over_gamma(trace):
    fig = visual.figure_timeline(trace)
    commits = [t for t in fig.data if t.type == "scatter"][0]
    assert len(commits.x) == len(trace.of_kind("committed"))
    target_bar = [t for t in fig.data if t.type == "bar" and t.name.startswith("L2")][0]
    assert list(target_bar.text) == [f"✓{e.n_accepted}/{len(e.proposed)}" for e in _target_events(trace)]
    assert "wall clock" in fig.layout.xaxis.title.text


def test_timeline_accept_map_and_tokens_build_from_every_prefix_of_a_streamed_trace(trace):
    assert len(visual.figure_timeline(Trace()).data) == 0          # before the first pass: a message
    for n in list(range(1, 12)) + list(range(12, len(trace.events) + 1, 7)):
        part = Trace(events=trace.events[:n])
        _json_ok(visual.figure_timeline(part))
        _json_ok(visual.figure_accept_map(part))
        assert len(visual.token_spans(part)) == len(part.token_ids)


def test_timeline_is_the_same_after_a_json_round_trip(trace):
    again = Trace.from_json(trace.to_json())
    assert visual.figure_timeline(again).to_json() == visual.figure_timeline(trace).to_json()


# ------------------------------------------------------------------------------------------
# accept map
# ------------------------------------------------------------------------------------------

def _heatmap(fig):
    return [t for t in fig.data if t.type == "heatmap"][0]


def test_accept_map_has_one_row_per_target_verification_and_cells_match_the_verdicts(trace):
    events = _target_events(trace)
    hm = _heatmap(visual.figure_accept_map(trace, max_rows=100))
    z = [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in hm.z]
    assert len(z) == len(events)
    assert len(z[0]) == max(len(e.proposed) for e in events) + 1
    for row, texts, e in zip(z, hm.text, events):
        assert row.count(0) == e.n_accepted
        assert row.count(1) == (e.n_accepted < len(e.proposed))
        assert row.count(2) == (e.next_kind == "bonus")
        assert row.count(3) == max(len(e.proposed) - e.n_accepted - 1, 0)     # not reached: shown, greyed
        for code, text in zip(row, texts):
            if code == 3:           # drafted after the rejection: the token in italics on a grey cell
                assert text.startswith("<i>") and text.endswith("</i>")
            elif code is not None:  # accept/reject never by colour alone
                assert text[0] == {0: "✓", 1: "✗", 2: "+"}[code]
            else:
                assert text == ""   # past the block: a gap


def test_accept_map_shows_the_replacement_in_the_rejected_cell_and_escapes_whitespace(trace):
    events = _target_events(trace)
    hm = _heatmap(visual.figure_accept_map(trace))
    rejected = [(e, texts) for e, texts in zip(events, hm.text) if e.n_accepted < len(e.proposed)]
    assert rejected
    from visual import accept_map

    width = len(hm.z[0])        # cut to what fits the column (one line: two tokens share it)
    chars = accept_map.cell_chars(width)
    shown = chars if len(hm.z) <= 8 else accept_map.replacement_chars(chars)
    for e, texts in rejected:
        assert "↻ " + theme.escape_token(e.next_text, shown) in texts[e.n_accepted]
    flat = [t for row in hm.text for t in row]
    assert not any("\n" in t or " the" in t for t in flat)


def test_accept_map_for_a_middle_level_and_keeps_only_the_latest_rows(trace):
    level1 = _target_events(trace, 1)
    fig = visual.figure_accept_map(trace, level=1, max_rows=5)
    hm = _heatmap(fig)
    assert len(hm.y) == 5 == len(set(hm.y))
    assert "L0" in fig.layout.title.text and "last 5 of" in fig.layout.title.text
    assert len(level1) > 5


def test_accept_map_without_verifications_is_a_message():
    started = Started(models=("a",), buffers=(), rules=(), temperature=1.0, top_k=0, top_p=1.0, seed=0,
                      max_new_tokens=8, prompt_tokens=1)
    fig = visual.figure_accept_map(Trace(events=[started]))
    assert "No verifications" in fig.layout.annotations[0].text


# ------------------------------------------------------------------------------------------
# mass balance
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["token", "block", "hsd", "hsd-uncapped"])
def test_mass_balance_stacks_overlap_excess_deficit_to_max_of_target_and_draft(rule):
    event = _target_events(make_trace(rule, seed=4))[0]
    fig = visual.figure_mass_balance(event, id_to_text=lambda i: VOCAB[i])
    stacked = [t for t in fig.data if t.type == "bar" and t.xaxis == "x"]
    assert [t.name.split()[0] for t in stacked] == ["overlap", "draft", "target"]
    nodes = event.diagnostics["nodes"]
    a = [v for n in nodes for v in n["target"]]
    b = [v for n in nodes for v in n["draft"]]
    total = [sum(t.y[i] for t in stacked) for i in range(len(a))]
    assert total == pytest.approx([max(x, y) for x, y in zip(a, b)])
    assert len(stacked[0].x[0]) == sum(len(n["ids"]) for n in nodes)
    _json_ok(fig)


def test_mass_balance_marks_the_drafted_token_and_the_node_fates():
    event = max(_target_events(make_trace("hsd")), key=lambda e: len(e.proposed) - e.n_accepted)
    fig = visual.figure_mass_balance(event, id_to_text=lambda i: VOCAB[i])
    cats, toks = fig.data[0].x
    for t in range(len(event.proposed)):
        node_toks = [tok for c, tok in zip(cats, toks) if c.startswith(f"node {t} ")]
        assert sum(tok.startswith("▸") for tok in node_toks) <= 1
    fates = sorted(set(cats), key=lambda c: int(c.split()[1]))
    expected = ["✓"] * event.n_accepted + ["✗"] + ["○"] * (len(event.proposed) - event.n_accepted - 1)
    assert [c.split()[-1] for c in fates] == expected[: len(fates)]


def test_mass_balance_falls_back_to_hash_ids_without_a_decoder():
    event = _target_events(make_trace("hsd"))[0]
    toks = visual.figure_mass_balance(event).data[0].x[1]
    assert any(t.startswith("#") for t in toks)


def test_mass_balance_whole_block_panel_matches_the_rule_diagnostics():
    for rule, key in (("hsd", "accept_all_capped"), ("hsd-uncapped", "accept_all_uncapped"), ("block", "accept_all_prob")):
        event = _target_events(make_trace(rule, seed=1))[0]
        d = event.diagnostics
        values = visual.mass_balance.whole_block_acceptance(d["ratios"])
        assert values["capped c_γ"] == pytest.approx(d.get("accept_all_capped", d["accept_all_prob"]))
        if "accept_all_uncapped" in d:
            assert values["uncapped min(1,Πρ) (lossy)"] == pytest.approx(d["accept_all_uncapped"])
        fig = visual.figure_mass_balance(event)
        panel = [t for t in fig.data if t.type == "bar" and t.xaxis == "x4"][0]
        used = {"hsd": 1, "block": 1, "hsd-uncapped": 2}[rule]
        assert panel.text[used].endswith("◀ used")
        assert panel.y[used] == pytest.approx(d["accept_all_prob"])


def test_block_excess_derived_by_the_panel_equals_hsd_excess_on_the_same_block():
    """Σ(B−A) = 1 − c_t, so the panel's D_t = E_t + 1 − c_t for block equals hsd's reported D_t."""
    g = torch.Generator().manual_seed(0)
    draft = torch.softmax(torch.randn(4, 7, generator=g, dtype=torch.float64), -1)
    verifier = torch.softmax(torch.randn(5, 7, generator=g, dtype=torch.float64), -1)
    toks = torch.tensor([0, 3, 1, 5])
    _, block = RULES["block"].outcome(toks, draft, verifier)
    _, hsd = RULES["hsd"].outcome(toks, draft, verifier)
    d_block, e_block, _ = visual.mass_balance._balance(block, "block")
    assert d_block == pytest.approx(hsd["excess"])
    assert e_block == pytest.approx(hsd["deficit"])


def test_mass_balance_flags_the_lossy_variant():
    event = _target_events(make_trace("hsd-uncapped", seed=3))[0]
    assert "LOSSY" in visual.figure_mass_balance(event).layout.title.subtitle.text


def test_mass_balance_of_a_greedy_verification_is_a_clear_message():
    event = _target_events(make_trace("hsd", temperature=0.0))[0]
    assert event.diagnostics.get("greedy") is True
    fig = visual.figure_mass_balance(event)
    assert len(fig.data) == 0
    assert "greedy: exact match check, no mass to balance" in fig.layout.annotations[0].text


def test_mass_balance_accepts_a_verified_event_as_a_plain_dict():
    event = _target_events(make_trace("block"))[0]
    from hsd.trace import event_to_dict

    assert visual.figure_mass_balance(event_to_dict(event)).to_json() == visual.figure_mass_balance(event).to_json()


# ------------------------------------------------------------------------------------------
# GSP graph
# ------------------------------------------------------------------------------------------

def _segments_of(trace_) -> set:
    xs, ys = list(trace_.x), list(trace_.y)
    return {((xs[i], ys[i]), (xs[i + 1], ys[i + 1])) for i in range(0, len(xs) - 1, 3)}


@pytest.mark.parametrize("make", [make_plan, make_handmade_plan])
def test_gsp_highlights_every_arc_of_the_optimal_path(make):
    plan = make()
    fig = visual.figure_gsp(plan)
    optimal = [t for t in fig.data if t.name == "optimal path"][0]
    pos = lambda n: (n[1], n[2] if n[0] == "draft" else 8.5)  # noqa: E731  (target at mid height)
    arcs = list(zip(plan.path[:-1], plan.path[1:]))
    assert _segments_of(optimal) == {(pos(u), pos(v)) for u, v in arcs}
    assert all(plan.graph.edges[u, v]["on_optimal"] for u, v in arcs)
    assert len([a for a in fig.layout.annotations if a.showarrow]) == len(arcs)
    labels = [a.text for a in fig.layout.annotations if not a.showarrow]
    for u, v in arcs:
        assert any(lab.startswith(f"T={u[2]} · ") for lab in labels)
    nodes = [t for t in fig.data if t.mode == "markers"][0]
    big = {(x, y) for x, y, size in zip(nodes.x, nodes.y, nodes.marker.size) if size > 10}
    assert big == {pos(n) for n in plan.path}


def test_gsp_labels_the_target_arc_with_tokens_per_call():
    plan = make_plan()
    u, v = plan.path[-2], plan.path[-1]
    eo = 1 / plan.graph.edges[u, v]["gain"]
    labels = [a.text for a in visual.figure_gsp(plan).layout.annotations]
    assert f"T={u[2]} · {eo:.2f} tok/call" in labels


def test_gsp_draws_only_a_light_subset_of_arcs_and_every_node():
    plan = make_plan()
    fig = visual.figure_gsp(plan)
    context = [t for t in fig.data if t.name == "best arc into each node"][0]
    n_nodes = plan.graph.number_of_nodes()
    assert plan.graph.number_of_edges() >= 1000
    assert 0 < len(_segments_of(context)) <= n_nodes
    nodes = [t for t in fig.data if t.mode == "markers"][0]
    assert len(nodes.x) == n_nodes
    assert all("best cost" in h for h in nodes.hovertext)


def test_gsp_context_arcs_realise_each_node_s_best_cost():
    plan = make_plan()
    g = plan.graph
    for u, v in visual.gsp._context_arcs(g):
        assert visual.gsp._arc_value(g, u, v) == pytest.approx(g.nodes[v]["best_cost_ms"])


def test_gsp_outlines_the_current_hierarchy():
    fig = visual.figure_gsp(make_plan(), current={"chain": [0, 1, 4], "buffers": [3, 8]})
    cur = [t for t in fig.data if t.name == "your hierarchy"][0]
    assert list(zip(cur.x, cur.y)) == [(0, 3), (1, 8), (4, 8.5)]
    assert cur.marker.symbol == "circle-open"
    fig2 = visual.figure_gsp(make_plan(), current=([0, 1, 4], [3, 8]))
    assert [t for t in fig2.data if t.name == "your hierarchy"][0].x == cur.x


def test_gsp_title_says_model_predicted():
    plan = make_plan()
    fig = visual.figure_gsp(plan)
    assert "model-predicted" in fig.layout.title.text
    assert fig.layout.title.subtitle.text.startswith("optimal: " + plan.label)
    assert fig.layout.title.subtitle.text.endswith(" · i.i.d. acceptance (one α per pair)")   # which model


def test_gsp_without_a_plan_is_a_message():
    assert len(visual.figure_gsp(SimpleNamespace(graph=nx.DiGraph())).data) == 0
    assert len(visual.figure_gsp(None).data) == 0


# ------------------------------------------------------------------------------------------
# exactness lab and what-if comparison
# ------------------------------------------------------------------------------------------

def test_exactness_shows_every_rule_next_to_the_target_and_flags_only_the_lossy_one():
    lab = make_lab()
    fig = visual.figure_exactness(lab)
    names = [t.name for t in fig.data]
    assert names[0] == "target (exact)" and len(names) == 1 + len(lab["rules"])
    lossy = [n for n in names if "LOSSY" in n]
    assert len(lossy) == 1 and lossy[0].startswith("hsd-uncapped")
    assert [t for t in fig.data if t.name == lossy[0]][0].marker.pattern.shape == "/"
    assert "TV = 0.11" in fig.layout.annotations[0].text


def test_exactness_keeps_the_most_probable_sequences_when_there_are_many():
    seqs = [f"s{i}" for i in range(40)]
    target = [i / 780 for i in range(40)]
    lab = {"sequences": seqs, "target": target,
           "rules": {"hsd": {"probs": target, "tv": 0.0, "lossless": True, "expected_accepted": 1.0}}}
    fig = visual.figure_exactness(lab, max_sequences=10)
    assert list(fig.data[0].x) == seqs[30:]
    assert "30 more hidden" in fig.layout.title.subtitle.text


def test_compare_says_wall_clock_and_model_predicted_and_handles_missing_predictions():
    fig = visual.figure_compare(COMPARE)
    titles = fig.layout.yaxis.title.text + fig.layout.yaxis2.title.text
    assert "wall clock" in titles and "model-predicted" in titles
    pred = [t for t in fig.data if t.name.startswith("model-predicted")][0]
    assert pred.text[-1] == "n/a"
    assert len(fig.data[1].x) == len(COMPARE)


def test_lab_figures_without_data_are_messages():
    assert len(visual.figure_compare({}).data) == 0
    assert len(visual.figure_exactness({}).data) == 0


# ------------------------------------------------------------------------------------------
# token colouring
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_token_spans_name_the_level_that_produced_every_committed_token(seed):
    tr = make_trace("hsd", seed=seed, max_new_tokens=30)
    spans = visual.token_spans(tr)
    assert "".join(t for t, _ in spans) == tr.text
    assert len(spans) == len(tr.token_ids)
    assert [c for _, c in spans] == tr.meta["truth"]     # simulator's ground truth incl. L1 kinds
    assert all(c in visual.TOKEN_COLOR_MAP for _, c in spans)


def test_token_spans_cover_drafts_replacements_and_bonuses_and_an_eos_cut():
    cats, reasons = set(), set()
    for seed in range(12):
        tr = make_trace("hsd", seed=seed, max_new_tokens=40)
        cats |= {c for _, c in visual.token_spans(tr)}
        reasons.add(tr.summary().finish_reason)
    assert {"L0 draft", "L1 replacement", "L1 bonus", "L2 replacement", "L2 bonus"} <= cats
    assert reasons == {"eos", "max_new_tokens"}


def test_named_token_spans_match_the_named_color_map(trace):
    spans = visual.token_spans(trace, with_names=True)
    cmap = visual.token_color_map(NAMES)
    assert all(c in cmap for _, c in spans)
    assert any(c == "L0 draft (tiny-0.4M)" for _, c in spans)
    assert cmap["L2 replacement (target-27M)"] == theme.level_color(2)
    assert "L0 target (tiny-0.4M)" not in cmap          # only categories this run can produce
    assert list(visual.token_color_map(["solo"])) == ["L0 target (solo)"]


def test_autoregressive_tokens_are_the_target_s_own():
    ev = [Started(models=("only",), buffers=(), rules=(), temperature=1.0, top_k=0, top_p=1.0, seed=0,
                  max_new_tokens=2, prompt_tokens=1),
          Drafted(round=1, level=0, context_len=1, tokens=(4, 5), texts=("x", "y"), forward_passes=2,
                  t_ms=0.0, dur_ms=2.0),
          Committed(round=1, tokens=(4, 5), texts=("x", "y"), origins=(0, 0), text="xy", total_tokens=2, t_ms=2.0)]
    assert visual.token_spans(Trace(events=ev)) == [("x", "L0 target"), ("y", "L0 target")]


def test_legend_html_names_every_level_and_escapes_names():
    html = visual.legend_html(["a<b>", "mid", "big"])
    assert "a&lt;b&gt;" in html and "L2 big (target)" in html
    assert theme.level_color(1) in html and "✓" in html and "✗" in html


# ------------------------------------------------------------------------------------------
# every figure: JSON, fixed height, constant uirevision, both templates
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dark", [False, True])
def test_every_figure_serialises_to_json_with_fixed_height_and_uirevision(dark):
    figures = example_figures(dark)
    assert len(figures) >= 8
    for name, fig in figures.items():
        d = _json_ok(fig)
        assert d["layout"]["height"] in theme.HEIGHT.values(), name
        assert d["layout"]["uirevision"] == theme.UIREVISION, name
        assert d["layout"]["font"]["color"] == theme.text_color(dark), name


@pytest.mark.parametrize("dark", [False, True])
def test_the_fast_app_path_sends_the_same_figure_json(dark):
    """``deferred_template`` + ``plot_json`` (what the app streams) must give exactly the figure
    the normal path gives, but for the template being trimmed to the parts our figures use."""
    normal = example_figures(dark)
    with theme.deferred_template():
        fast = example_figures(dark)
    assert set(fast) == set(normal)
    trimmed = theme.template_json(dark)
    for name in normal:
        want = json.loads(normal[name].to_json())
        full = want["layout"].pop("template")
        got = json.loads(theme.plot_json(fast[name], dark=dark))
        assert got["layout"].pop("template") == trimmed, name
        assert got == want, name
        for part in ("layout", "data"):               # the trimmed template keeps what it keeps as is
            for k, v in trimmed[part].items():
                assert full[part][k] == v, (name, part, k)
    assert json.loads(theme.plot_json(normal["timeline"], dark=dark))["layout"]["template"] == full  # has its own


# ------------------------------------------------------------------------------------------
# a trace from the REAL engine (tiny in-memory Llamas, tests/tiny.py)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_trace() -> Trace:
    pytest.importorskip("transformers")
    from hsd.engine import Hierarchy
    from hsd.family.tiny import tiny_family

    models, tok = tiny_family(3, scale=3.0)
    h = Hierarchy(models, tokenizer=tok, names=["d0", "d1", "tgt"], buffers=(2, 3), rules="hsd")
    trace = Trace(events=list(h.stream("def f(x):", max_new_tokens=24, temperature=1.0, seed=3)))
    return Trace.from_json(trace.to_json())          # what the app keeps in state / downloads


def test_token_spans_of_a_real_engine_trace_follow_origins_and_verdicts(engine_trace):
    spans = visual.token_spans(engine_trace)
    committed = engine_trace.of_kind("committed")
    assert len(spans) == len(engine_trace.token_ids) == sum(len(c.tokens) for c in committed)
    origins = [o for c in committed for o in c.origins]
    assert [int(c.split()[0][1:]) for _, c in spans] == origins
    by_round = {}
    for e in engine_trace.of_kind("verified"):
        by_round.setdefault(e.round, []).append(e)
    i = 0
    for c in committed:
        target = [e for e in by_round[c.round] if e.level == 2][-1]
        cats = [cat for _, cat in spans[i: i + len(c.tokens)]]
        i += len(c.tokens)
        if len(c.tokens) == target.n_accepted + 1:              # not cut at EOS / budget
            assert cats[-1] == f"L2 {target.next_kind}"
        for tok, origin, cat in zip(c.tokens, c.origins, cats):
            if origin == 1:
                kinds = {e.next_kind for e in by_round[c.round] if e.level == 1 and e.next_token == tok}
                assert cat.split()[1] in kinds
    assert {c for _, c in spans} <= set(visual.TOKEN_COLOR_MAP)


def test_every_figure_builds_from_a_real_engine_trace(engine_trace):
    figs = [visual.figure_timeline(engine_trace), visual.figure_accept_map(engine_trace),
            visual.figure_accept_map(engine_trace, level=1)]
    figs += [visual.figure_mass_balance(e) for e in engine_trace.of_kind("verified")]
    for fig in figs:
        _json_ok(fig)
    lanes = list(figs[0].layout.yaxis.categoryarray)
    assert lanes == ["L0 · d0", "L1 · d1", "L2 target · tgt", "output"]


# ------------------------------------------------------------------------------------------
# example artifacts: python tests/test_visual.py  ->  artifacts/visual/*.html
# ------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------
# readable in a lecture room: colours, code, cells, captions, the presenter view
# ------------------------------------------------------------------------------------------
# Machado, Oliveira & Fernandes (2009) colour-vision-deficiency matrices, severity 1, linear RGB
CVD = {"protan": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
       "deutan": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
       "tritan": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900))}


def _lab(hex_color: str, vision: str) -> tuple:
    """CIELAB of ``hex_color`` as seen with ``vision`` ('normal' or a CVD key)."""
    lin = [((c / 255) / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4)
           for c in theme._rgb(hex_color)]
    if vision != "normal":
        lin = [min(max(sum(m * x for m, x in zip(row, lin)), 0.0), 1.0) for row in CVD[vision]]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883
    f = lambda t: t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116  # noqa: E731
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


@pytest.mark.parametrize("vision", ["normal", "protan", "deutan", "tritan"])
def test_every_levels_replacement_and_bonus_colours_stay_apart_under_colour_vision_deficiencies(vision):
    """ΔE (CIE76) between the token categories of a 4-level stack: a level's replacement and bonus
    at least 15 apart, any two categories at least 8 (and a bonus is also underlined)."""
    from visual import tokens

    cmap = tokens.token_color_map(["xs", "s", "m", "l"])
    lab = {cat: _lab(color, vision) for cat, color in cmap.items()}
    for lv in (1, 2, 3):
        rep, bonus = (next(c for c in cmap if c.startswith(f"L{lv} {k}")) for k in ("replacement", "bonus"))
        assert math.dist(lab[rep], lab[bonus]) >= 15, (vision, lv)
    cats = list(cmap)
    worst = min(math.dist(lab[a], lab[b]) for i, a in enumerate(cats) for b in cats[i + 1:])
    assert worst >= 8, (vision, worst)


def test_token_text_reads_on_every_category_colour_in_both_themes():
    from visual import tokens

    for color in tokens.token_color_map(["xs", "s", "m", "l"]).values():
        assert theme.contrast(theme.ink_on(color), color) >= 4.5, color
    assert theme.ink_on("#0072B2") == "#ffffff" and theme.ink_on("#F0E442") == "#111111"


def test_the_code_view_keeps_indentation_escapes_html_and_underlines_bonus_tokens():
    spans = [("def", "L0 draft (xs)"), (" f", "L1 replacement (m)"), ("():\n    ", "L2 bonus (l)"), ("<b>", "L0 draft (xs)")]
    out = visual.code_html(spans)
    assert out.startswith('<pre class="hsd-code">') and "():\n    </span>" in out
    assert "&lt;b&gt;" in out and "<b>" not in out
    bonus = out.split("tok-bonus")[1].split(">")[0]
    assert "box-shadow:inset 0 -3px 0 " + theme.level_color(2) in bonus
    assert 'title="L1 replacement (m): &#x27; f&#x27;"' in out
    assert "(no tokens yet)" in visual.code_html([])


@pytest.mark.parametrize("presenter", [False, True])
def test_accept_map_cells_fit_twenty_columns_and_show_unreached_tokens(trace, presenter):
    from visual import accept_map

    with theme.presenting(presenter):
        chars = accept_map.cell_chars(21)
        cell_px = (accept_map.PANEL_PX[presenter] - 90) / 21
        assert (chars + 2) * 0.66 * accept_map.cell_font(21) <= cell_px or chars == 0    # symbol, space, token
        assert chars >= 2 or not presenter              # the presenter view: a token's start at 21 columns
        fig = visual.figure_accept_map(trace)
        hm = _heatmap(fig)
        limit = accept_map.cell_chars(len(hm.z[0])) + 2
    for row_text in hm.text:
        for cell in row_text:
            visible = cell.replace("<i>", "").replace("</i>", "").replace("&lt;", "<").replace("&amp;", "&")
            for line in visible.split("<br>"):
                assert len(line) <= limit, line
    unreached = [(t, h) for zr, tr, hr in zip(hm.z, hm.text, hm.customdata) for z, t, h in zip(zr, tr, hr)
                 if z == accept_map.NOT_REACHED]
    assert unreached and all(t.startswith("<i>") and "not reached" in h for t, h in unreached)


def test_mass_balance_titles_are_plain_words_with_the_notation_in_a_caption(trace):
    ev = next(e for e in _target_events(trace) if e.diagnostics.get("nodes"))
    fig = visual.figure_mass_balance(ev)
    titles = [a.text.replace("<br>", " ") for a in fig.layout.annotations if a.yref != "paper" or a.y > 0]
    assert "Too much vs too little mass, per node" in titles and "Chance to keep the whole block" in titles
    assert not any("(/)" in t or "◆" in t for t in titles)
    caption = next(a.text for a in fig.layout.annotations if a.y is not None and a.y < 0)
    assert "D_t = Σ(B − A)₊" in caption and "E_t = Σ(A − B)₊" in caption and "c_t" in caption
    n_bars = len(fig.data[0].x[0])
    from visual import mass_balance
    assert n_bars <= max(2 * len(ev.diagnostics["nodes"]), mass_balance.MAX_BARS[False])


def test_gsp_with_five_models_keeps_every_axis_label_and_a_short_subtitle():
    plan = make_handmade_plan(n_models=5)
    full = ["ngram", "hsd-family-xs", "hsd-family-s", "hsd-family-m", "hsd-family-l"]
    for n, a in plan.graph.nodes(data=True):
        a["name"] = full[a["model"]]
    plan.names = [full[c] for c in plan.chain]
    fig = visual.figure_gsp(plan)
    ticks = list(fig.layout.xaxis.ticktext)
    assert len(ticks) == 5 and ticks[-1] == "4: l<br>(target)" and ticks[0] == "0: ngram"
    assert "hsd-family-" in fig.layout.xaxis.title.text
    assert "hsd-family" not in fig.layout.title.subtitle.text and len(fig.layout.title.subtitle.text) < 110


def test_the_presenter_view_enlarges_every_figures_fonts_and_height(trace):
    normal = example_figures(False)
    with theme.presenting(True):
        big = example_figures(False)
    for name, fig in normal.items():
        assert big[name].layout.font.size > fig.layout.font.size, name
        assert big[name].layout.height > fig.layout.height, name
        if fig.layout.title.text:
            assert big[name].layout.title.font.size > fig.layout.title.font.size, name
    assert not theme.presenter()                                    # the context ended with the block


def test_a_step_through_timeline_keeps_the_whole_decodes_axis_and_counts_its_time(trace):
    steps = visual.learn_steps(trace)
    first = visual.partial_trace(trace, steps[0])
    whole_fig = visual.figure_timeline(first, whole=trace)
    from visual.timeline import end_ms
    assert whole_fig.layout.xaxis.range[1] == pytest.approx(end_ms(trace) * 1.03)
    assert f"after {end_ms(first):.1f} ms" in whole_fig.layout.title.text


def example_figures(dark: bool) -> dict:
    hsd_trace = make_trace("hsd")
    block_trace = make_trace("block", seed=1)
    token_trace = make_trace("token", seed=2)
    lossy_trace = make_trace("hsd-uncapped", seed=3)
    greedy_trace = make_trace("hsd", temperature=0.0)
    target = lambda tr: [e for e in tr.of_kind("verified") if e.level == 2]  # noqa: E731
    vocab = lambda i: VOCAB[i]  # noqa: E731
    rich = max(target(hsd_trace), key=lambda e: len(e.proposed) - e.n_accepted)
    return {
        "empty": visual.figure_empty("Run a generation to see the timeline.", dark=dark),
        "timeline": visual.figure_timeline(hsd_trace, dark=dark),
        "timeline_long": visual.figure_timeline(make_trace("block", max_new_tokens=120, seed=5), dark=dark),
        "accept_map_target": visual.figure_accept_map(hsd_trace, dark=dark),
        "accept_map_level1": visual.figure_accept_map(hsd_trace, level=1, dark=dark),
        "accept_map_greedy": visual.figure_accept_map(greedy_trace, dark=dark),
        "mass_balance_hsd": visual.figure_mass_balance(rich, id_to_text=vocab, dark=dark),
        "mass_balance_block": visual.figure_mass_balance(target(block_trace)[0], id_to_text=vocab, dark=dark),
        "mass_balance_token": visual.figure_mass_balance(target(token_trace)[0], dark=dark),
        "mass_balance_lossy": visual.figure_mass_balance(target(lossy_trace)[0], id_to_text=vocab, dark=dark),
        "mass_balance_greedy": visual.figure_mass_balance(target(greedy_trace)[0], dark=dark),
        "gsp": visual.figure_gsp(make_plan(), current={"chain": [0, 2, 4], "buffers": [3, 8]}, dark=dark),
        "gsp_handmade": visual.figure_gsp(make_handmade_plan(), dark=dark),
        "exactness": visual.figure_exactness(make_lab(), dark=dark),
        "compare": visual.figure_compare(COMPARE, dark=dark),
        "regime": visual.figure_regime(make_regime(), dark=dark),
    }


def make_regime():
    """The regime map of a deep random profile (stacks pay in part of it)."""
    from hsd.plan.regime import regime_map
    from tests._profiles import random_profile

    return regime_map(random_profile(4, seed=3, style="deep", positions=True), "target cost ×", "adjacent α",
                      max_buffer=5)


def test_the_regime_map_writes_each_cells_gain_and_depth_marks_the_profile_and_draws_where_stacks_pay():
    rmap = make_regime()
    fig = visual.figure_regime(rmap)
    heat, contour, star = fig.data
    assert [list(r) for r in heat.z] == rmap.gain and heat.zmin == 1.0
    assert heat.text[0][0].startswith(f"{rmap.gain[0][0]:.2f}×")
    assert contour.contours.start == contour.contours.end == 1.01
    assert star.name == "this profile (measured)" and 0 <= star.x[0] <= len(rmap.xs) - 1
    assert list(fig.layout.xaxis.ticktext) == [f"×{x:g}" for x in rmap.xs]
    assert "When does a stack pay?" in fig.layout.title.text


def write_artifacts(out: pathlib.Path = ROOT / "artifacts" / "visual") -> list[pathlib.Path]:
    from plotly.offline import get_plotlyjs

    out.mkdir(parents=True, exist_ok=True)
    (out / "plotly.min.js").write_text(get_plotlyjs())
    paths = []
    for dark in (False, True):
        for name, fig in example_figures(dark).items():
            path = out / f"{name}_{'dark' if dark else 'light'}.html"
            bg = theme.background(dark)
            html = fig.to_html(include_plotlyjs="directory", full_html=True,
                               config={"responsive": True}, default_width="1200px")
            path.write_text(html.replace("<body>", f'<body style="margin:0;background:{bg}">'))
            paths.append(path)
    return paths


def screenshot(html: pathlib.Path, width: int = 1200) -> pathlib.Path | None:
    """PNG of one artifact with Debian's headless chromium (None when chromium is missing)."""
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    height = int((re.search(r'"height":(\d+)', html.read_text()) or [0, 600])[1]) + 20
    png = html.with_suffix(".png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=3000", f"--screenshot={png}", f"--window-size={width},{height}",
                    html.resolve().as_uri()], capture_output=True, timeout=120)
    return png


if __name__ == "__main__":
    # python tests/test_visual.py [--png]: example HTML (and PNG) of every figure, light and dark
    for p in write_artifacts():
        print(p, screenshot(p) if "--png" in sys.argv else "")
