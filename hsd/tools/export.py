"""``hsd export-gguf FAMILY OUT/``: every model of a family as GGUF files llama.cpp loads, each
checked against transformers (unless ``--no-check``): the largest logit gap over a prompt of the
family's own kind, whether every position's argmax agrees, and whether llama.cpp's tokenizer
splits the check prompts into our ids.  Prints one row per file."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def check_file(path: Path, model, tokenizer, vocab_size: int, prompts: list[str]) -> dict:
    """Load ``path`` in llama.cpp and compare it with ``model`` on the first prompt's tokens."""
    import torch

    from hsd.levels import SamplingSettings
    from hsd.levels.ggml import GGUFModel

    twin = GGUFModel(path, threads=torch.get_num_threads())
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0) or 512
    ids = tokenizer(prompts[0], add_special_tokens=False).input_ids[: min(limit, 64)]
    level = twin.make_level(name=path.stem, vocab_size=vocab_size, settings=SamplingSettings())
    got = level.logits_after(ids, len(ids))
    with torch.inference_mode():
        ref = model(torch.tensor([ids], device=model.device)).logits[0, :, :vocab_size].float().cpu()
    from hsd.levels.gguf_export import vocabulary_problem

    same_tokens = vocabulary_problem(tokenizer) or all(
        twin.tokenize(p) == tokenizer(p, add_special_tokens=False).input_ids for p in prompts)
    return {"max_logit_gap": float((got - ref).abs().max()), "positions": len(ids),
            "argmax_agrees": float((got.argmax(-1) == ref.argmax(-1)).float().mean()),
            "tokenizer_agrees": same_tokens}


def run(args) -> int:
    from hsd.levels.gguf_export import export_gguf
    from hsd.models import load_family
    from hsd.tools.paths import default_prompts_path, load_prompts

    family = load_family(args.family, device="cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(default_prompts_path(args.family))[:8]
    print(f"{'file':<34} {'MB':>7} {'s':>5}  check", flush=True)
    for name, model in zip(family.names, family.models):
        if callable(getattr(model, "make_level", None)):
            print(f"{name:<34} {'':>7} {'':>5}  model-free level: nothing to export", flush=True)
            continue
        for dtype in args.types:
            t0 = time.perf_counter()
            path = export_gguf(model, family.tokenizer, out / f"{name}-{dtype}.gguf", dtype=dtype, name=name)
            took = time.perf_counter() - t0
            note = "not checked (--no-check)"
            if not args.no_check:
                c = check_file(path, model, family.tokenizer, family.vocab_size, prompts)
                agrees = c["tokenizer_agrees"]
                said = (f"placeholder tokens ({agrees}): run it from token ids" if isinstance(agrees, str) else
                        f"tokenizer {'agrees' if agrees else 'DIFFERS'} on {len(prompts)} prompts")
                note = (f"max |Δlogit| {c['max_logit_gap']:.2e} over {c['positions']} positions, argmax agrees "
                        f"{c['argmax_agrees']:.0%}, {said}")
            print(f"{path.name:<34} {path.stat().st_size / 2**20:7.1f} {took:5.1f}  {note}", flush=True)
    print(f"wrote {out}", file=sys.stderr)
    return 0
