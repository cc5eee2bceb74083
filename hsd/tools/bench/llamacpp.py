"""The benchmark's llama.cpp contenders, run on the same GGUF files the ggml level runs:

- (g) llama.cpp decoding the target alone, through llama-cpp-python's ``Llama.generate`` (its own
  sampler chain: greedy at T = 0, else temperature sampling with top-k, top-p and min-p off);
- (h) llama.cpp's own speculative decoding, ``llama-speculative-simple``, with the best single
  model draft and its draft length (``--draft-max = --draft-min = γ``);
- (h′) its prompt-lookup decoding, ``llama-lookup``, where the family has the n-gram level
  (``--draft-max γ`` of the n-gram level's best single draft).

Every one runs the ggml level's numerics: the f32 GGUF files, an f32 KV cache, flash attention off
(llama.cpp's default f16 KV cache measured 6-12 % faster, for (g) and the ggml level alike).

(h) and (h′) are llama.cpp's example programs, built from the source llama-cpp-python vendors by
``scripts/build_llama_cpp.sh`` into ``build/llama.cpp/bin`` (or ``$HSD_LLAMA_CPP_BIN``).  Each
run is one process on loopback-free local files; its time is what the program itself reports
for encoding the prompt and decoding (model loading excluded, like the in-process contenders'),
and its tokens are our tokenizer's ids of the text it prints (the bench checks greedy outputs
against (a)'s).  The prompts go in as token ids' text; ``hsd export-gguf`` checks llama.cpp
tokenizes them to the same ids.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hsd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
BIN_DIR = ROOT / "build" / "llama.cpp" / "bin"
PROGRAMS = {"llamacpp-speculative": "llama-speculative-simple", "llamacpp-lookup": "llama-lookup"}
RETRIES = 2                 # runs again of a program that printed no timing
BUILD_HINT = "build llama.cpp's programs with scripts/build_llama_cpp.sh"


def program(runner: str) -> Path | None:
    """The llama.cpp program a runner uses, or None when it is not built."""
    name = PROGRAMS[runner]
    for folder in (os.environ.get("HSD_LLAMA_CPP_BIN"), str(BIN_DIR)):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    found = shutil.which(name)
    return Path(found) if found else None


def missing_programs(runners) -> dict[str, str]:
    """runner -> one sentence, for each llama.cpp program not found."""
    return {r: f"{PROGRAMS[r]} is not built ({BUILD_HINT})" for r in runners if r in PROGRAMS and program(r) is None}


def make_generate_runner(family, contender, threads: int):
    """(g): ``runner(job) -> (token_ids, wall_ms, target_calls, forwards)`` over llama-cpp-python."""
    import llama_cpp

    from hsd.levels.ggml import ggml_model_for

    twin = ggml_model_for(family.models[contender.chain[-1]], family.tokenizer)
    llm = llama_cpp.Llama(str(twin.path), n_ctx=twin.n_ctx, n_threads=threads, n_threads_batch=threads,
                          verbose=False, flash_attn=False, logits_all=False,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)   # = the ggml level's
    eos = getattr(family.tokenizer, "eos_token_id", None)

    def run(job):
        greedy = job.temperature == 0
        llm.set_seed(job.seed)
        tokens: list[int] = []
        t0 = time.perf_counter()
        for token in llm.generate(list(job.prompt_ids), top_k=1 if greedy else 0, top_p=1.0, min_p=0.0,
                                  typical_p=1.0, temp=0.0 if greedy else float(job.temperature),
                                  repeat_penalty=1.0, reset=True):
            if job.stop_at_eos and token == eos:
                break
            tokens.append(int(token))
            if len(tokens) >= job.max_new_tokens:
                break
        wall = (time.perf_counter() - t0) * 1000.0
        return tuple(tokens), wall, len(tokens), None
    return run


_TIMING = re.compile(r"(encoded|decoded)\s+(\d+)\s+tokens in\s+([0-9.]+)\s+seconds")
_ACCEPT = re.compile(r"n_accept\s*=\s*(\d+)")
_DRAFTED = re.compile(r"n_draft(?:ed)?\s*=\s*(\d+)")


def parse_program_output(stdout: str, stderr: str) -> dict:
    """Seconds encoding and decoding, tokens decoded, drafted and accepted, from a llama.cpp
    example's log (it prints the text on stdout and its statistics on stderr)."""
    times = {kind: (int(n), float(s)) for kind, n, s in _TIMING.findall(stderr)}
    if "decoded" not in times:
        tail = " / ".join(line for line in stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the llama.cpp program printed no timing ({tail[:300]})")
    accepted = _ACCEPT.findall(stderr)
    drafted = _DRAFTED.findall(stderr)
    return {"encode_s": times.get("encoded", (0, 0.0))[1], "decoded": times["decoded"][0],
            "decode_s": times["decoded"][1], "accepted": int(accepted[-1]) if accepted else None,
            "drafted": int(drafted[-1]) if drafted else None}


def make_program_runner(family, contender, threads: int):
    """(h) and (h′): one llama.cpp process per decode (see the module text)."""
    from hsd.levels.ggml import ggml_model_for
    from hsd.tools.measure import decode_ids

    exe = program(contender.runner)
    if exe is None:
        raise ConfigError(missing_programs([contender.runner])[contender.runner])
    target = ggml_model_for(family.models[contender.chain[-1]], family.tokenizer)
    gamma = contender.buffers[0]
    base = [str(exe), "-m", str(target.path), "-t", str(threads), "-tb", str(threads), "--spec-draft-n-max", str(gamma),
            "-fa", "off", "-c", str(target.n_ctx), "-ctk", "f32", "-ctv", "f32"]
    if contender.runner == "llamacpp-speculative":
        draft = ggml_model_for(family.models[contender.chain[0]], family.tokenizer).path
        base += ["-md", str(draft), "--spec-type", "draft-simple", "--spec-draft-n-min", str(gamma),
                 "-td", str(threads), "-tbd", str(threads), "-ctkd", "f32", "-ctvd", "f32"]
    tok = family.tokenizer

    def run(job):
        text = decode_ids(tok, job.prompt_ids)
        sampling = ["--temp", "0", "--top-k", "1"] if job.temperature == 0 else \
            ["--temp", f"{job.temperature:g}", "--top-k", "0", "--top-p", "1", "--min-p", "0"]
        cmd = base + ["-p", text, "-n", str(job.max_new_tokens), "--seed", str(job.seed), *sampling]
        if not job.stop_at_eos:
            cmd += ["--ignore-eos"]
        for attempt in range(1, RETRIES + 2):       # seen here: now and then it ends, rc 0, before decoding
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
            try:
                if done.returncode != 0:
                    tail = " / ".join(done.stderr.strip().splitlines()[-3:])
                    raise RuntimeError(f"{exe.name} exited with {done.returncode}: {tail[:300]}")
                stats = parse_program_output(done.stdout, done.stderr)
                break
            except RuntimeError as exc:
                if attempt > RETRIES:
                    raise
                print(f"\nnote: {exc}; running it again ({attempt} of {RETRIES})", file=sys.stderr)
        out = done.stdout
        at = out.find(text)
        out = out[at + len(text):] if at >= 0 else out
        ids = tuple(tok(out, add_special_tokens=False)["input_ids"])[: job.max_new_tokens]
        # it may decode a few tokens past -n (the last accepted block): its decode time is scaled to
        # the tokens asked for, so ms/token is its own rate
        share = min(1.0, job.max_new_tokens / stats["decoded"]) if stats["decoded"] else 1.0
        wall = (stats["encode_s"] + stats["decode_s"] * share) * 1000.0
        # every target call commits its accepted drafts and one token of its own
        rounds = stats["decoded"] - stats["accepted"] if stats["accepted"] is not None else 0
        return ids, wall, rounds, None
    return run
