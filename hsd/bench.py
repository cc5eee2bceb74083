"""``python -m hsd bench``: side-by-side speed against plain decoding and Hugging Face assisted
generation, in ONE run (issue 6).

Contenders (all on the same loaded family, same prompts, same device, same run):

- (a) the target alone with transformers ``generate`` — the autoregressive baseline;
- (b) transformers assisted generation (``assistant_model=``) with the drafter and draft length of
      (c): ``num_assistant_tokens`` fixed, ``num_assistant_tokens_schedule="constant"``,
      ``assistant_confidence_threshold`` off (0), so both propose exactly γ tokens per round;
- (c) this engine, the best single draft (drafter and γ from the optimiser over single drafts);
- (d) this engine, the optimiser's hierarchy (rule ``hsd``);
- (e) (d) with each other lossless verification rule (``token``, ``block``);
- (f) hand-picked hierarchies: the target alone through the engine (shallowest: separates the
      engine's per-token overhead from transformers'), the smallest drafter alone, and the deeper
      alternatives ``hsd.validate.pick_contenders`` chooses (best other stack, full stack).

Per temperature, every prompt × repeat runs every contender once, in an order rotated per
(prompt, repeat) so slow machine drift hits all alike; one warm-up decode per contender is
excluded.  Per run we time the whole call (wall clock, prefill included) and count forward passes
and their wall time per model through forward hooks (the engine and ``generate`` both call
``model(...)``), which gives tokens per target call for transformers' contenders and the share of
wall time spent OUTSIDE model forwards for everyone.  Summaries are medians; ratios such as
(c)/(b) are taken per (prompt, repeat) — both decoded the same prompt back to back — and reported
as median and min–max.  Greedy runs also check every contender's tokens against (a)'s.

End of sequence is ignored by default (every contender emits exactly ``max_new_tokens``: equal
work per run; transformers gets ``eos_token_id=None``, the engine ``stop_at_eos=False``).
transformers' own sampling uses the global torch RNG, so its runs are wrapped in
``torch.random.fork_rng`` (the caller's RNG state is untouched); the engine uses its generator.

Model-predicted ms/token comes from ``hsd.latency`` (OUR derivation) on the profile; there is none
for (b).  Numbers depend on the machine's load: run nothing else at the same time.

The figure is ``visual.bench.figure_bench(report)``, a pure function of the JSON report; this
module imports it only inside ``write_figure`` and never touches plotly itself.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from hsd.errors import ConfigError
from hsd.latency import expected_tokens_per_target_call
from hsd.optimize import Plan, best_for_chain, best_single_draft, optimal_hierarchy, plan_for
from hsd.profile import Profile
from hsd.verify import LOSSLESS_RULES

FORMAT = "hsd-bench/1"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
PROMPT_FILES = {"code": ASSETS / "prompts" / "code.txt", "natural": ASSETS / "prompts" / "natural.txt"}
ENGINE_RULE = "hsd"                  # (d) and the other engine contenders
QUICK = {"prompts": 2, "repeats": 1, "max_new_tokens": 32}

ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def parse_prompts(text: str) -> list[str]:
    """One prompt per line; ``\\n``, ``\\t`` and ``\\\\`` are unescaped; blank lines and lines
    starting with ``#`` are skipped."""
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


# --------------------------------------------------------------------------------------------
# contenders (plain data)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    key: str                        # "a", "b", "c", "d", "e-token", "f-ar", …
    group: str                      # "a".."f"
    label: str                      # what the table shows
    runner: str                     # "hf-generate" | "hf-assisted" | "engine"
    chain: tuple[int, ...]          # model indices, target last
    names: tuple[str, ...]
    buffers: tuple[int, ...]        # draft length(s); for (b) num_assistant_tokens
    rule: str | None                # engine verification rule (None for transformers)
    predicted_ms_per_token: float | None          # model-predicted (hsd.latency); None for (b)
    predicted_tokens_per_target_call: float | None

    @property
    def hierarchy(self) -> str:
        parts = [f"{n}[{b}]" for n, b in zip(self.names, self.buffers)]
        return " → ".join(parts + [self.names[-1]])


def _engine(key: str, group: str, label: str, profile: Profile, plan: Plan, rule: str = ENGINE_RULE) -> Contender:
    return Contender(key, group, label, "engine", plan.chain, plan.names, plan.buffers, rule,
                     plan.expected_ms_per_token,
                     expected_tokens_per_target_call(profile, plan.chain, plan.buffers))


def pick_contenders(profile: Profile, max_buffer: int = 16) -> list[Contender]:
    """(a)–(f) of the module docstring for ``profile``'s family (needs at least two models)."""
    from hsd.validate import pick_contenders as validate_picks

    if profile.target < 1:
        raise ConfigError("bench needs a family of at least two models (a drafter and a target)")
    k = profile.target
    ar = plan_for(profile, [k], [])
    single = best_single_draft(profile, max_buffer)
    optimum = optimal_hierarchy(profile, max_buffer=max_buffer, top=1, with_graph=False)
    out = [
        Contender("a", "a", "(a) transformers generate, target alone", "hf-generate", ar.chain, ar.names, (),
                  None, ar.expected_ms_per_token, 1.0),
        Contender("b", "b", "(b) transformers assisted generation", "hf-assisted", single.chain, single.names,
                  single.buffers, None, None,
                  expected_tokens_per_target_call(profile, single.chain, single.buffers)),
        _engine("c", "c", "(c) engine, best single draft", profile, single),
        _engine("d", "d", f"(d) engine, optimiser's hierarchy ({ENGINE_RULE})", profile, optimum),
    ]
    if len(optimum.chain) > 1:                      # rules only differ where something is verified
        out += [_engine(f"e-{r}", "e", f"(e) (d) with rule {r}", profile, optimum, rule=r)
                for r in LOSSLESS_RULES if r != ENGINE_RULE]
    seen = {(single.chain, single.buffers), (optimum.chain, optimum.buffers)}
    hand = [("f-ar", "(f) engine, target alone", ar)]
    smallest = best_for_chain(profile, (0, k), max_buffer)
    hand.append(("f-xs", "(f) engine, smallest draft alone", smallest))
    deeper = [c.plan for c in validate_picks(profile, max_buffer) if c.role == "deeper alternative"]
    hand += [(f"f-deep{i}", f"(f) engine, {p.kind}", p) for i, p in enumerate(deeper, start=1)]
    for key, label, plan in hand:
        if (plan.chain, plan.buffers) not in seen:
            seen.add((plan.chain, plan.buffers))
            out.append(_engine(key, "f", label, profile, plan))
    return out


# --------------------------------------------------------------------------------------------
# measuring one decode
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One timed decode (wall clock) of one contender on one prompt."""

    contender: str
    prompt: int
    repeat: int
    n_tokens: int
    wall_ms: float                  # whole call, prefill included
    target_calls: int               # target forwards that produced tokens
    forward_calls: tuple[int, ...]  # per family model, prefill included
    forward_ms: tuple[float, ...]   # per family model
    token_ids: tuple[int, ...]

    @property
    def tokens_per_s(self) -> float:
        return 1000.0 * self.n_tokens / self.wall_ms if self.wall_ms > 0 else float("nan")

    @property
    def outside_forward_share(self) -> float:
        """Share of the wall time NOT spent inside a model forward (engine/framework overhead)."""
        return 1.0 - sum(self.forward_ms) / self.wall_ms if self.wall_ms > 0 else float("nan")


class ForwardMeter:
    """Counts forward passes and their wall time per model through forward hooks.  Synchronises
    CUDA around each forward so the time is honest on asynchronous devices."""

    def __init__(self, models: Sequence, device):
        self.models = list(models)
        self.sync = _synchronizer(device)
        self.calls = [0] * len(self.models)
        self.ms = [0.0] * len(self.models)
        self._t0 = [0.0] * len(self.models)
        self._handles = []

    def __enter__(self) -> "ForwardMeter":
        for i, m in enumerate(self.models):
            self._handles.append(m.register_forward_pre_hook(self._pre(i)))
            self._handles.append(m.register_forward_hook(self._post(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre(self, i: int):
        def hook(module, args):
            self.sync()
            self._t0[i] = time.perf_counter()
        return hook

    def _post(self, i: int):
        def hook(module, args, output):
            self.sync()
            self.ms[i] += (time.perf_counter() - self._t0[i]) * 1000.0
            self.calls[i] += 1
        return hook

    def snapshot(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        return tuple(self.calls), tuple(self.ms)


def _synchronizer(device) -> Callable[[], None]:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@contextlib.contextmanager
def assistant_settings(model, num_assistant_tokens: int):
    """Give ``model`` (the assistant) a private generation config for one call: a fixed number of
    draft tokens per round, constant schedule, confidence-threshold early stop off.  transformers
    reads these from the ASSISTANT's ``generation_config``; the original is restored afterwards."""
    saved = model.generation_config
    cfg = copy.deepcopy(saved)
    cfg.num_assistant_tokens = int(num_assistant_tokens)
    cfg.num_assistant_tokens_schedule = "constant"
    cfg.assistant_confidence_threshold = 0.0            # 0 = off (ConfidenceCriteria needs > 0)
    model.generation_config = cfg
    try:
        yield
    finally:
        model.generation_config = saved


@dataclass(frozen=True)
class Decode:
    """What one decode is asked to do (the same for every contender of a run)."""

    prompt_text: str
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    seed: int
    stop_at_eos: bool


def hf_kwargs(job: Decode, tokenizer) -> dict:
    """``generate`` keyword arguments matching the engine's settings: greedy at temperature 0,
    else plain sampling at ``temperature`` (top-k and top-p off, as the engine's defaults)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    kwargs = dict(max_new_tokens=job.max_new_tokens, min_new_tokens=0,
                  eos_token_id=eos if job.stop_at_eos else None,
                  pad_token_id=pad if pad is not None else (eos if eos is not None else 0))
    if job.temperature > 0:
        kwargs.update(do_sample=True, temperature=float(job.temperature), top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    return kwargs


def make_runner(family, contender: Contender, meter: ForwardMeter) -> Callable[[Decode], tuple]:
    """``runner(job) -> (token_ids, wall_ms, target_calls)`` for one contender."""
    import torch

    sync = _synchronizer(family.device)
    target_index = contender.chain[-1]
    if contender.runner == "engine":
        from hsd.engine import Hierarchy

        h = Hierarchy.from_family(family, chain=list(contender.chain), buffers=list(contender.buffers),
                                  rules=contender.rule)

        def run_engine(job: Decode):
            sync()
            t0 = time.perf_counter()
            result = h.generate(job.prompt_text, max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                                seed=job.seed, stop_at_eos=job.stop_at_eos)
            sync()
            wall = (time.perf_counter() - t0) * 1000.0
            return tuple(result.token_ids), wall, result.trace.summary().target_calls
        return run_engine

    target = family.models[target_index]
    assistant = family.models[contender.chain[0]] if contender.runner == "hf-assisted" else None
    gamma = contender.buffers[0] if assistant is not None else 0
    devices = [family.device] if torch.device(family.device).type == "cuda" else []

    def run_hf(job: Decode):
        ids = torch.tensor([list(job.prompt_ids)], dtype=torch.long, device=family.device)
        kwargs = hf_kwargs(job, family.tokenizer)
        calls0 = meter.calls[target_index]
        settings = assistant_settings(assistant, gamma) if assistant is not None else contextlib.nullcontext()
        with settings, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(job.seed)
            if assistant is not None:
                kwargs["assistant_model"] = assistant
            sync()
            t0 = time.perf_counter()
            out = target.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            sync()
            wall = (time.perf_counter() - t0) * 1000.0
        new = out[0, ids.shape[1]:].tolist()
        return tuple(new), wall, meter.calls[target_index] - calls0
    return run_hf


def _timed(runner, meter: ForwardMeter, contender: Contender, job: Decode, prompt: int, repeat: int) -> Run:
    calls0, ms0 = meter.snapshot()
    token_ids, wall, target_calls = runner(job)
    calls1, ms1 = meter.snapshot()
    return Run(contender.key, prompt, repeat, len(token_ids), wall, int(target_calls),
               tuple(b - a for a, b in zip(calls0, calls1)), tuple(b - a for a, b in zip(ms0, ms1)),
               tuple(int(t) for t in token_ids))


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------
def rotated(items: Sequence, shift: int) -> list:
    """``items`` starting at position ``shift`` (wrapping): a different order per round."""
    shift %= max(len(items), 1)
    return list(items[shift:]) + list(items[:shift])


def spread(values: Sequence[float]) -> dict:
    """median, min and max (and how many) of finite values; NaN when there are none."""
    vals = [v for v in values if v == v]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def paired_ratios(runs: dict[str, dict[tuple[int, int], Run]], num: str, den: str) -> list[float]:
    """tokens/s of ``num`` over ``den`` for every (prompt, repeat) both ran (wall clock)."""
    a, b = runs.get(num, {}), runs.get(den, {})
    return [a[k].tokens_per_s / b[k].tokens_per_s for k in sorted(a) if k in b]


def first_mismatch(ids: Sequence[int], reference: Sequence[int]) -> int | None:
    """Index of the first token where ``ids`` differs from ``reference`` (None if identical)."""
    for i, (x, y) in enumerate(zip(ids, reference)):
        if x != y:
            return i
    return None if len(ids) == len(reference) else min(len(ids), len(reference))


def summarise(contenders: Sequence[Contender], runs: dict[str, dict[tuple[int, int], Run]],
              temperature: float, family_names: Sequence[str]) -> dict:
    """Per-contender rows and the headline ratios for one temperature (plain data)."""
    greedy = temperature == 0
    reference = runs.get("a", {})
    rows = []
    for c in contenders:
        rs = runs.get(c.key, {})
        if not rs:
            continue
        runs_list = [rs[k] for k in sorted(rs)]
        n_tokens = sum(r.n_tokens for r in runs_list)
        target_calls = sum(r.target_calls for r in runs_list)
        tps = spread([r.tokens_per_s for r in runs_list])
        mismatches = []
        if greedy and reference:
            for k in sorted(rs):
                if k in reference:
                    at = first_mismatch(rs[k].token_ids, reference[k].token_ids)
                    if at is not None:
                        mismatches.append({"prompt": k[0], "repeat": k[1], "first_diff_at": at})
        per_model = [sum(r.forward_calls[m] for r in runs_list) / n_tokens if n_tokens else float("nan")
                     for m in range(len(family_names))]
        rows.append({
            **asdict(c), "hierarchy": c.hierarchy,
            "tokens_per_s": tps,                                           # wall clock
            "ms_per_token": 1000.0 / tps["median"] if tps["median"] == tps["median"] else float("nan"),
            "speedup_vs_a": spread(paired_ratios(runs, c.key, "a")),       # wall clock, paired
            "predicted_speedup_vs_a": (reference_pred(contenders) / c.predicted_ms_per_token
                                       if c.predicted_ms_per_token else None),
            "tokens_per_target_call": n_tokens / target_calls if target_calls else float("nan"),
            "outside_forward_share": spread([r.outside_forward_share for r in runs_list]),
            "forwards_per_token": dict(zip(family_names, per_model)),
            "greedy_equal_to_a": (not mismatches) if greedy and reference else None,
            "greedy_mismatches": mismatches,
            "n_runs": len(runs_list), "n_tokens": n_tokens,
        })
    ratios = {"c/b": spread(paired_ratios(runs, "c", "b")), "d/c": spread(paired_ratios(runs, "d", "c")),
              "b/a": spread(paired_ratios(runs, "b", "a")), "c/a": spread(paired_ratios(runs, "c", "a")),
              "d/a": spread(paired_ratios(runs, "d", "a"))}
    return {"temperature": temperature, "greedy": greedy, "rows": rows, "ratios": ratios,
            "runs": [asdict(r) for rs in runs.values() for r in rs.values()]}


def reference_pred(contenders: Sequence[Contender]) -> float:
    return next(c.predicted_ms_per_token for c in contenders if c.key == "a")


def bench(family, profile: Profile, prompts: Sequence[str], *, max_new_tokens: int = 128,
          temperatures: Sequence[float] = (0.0, 1.0), repeats: int = 3, seed: int = 0, max_buffer: int = 16,
          stop_at_eos: bool = False, warmup_tokens: int = 16, progress: ProgressFn | None = None) -> dict:
    """Run every contender on every prompt × repeat at every temperature; return the report."""
    _check_inputs(family, profile, prompts, max_new_tokens, temperatures, repeats)
    contenders = pick_contenders(profile, max_buffer)
    prompt_ids = [tuple(family.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    _check_lengths(family, prompts, prompt_ids, max_new_tokens)
    sections = []
    total = len(temperatures) * len(prompts) * repeats * len(contenders)
    done = 0
    with ForwardMeter(family.models, family.device) as meter:
        runners = {c.key: make_runner(family, c, meter) for c in contenders}
        for temperature in temperatures:
            # 1) warm-up (excluded): allocations, first-call paths, caches
            for c in contenders:
                runners[c.key](Decode(prompts[0], prompt_ids[0], min(warmup_tokens, max_new_tokens),
                                      temperature, seed, stop_at_eos))
            # 2) interleaved timed runs, order rotated per (prompt, repeat)
            runs: dict[str, dict[tuple[int, int], Run]] = {c.key: {} for c in contenders}
            for p, r in itertools.product(range(len(prompts)), range(repeats)):
                job = Decode(prompts[p], prompt_ids[p], max_new_tokens, temperature,
                             seed + 1000 * p + r, stop_at_eos)
                for c in rotated(contenders, p * repeats + r):
                    runs[c.key][p, r] = _timed(runners[c.key], meter, c, job, p, r)
                    done += 1
                    if progress:
                        progress(done, total, f"T={temperature:g} {c.label[:34]}")
            sections.append(summarise(contenders, runs, temperature, family.names))
    return {"format": FORMAT, "meta": run_meta(family, profile, prompts, max_new_tokens, repeats, seed,
                                               max_buffer, stop_at_eos),
            "contenders": [asdict(c) | {"hierarchy": c.hierarchy} for c in contenders],
            "prompts": list(prompts), "sections": sections}


def _check_inputs(family, profile, prompts, max_new_tokens, temperatures, repeats) -> None:
    if list(profile.models) != list(family.names):
        raise ConfigError(f"the profile is for models {profile.models} but the family has {list(family.names)}: "
                          "measure a profile of this family with `python -m hsd profile`")
    if not prompts:
        raise ConfigError("bench needs at least one prompt")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max new tokens must be a whole number ≥ 1, got {max_new_tokens!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a whole number ≥ 1, got {repeats!r}")
    if not temperatures or any(not (t >= 0) or t == float("inf") for t in temperatures):
        raise ConfigError(f"temperatures must be numbers ≥ 0 (0 = greedy), got {list(temperatures)}")


def _check_lengths(family, prompts, prompt_ids, max_new_tokens) -> None:
    windows = [int(getattr(m.config, "max_position_embeddings", 0) or 0) for m in family.models]
    window = min([w for w in windows if w] or [10 ** 9])
    for text, ids in zip(prompts, prompt_ids):
        if not ids:
            raise ConfigError(f"the prompt {text[:40]!r} encodes to zero tokens")
        if len(ids) + max_new_tokens > window:
            raise ConfigError(f"the prompt {text[:40]!r} ({len(ids)} tokens) + {max_new_tokens} new tokens exceeds "
                              f"the models' {window}-token window: lower --max-new-tokens or shorten the prompt")


def run_meta(family, profile, prompts, max_new_tokens, repeats, seed, max_buffer, stop_at_eos) -> dict:
    import platform

    import torch
    import transformers

    tok = family.tokenizer
    device = str(family.device)
    if torch.device(device).type == "cuda":
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device,
            "device_name": device_name, "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), "load_avg_start": _loadavg(),
            "family": getattr(family, "spec", ""), "models": list(family.names),
            "profile_meta": profile.meta, "max_new_tokens": max_new_tokens, "repeats": repeats,
            "n_prompts": len(prompts), "seed": seed, "max_buffer": max_buffer,
            "eos": {"stop_at_eos": stop_at_eos, "eos_token_id": getattr(tok, "eos_token_id", None),
                    "pad_token_id": getattr(tok, "pad_token_id", None),
                    "note": "eos ignored: every decode emits max_new_tokens (transformers: eos_token_id=None; "
                            "engine: stop_at_eos=False)" if not stop_at_eos else
                            "every contender stops at the tokenizer's eos"},
            "tokenizer": {"class": type(tok).__name__, "vocab_size": family.vocab_size,
                          "add_special_tokens": False},
            "hf_assisted": {"num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.0,
                            "sampling": "do_sample=True, top_k=0, top_p=1.0 (speculative sampling, token rule)"},
            "timing": "wall clock of the whole call (prefill included); medians over prompts × repeats; "
                      "warm-up decode per contender excluded; contender order rotated per (prompt, repeat)",
            "predicted": "model-predicted ms/token: hsd.latency (our derivation) on the profile"}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# report: table and figure
# --------------------------------------------------------------------------------------------
def _fmt_spread(s: dict, digits: int = 2, suffix: str = "") -> str:
    if not s or s.get("n", 0) == 0:
        return "n/a"
    return f"{s['median']:.{digits}f}{suffix} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _fmt(x, spec: str, none: str = "n/a") -> str:
    return none if x is None or x != x else format(x, spec)


def format_section(section: dict) -> str:
    t = section["temperature"]
    title = "greedy (T=0)" if section["greedy"] else f"sampled (T={t:g})"
    head = (f"{'contender':<42} {'hierarchy':<34} {'tok/s wall clock':>22} {'×(a) wall clock':>20} "
            f"{'tok/target call':>15} {'ms/tok model-pred.':>18} {'ms/tok wall clock':>17} "
            f"{'outside fwd (wall clock)':>24} {'= (a) greedy':>12}")
    lines = [f"== {title} ==", head]
    for r in section["rows"]:
        eq = "—" if r["greedy_equal_to_a"] is None else ("yes" if r["greedy_equal_to_a"] else "NO")
        lines.append(
            f"{r['label']:<42} {r['hierarchy']:<34} {_fmt_spread(r['tokens_per_s'], 1):>22} "
            f"{_fmt_spread(r['speedup_vs_a'], 2, '×'):>20} {_fmt(r['tokens_per_target_call'], '.2f'):>15} "
            f"{_fmt(r['predicted_ms_per_token'], '.2f'):>18} {_fmt(r['ms_per_token'], '.2f'):>17} "
            f"{_fmt(100 * r['outside_forward_share']['median'], '.0f') + '%':>24} {eq:>12}")
    q = section["ratios"]
    lines.append(f"ratios of tokens/s (wall clock), median (min–max) over {q['c/b']['n']} paired prompt×repeat runs: "
                 f"(c)/(b) = {_fmt_spread(q['c/b'], 2, '×')}   (d)/(c) = {_fmt_spread(q['d/c'], 2, '×')}   "
                 f"(b)/(a) = {_fmt_spread(q['b/a'], 2, '×')}")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    m = report["meta"]
    lines = [f"hsd bench · {m['date_utc']} · device {m['device']} ({m['device_name']}) · torch {m['torch']} · "
             f"transformers {m['transformers']}",
             f"family {m['family']}: {', '.join(m['models'])} · {m['n_prompts']} prompts × {m['repeats']} repeats · "
             f"{m['max_new_tokens']} new tokens · {m['eos']['note']}",
             "tok/s and ×(a): wall clock, median (min–max) over prompts × repeats, ×(a) paired per prompt; "
             "ms/tok model-predicted: hsd.latency on the profile (our derivation); outside fwd: share of wall "
             "clock outside model forward passes", ""]
    for section in report["sections"]:
        lines += [format_section(section), ""]
    pt = m["profile_meta"].get("temperature")
    if pt is not None:
        lines.append(f"(profile acceptance measured at T={pt:g}; predictions use it at every temperature)")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The same tables as ``format_report`` in Markdown (for README / RESULTS files)."""
    m = report["meta"]
    lines = [f"Device: {m['device']} ({m['device_name']}), {m['date_utc']}; torch {m['torch']}, "
             f"transformers {m['transformers']}. Family: {', '.join(m['models'])}. "
             f"{m['n_prompts']} prompts × {m['repeats']} repeats × {m['max_new_tokens']} new tokens; "
             f"{m['eos']['note']}.", ""]
    if m.get("command"):
        lines += [f"Command: `{m['command']}`", ""]
    for s in report["sections"]:
        title = "Greedy (T=0)" if s["greedy"] else f"Sampled (T={s['temperature']:g})"
        lines += [f"**{title}**", "",
                  "| contender | hierarchy | tokens/s (wall clock), median (min–max) | speedup vs (a) (wall clock) "
                  "| tokens / target call | ms/token (model-predicted) | ms/token (wall clock) "
                  "| outside forwards (wall clock) | = (a) greedy |",
                  "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
        for r in s["rows"]:
            eq = "—" if r["greedy_equal_to_a"] is None else ("yes" if r["greedy_equal_to_a"] else "**no**")
            lines.append(f"| {r['label']} | {r['hierarchy']} | {_fmt_spread(r['tokens_per_s'], 1)} "
                         f"| {_fmt_spread(r['speedup_vs_a'], 2, '×')} | {_fmt(r['tokens_per_target_call'], '.2f')} "
                         f"| {_fmt(r['predicted_ms_per_token'], '.2f')} | {_fmt(r['ms_per_token'], '.2f')} "
                         f"| {_fmt(100 * r['outside_forward_share']['median'], '.0f')}% | {eq} |")
        q = s["ratios"]
        lines += ["", f"Paired ratios of tokens/s (wall clock), median (min–max) over {q['c/b']['n']} prompt × repeat "
                      f"runs: **(c)/(b) = {_fmt_spread(q['c/b'], 2, '×')}**, **(d)/(c) = {_fmt_spread(q['d/c'], 2, '×')}**, "
                      f"(b)/(a) = {_fmt_spread(q['b/a'], 2, '×')}, (c)/(a) = {_fmt_spread(q['c/a'], 2, '×')}.", ""]
    return "\n".join(lines)


def write_figure(report: dict, html_path, plotlyjs: str = "embed") -> list[str]:
    """Write the figure as HTML and, when kaleido is installed, as PNG next to it.  ``plotlyjs``:
    "embed" (self-contained, works offline, ~5 MB) or "cdn" (small; the browser fetches plotly.js)."""
    from visual.bench import figure_bench       # the one lazy hsd -> visual import (tests/test_layers.py)

    fig = figure_bench(report)
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(html_path), include_plotlyjs=True if plotlyjs == "embed" else "cdn", full_html=True)
    written = [str(html_path)]
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return written
    png = html_path.with_suffix(".png")
    try:
        fig.write_image(str(png), width=1400, scale=1)
        written.append(str(png))
    except Exception as e:  # kaleido present but no browser: HTML only, say so
        print(f"note: PNG not written ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
              file=sys.stderr)
    return written


# --------------------------------------------------------------------------------------------
# CLI: python -m hsd bench
# --------------------------------------------------------------------------------------------
def _floats(text: str) -> list[float]:
    import argparse

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one temperature")
    return values


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="speed vs transformers generate and assisted generation, in one run",
        description="Side-by-side wall-clock speed: (a) transformers generate, (b) transformers assisted "
                    "generation, (c) this engine with the best single draft, (d) the optimiser's hierarchy, "
                    "(e) each verification rule on (d), (f) hand-picked hierarchies; interleaved per prompt.")
    p.add_argument("--family", default="bundled", help="model family (default: bundled)")
    p.add_argument("--profile", default=None, help="profile JSON (default: assets/profile-<family>.json)")
    p.add_argument("--prompts", default=None,
                   help="prompts file, one per line, \\n escapes allowed (default: assets/prompts/code.txt "
                        "for the bundled family, natural.txt otherwise)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens per decode (default 128; 32 with --quick)")
    p.add_argument("--temperature", type=_floats, default=[0.0, 1.0],
                   help="one or more comma-separated temperatures; 0 = greedy (default 0,1)")
    p.add_argument("--repeats", type=int, default=None, help="runs per prompt and contender (default 3; 1 with --quick)")
    p.add_argument("--max-prompts", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--max-buffer", type=int, default=16, help="largest buffer the optimiser considers (default 16)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop every contender at eos (default: ignore eos)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the full report (every run) as JSON to this path")
    p.add_argument("--html", default=None, help="write the Plotly figure as HTML (and PNG when kaleido is installed)")
    p.add_argument("--plotlyjs", choices=["embed", "cdn"], default="embed",
                   help="HTML: embed plotly.js (works offline, default) or load it from its CDN (small file)")
    p.add_argument("--markdown", default=None, help="write the tables as Markdown to this path")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['prompts']} prompts × {QUICK['repeats']} repeat × {QUICK['max_new_tokens']} tokens")
    p.set_defaults(func=run)


def _profile_path(args) -> Path:
    if args.profile:
        path = Path(args.profile)
    elif args.family.isidentifier():
        path = ASSETS / f"profile-{args.family}.json"
    else:
        raise ConfigError("bench needs --profile PATH for a family given as folders or hub ids")
    if not path.exists():
        raise ConfigError(f"no profile at {path}: measure one with "
                          f"`python -m hsd profile --family {args.family} --out {path}`")
    return path


def command_line(args) -> str:
    """The ``python -m hsd bench …`` line that reproduces this run (for the report)."""
    parts = ["python -m hsd bench", f"--family {args.family}"]
    for flag in ("profile", "prompts", "max_new_tokens", "repeats", "max_prompts", "device", "json", "html",
                 "markdown"):
        value = getattr(args, flag)
        if value is not None:
            parts.append(f"--{flag.replace('_', '-')} {value}")
    parts.append("--temperature " + ",".join(f"{t:g}" for t in args.temperature))
    if args.max_buffer != 16:
        parts.append(f"--max-buffer {args.max_buffer}")
    if args.html and args.plotlyjs != "embed":
        parts.append(f"--plotlyjs {args.plotlyjs}")
    parts += ["--stop-at-eos"] * bool(args.stop_at_eos) + ["--quick"] * bool(args.quick)
    return " ".join(parts)


def run(args) -> int:
    import torch
    from hsd.models import load_family
    from hsd.profile import _progress_bar

    if args.threads:
        torch.set_num_threads(args.threads)
    profile_path = _profile_path(args)
    profile = Profile.load(profile_path)
    prompts_path = Path(args.prompts) if args.prompts else default_prompts_path(args.family)
    prompts = load_prompts(prompts_path)
    max_prompts = QUICK["prompts"] if args.quick and args.max_prompts is None else args.max_prompts
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    repeats = args.repeats or (QUICK["repeats"] if args.quick else 3)
    max_new = args.max_new_tokens or (QUICK["max_new_tokens"] if args.quick else 128)
    family = load_family(args.family, device=args.device)
    report = bench(family, profile, prompts, max_new_tokens=max_new, temperatures=args.temperature,
                   repeats=repeats, seed=args.seed, max_buffer=args.max_buffer, stop_at_eos=args.stop_at_eos,
                   progress=_progress_bar())
    report["meta"].update(profile=str(profile_path), prompts_file=str(prompts_path),
                          command=command_line(args),
                          load_avg_end=_loadavg())
    print(file=sys.stderr)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(format_markdown(report) + "\n", encoding="utf-8")
    if args.html:
        for path in write_figure(report, args.html, args.plotlyjs):
            print(f"wrote {path}", file=sys.stderr)
    return 0
