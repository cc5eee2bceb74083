"""The benchmark run: every contender on every prompt × repeat at every temperature, interleaved
(see ``hsd.tools.bench``)."""
from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import asdict
from typing import Sequence

from hsd.errors import ConfigError
from hsd.plan.profile import Profile
from hsd.tools.bench.contenders import pick_bench_contenders
from hsd.tools.bench.runners import Decode, ForwardMeter, Run, _timed, make_runner
from hsd.tools.bench.stats import rotated, summarise
from hsd.tools.measure import decode_ids
from hsd.tools.progress import ProgressFn

FORMAT = "hsd-bench/1"


def bench(family, profile: Profile, prompts: Sequence[str], *, max_new_tokens: int = 128,
          temperatures: Sequence[float] = (0.0, 1.0), repeats: int = 3, seed: int = 0, max_buffer: int = 16,
          stop_at_eos: bool = False, warmup_tokens: int = 16, progress: ProgressFn | None = None,
          forward: str = "auto") -> dict:
    """Run every contender on every prompt × repeat at every temperature; return the report."""
    _check_inputs(family, profile, prompts, max_new_tokens, temperatures, repeats)
    contenders = pick_bench_contenders(profile, max_buffer, llamacpp=forward == "llamacpp")
    skipped = {}
    if forward == "llamacpp":                  # llama.cpp's programs (h), (h′) run where they are built
        from hsd.tools.bench.llamacpp import missing_programs

        skipped = missing_programs({c.runner for c in contenders})
        contenders = [c for c in contenders if c.runner not in skipped]
    prompt_ids = [tuple(family.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    _check_lengths(family, prompts, prompt_ids, max_new_tokens)
    sections = []
    total = len(temperatures) * len(prompts) * repeats * len(contenders)
    done = 0
    with ForwardMeter(family.models, family.device) as meter:
        runners = {c.key: make_runner(family, c, meter, forward) for c in contenders}
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
            sections.append(summarise(contenders, runs, temperature, family.names,
                                      decode=functools.partial(decode_ids, family.tokenizer)))
    meta = run_meta(family, profile, prompts, max_new_tokens, repeats, seed, max_buffer, stop_at_eos)
    meta["forward"] = forward
    meta["skipped"] = {r: why for r, why in skipped.items()}
    return {"format": FORMAT, "meta": meta,
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
    windows = [int(getattr(getattr(m, "config", None), "max_position_embeddings", 0) or 0) for m in family.models]
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
