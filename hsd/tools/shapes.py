"""Costs of real model shapes on this machine: build models of a real family's published shapes
with random weights (cost depends on shape, not on weight values), time their forwards through
the engine's level, and write a profile whose acceptances are ASSUMED (a documented preset, or
the user's own):

    hsd shapes --family smollm2 --out profile.json [--preset close] [--dtype bf16] [--max-n 9]

The shapes are ``assets/shapes/<family>.json`` (the published config.json numbers: layers, widths,
heads, vocabulary; no weights).  Each model is built, timed and freed in turn (one in memory at a
time), after a check that it fits in the memory available.  The profile says what it is:
``meta["costs"]`` = measured with random weights, ``meta["acceptance"]`` = assumed.  A one-token
call's extra cost after another model (``first_call_ms``) is not measured here (models are timed
one at a time).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Sequence

from hsd.errors import ConfigError
from hsd.plan.profile import Profile
from hsd.tools.paths import ASSETS, save_or_rescue
from hsd.tools.progress import ProgressFn

SHAPES_DIR = ASSETS / "shapes"
FORMAT = "hsd-shapes/1"
# Assumed, not measured: neighbours in size (2-5× apart) and models two sizes apart.  Greedy
# agreement of same-family siblings is typically 0.7-0.9; these bracket it.
ACCEPTANCE_PRESETS = {
    "close": {"adjacent": 0.85, "apart": 0.75,
              "about": "siblings that agree often: α 0.85 between neighbours, 0.75 two sizes apart"},
    "distant": {"adjacent": 0.70, "apart": 0.60,
                "about": "siblings that agree less: α 0.70 between neighbours, 0.60 two sizes apart"},
}
BYTES = {"fp32": 4, "bf16": 2}
MEMORY_MARGIN = 1.25            # weights + activations, KV tensors and the allocator's slack


def shape_families() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def load_shapes(family: str) -> dict:
    path = SHAPES_DIR / f"{family}.json"
    if not path.exists():
        raise ConfigError(f"no shapes named {family!r}; shipped: {', '.join(shape_families())}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT or not data.get("models"):
        raise ConfigError(f"{path} is not an {FORMAT} file with models")
    return data


def param_count(config: dict) -> int:
    """Parameters of a Llama/Qwen2-style decoder with these numbers (embeddings tied or not)."""
    d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or d // heads
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2
    if config.get("model_type") == "qwen2":
        attn += heads * head_dim + 2 * kv * head_dim                  # q/k/v biases
    layer = attn + 3 * d * f + 2 * d
    embed = v * d * (1 if config.get("tie_word_embeddings", True) else 2)
    return config["num_hidden_layers"] * layer + embed + d


def available_bytes() -> int:
    """Memory the OS says is available (Linux /proc/meminfo; else os.sysconf)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


GGUF_OF = {"bf16": "f16", "fp32": "f32"}       # the GGUF twin's matrices: the same bytes per weight
RUNTIMES = {"auto": "PyTorch (the lean forward)", "lean": "PyTorch (the lean forward)",
            "hf": "PyTorch (transformers)", "llamacpp": "llama.cpp"}


def check_fits(name: str, config: dict, dtype: str, forwards: Sequence[str] = ("auto",)) -> None:
    """Refuse a model that would not fit: its torch weights, plus a GGUF twin's where llama.cpp
    times it too (written to a temporary file and mapped while it is timed)."""
    per_weight = BYTES[dtype] * (2 if "llamacpp" in forwards else 1)
    need = param_count(config) * per_weight * MEMORY_MARGIN
    have = available_bytes()
    if need > have:
        also = " and its llama.cpp copy" if "llamacpp" in forwards else ""
        raise ConfigError(f"{name} needs about {need / 2**30:.1f} GiB in {dtype} with random weights{also}, but "
                          f"{have / 2**30:.1f} GiB is available: try --dtype bf16 or a smaller family")


def scaled(config: dict, scale: float) -> dict:
    """A scaled-down copy (layers and widths × ``scale``, heads kept dividing the width): for tests."""
    if scale == 1.0:
        return dict(config)
    c = dict(config)
    heads = max(1, round(c["num_attention_heads"] * scale))
    kv = max(1, min(heads, round(c["num_key_value_heads"] * scale)))
    while heads % kv:
        kv -= 1
    head_dim = max(8, (c["hidden_size"] // c["num_attention_heads"]))
    c.update(num_attention_heads=heads, num_key_value_heads=kv, hidden_size=heads * head_dim,
             intermediate_size=max(16, round(c["intermediate_size"] * scale)),
             num_hidden_layers=max(1, round(c["num_hidden_layers"] * scale)),
             vocab_size=max(64, round(c["vocab_size"] * scale)))
    return c


def build_random(config: dict, dtype: str = "bf16", seed: int = 0):
    """A model of this shape with random N(0, 0.02) weights, built without the slow per-module
    initialisation (allocated empty, then filled)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k != "model_type"}
    cfg = AutoConfig.for_model(config["model_type"], **fields)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        model.model.rotary_emb.__init__(cfg)                         # its tables, not meta leftovers
    model.tie_weights()
    return model.eval()


def measure_shapes(family: str, *, preset: str = "close", acceptance: Sequence[Sequence[float]] | None = None,
                   dtype: str = "bf16", max_n: int = 9, repeats: int = 5, context_tokens: int = 64,
                   scale: float = 1.0, progress: ProgressFn | None = None, forward: str = "auto") -> Profile:
    """The profile (see the module docstring); ``acceptance``: the user's matrix, else ``preset``."""
    return measure_shapes_on(family, [forward], preset=preset, acceptance=acceptance, dtype=dtype, max_n=max_n,
                             repeats=repeats, context_tokens=context_tokens, scale=scale, progress=progress)[0]


def measure_shapes_on(family: str, forwards: Sequence[str], *, preset: str = "close",
                      acceptance: Sequence[Sequence[float]] | None = None, dtype: str = "bf16", max_n: int = 9,
                      repeats: int = 5, context_tokens: int = 64, scale: float = 1.0,
                      progress: ProgressFn | None = None) -> list[Profile]:
    """One profile per forward path (``"llamacpp"``: the model's GGUF twin, f16 for bf16 weights,
    f32 for fp32, run by llama.cpp), each model built ONCE with the same random weights and timed
    on every runtime in turn, so the runtimes' costs compare shape for shape.  1) check the
    request, 2) time every model on every runtime, 3) one profile per runtime."""
    from hsd.levels import check_forward

    if dtype not in BYTES:                                                                         # 1)
        raise ConfigError(f"dtype must be one of {', '.join(BYTES)}, got {dtype!r}")
    if acceptance is None and preset not in ACCEPTANCE_PRESETS:
        raise ConfigError(f"unknown acceptance preset {preset!r}; presets: {', '.join(ACCEPTANCE_PRESETS)}")
    forwards = list(dict.fromkeys(forwards))
    for forward in forwards:
        check_forward(forward)
    shapes = load_shapes(family)
    models = shapes["models"]
    names = [m["name"] for m in models]
    configs = [scaled(m["config"], scale) for m in models]
    costs = _time_shapes(names, configs, forwards, dtype=dtype, max_n=max_n, repeats=repeats,              # 2)
                         context_tokens=context_tokens, progress=progress)
    matrix = assumed_acceptance(len(names), preset) if acceptance is None else [list(r) for r in acceptance]  # 3)
    about = ACCEPTANCE_PRESETS[preset]["about"] if acceptance is None else "set by the user"
    out = []
    for forward in forwards:
        meta = _shapes_meta(family, shapes, forward, dtype=dtype, scale=scale, repeats=repeats, max_n=max_n,
                            about=about)
        out.append(Profile(models=names, cost_ms=costs[forward], acceptance=[list(r) for r in matrix], meta=meta))
    return out


def _time_shapes(names: list[str], configs: list[dict], forwards: list[str], *, dtype: str, max_n: int,
                 repeats: int, context_tokens: int, progress: ProgressFn | None) -> dict[str, dict[str, list[float]]]:
    """Per runtime, per model: ms by block length, each model built once with random weights."""
    import gc
    import tempfile

    import torch

    costs: dict[str, dict[str, list[float]]] = {f: {} for f in forwards}
    steps = len(names) * len(forwards)
    with tempfile.TemporaryDirectory(prefix="hsd-shapes-") as tmp:
        for i, (name, config) in enumerate(zip(names, configs)):
            check_fits(name, config, dtype, forwards)
            if progress:
                progress(i * len(forwards), steps, f"building {name} with random weights")
            model = build_random(config, dtype, seed=i)
            context = torch.randint(config["vocab_size"], (context_tokens,),
                                    generator=torch.Generator().manual_seed(i)).tolist()
            for j, forward in enumerate(forwards):
                if progress:
                    progress(i * len(forwards) + j, steps, f"timing {name} on {RUNTIMES[forward]}")
                costs[forward][name] = _time_one(model, name, config, forward, context, Path(tmp) / f"{i}.gguf",
                                                 dtype=dtype, max_n=max_n, repeats=repeats, seed=i)
                gc.collect()
            del model
            gc.collect()
    if progress:
        progress(steps, steps, "done")
    return costs


def _time_one(model, name: str, config: dict, forward: str, context: list[int], gguf_path: Path, *, dtype: str,
              max_n: int, repeats: int, seed: int) -> list[float]:
    """One model's ms by block length on one runtime (its GGUF twin written, timed and removed
    for llama.cpp)."""
    from hsd.levels import SamplingSettings, build_level
    from hsd.tools.measure import measure_costs

    twin = None
    if forward == "llamacpp":
        twin = _gguf_twin(model, gguf_path, GGUF_OF[dtype], len(context) + max_n + 8, name)
        level = twin.make_level(name=name, vocab_size=config["vocab_size"], settings=SamplingSettings())
    else:
        level = build_level(model, name=name, vocab_size=config["vocab_size"], settings=SamplingSettings(),
                            forward=forward)
    try:
        found, _ = measure_costs([level], context, max_n=max_n, repeats=repeats, warmup=1, seed=seed)
        return found[name]
    finally:
        del level
        if twin is not None:
            twin.close()
            twin.path.unlink(missing_ok=True)


def _shapes_meta(family: str, shapes: dict, forward: str, *, dtype: str, scale: float, repeats: int, max_n: int,
                 about: str) -> dict:
    import torch

    weights = f"{GGUF_OF[dtype]} GGUF" if forward == "llamacpp" else dtype
    return {"shapes": family, "source": shapes["source"], "dtype": dtype, "scale": scale,
            "torch_threads": torch.get_num_threads(), "repeats": repeats, "max_n": max_n,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "temperature": 1.0,
            "forward": forward, "runtime": f"{RUNTIMES[forward]}, {weights} weights",
            "costs": f"measured with random weights on this machine, {RUNTIMES[forward]} "
                     "(cost depends on shape, not weights)",
            "acceptance": f"assumed, not measured: {about}", "hub_ids": [m["hub_id"] for m in shapes["models"]]}


def _gguf_twin(model, path: Path, gguf_type: str, n_ctx: int, name: str):
    """The random model written as GGUF (placeholder vocabulary: only ids are timed) and loaded
    by llama.cpp with a context just long enough for the timing."""
    from hsd.levels.ggml import GGUFModel
    from hsd.levels.gguf_export import export_gguf

    export_gguf(model, None, path, dtype=gguf_type, name=name)
    return GGUFModel(path, n_ctx=n_ctx, name=name)


def assumed_acceptance(n: int, preset: str) -> list[list[float]]:
    p = ACCEPTANCE_PRESETS[preset]
    return [[1.0 if i == j else p["adjacent"] if abs(i - j) == 1 else p["apart"] for j in range(n)] for i in range(n)]


def run(args) -> int:
    import torch

    from hsd.tools.progress import progress_bar

    if args.threads:
        torch.set_num_threads(args.threads)
    forwards = [args.forward] + (["llamacpp"] if args.compare_llamacpp and args.forward != "llamacpp" else [])
    profiles = measure_shapes_on(args.family, forwards, preset=args.preset, dtype=args.dtype, max_n=args.max_n,
                                 repeats=args.repeats, progress=progress_bar())
    profile = profiles[0]
    if not save_or_rescue(args.out, profile.save, "profile"):
        return 2
    print(f"\nwrote {args.out}", file=sys.stderr)
    print(f"costs measured with random weights ({args.dtype}, {torch.get_num_threads()} threads); "
          f"acceptance assumed ({args.preset})")
    print(runtime_table(profiles))
    return 0


def runtime_table(profiles: Sequence[Profile]) -> str:
    """Per model, c(1) and c(max n) on each runtime (ms, measured), and each runtime's c(1)
    against the first's: plain text."""
    head = f"{'model':<16}" + "".join(f"{p.meta.get('runtime', '?')[:34]:>38}" for p in profiles)
    lines = [head]
    base = profiles[0]
    for m in base.models:
        cells = []
        for p in profiles:
            c = p.cost_ms[m]
            ratio = "" if p is base else f"  {base.cost_ms[m][0] / c[0]:.1f}× cheaper" if c[0] > 0 else ""
            cells.append(f"c(1) {c[0]:8.2f} · c({len(c)}) {c[-1]:8.2f} ms{ratio}")
        lines.append(f"{m:<16}" + "".join(f"{cell:>38}" for cell in cells))
    return "\n".join(lines)
