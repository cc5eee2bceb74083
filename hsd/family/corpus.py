"""1–2) the corpus (the running Python's standard library, its test suite included) and the
byte-level BPE tokenizer; token streams, batches and held-out windows."""
from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import torch

from hsd.family.plan import EOS, HELDOUT_EVERY, SKIP_DIR_NAMES, TrainingPlan


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None, max_files: int | None = None) -> list[Path]:
    """The stdlib's ``.py`` files, its test suite included (no site-packages), sorted by relative
    path."""
    root = root or stdlib_dir()
    files = sorted((p for p in root.rglob("*.py")
                    if not SKIP_DIR_NAMES.intersection(p.relative_to(root).parts[:-1])),
                   key=lambda p: p.relative_to(root).as_posix())
    return files[:max_files] if max_files else files


def split_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held_out): every HELDOUT_EVERY-th file is held out."""
    held = [f for i, f in enumerate(files) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [f for i, f in enumerate(files) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, held


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# 2) tokenizer
# --------------------------------------------------------------------------------------------
def train_tokenizer(files: list[Path], vocab_size: int):
    """Byte-level BPE with ``<|endoftext|>`` as id 0, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((read_text(f) for f in files), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=EOS, unk_token=None, model_max_length=None,
                                   clean_up_tokenization_spaces=False)


def encode_files(tokenizer, files: list[Path]) -> torch.Tensor:
    """One long stream of token ids: file, EOS, file, EOS, ...  (int32)."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for f in files:
        ids.extend(tokenizer(read_text(f), add_special_tokens=False, verbose=False)["input_ids"])
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


def prepare_data(plan: TrainingPlan, work: Path, log) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Tokenizer + train/held-out token streams, cached under ``work``."""
    from transformers import AutoTokenizer

    tok_dir, data_path = work / "tokenizer", work / "tokens.pt"
    files = corpus_files(max_files=plan.max_files)
    train, held = split_files(files)
    if not (tok_dir / "tokenizer.json").exists():
        t0 = time.time()
        tokenizer = train_tokenizer(train, plan.vocab_size)
        tokenizer.save_pretrained(tok_dir)
        log(f"tokenizer: {len(tokenizer)} tokens from {len(train)} files in {time.time() - t0:.1f}s")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if not data_path.exists():
        t0 = time.time()
        data = {"train": encode_files(tokenizer, train), "held_out": encode_files(tokenizer, held),
                "train_files": len(train), "held_out_files": len(held),
                "train_bytes": sum(f.stat().st_size for f in train)}
        torch.save(data, data_path)
        log(f"corpus: {len(data['train'])} train / {len(data['held_out'])} held-out tokens "
            f"({len(train)}/{len(held)} files) in {time.time() - t0:.1f}s")
    data = torch.load(data_path)
    return tokenizer, data["train"], data["held_out"]


def sample_batch(stream: torch.Tensor, plan: TrainingPlan, stage_index: int, step: int) -> torch.Tensor:
    """(batch, context+1) windows at offsets drawn from a generator seeded by (seed, stage, step)."""
    g = torch.Generator().manual_seed(plan.seed * 1_000_003 + stage_index * 100_003 + step)
    n = plan.context_tokens + 1
    starts = torch.randint(0, len(stream) - n, (plan.batch_size,), generator=g)
    return torch.stack([stream[s:s + n] for s in starts.tolist()]).long()


def eval_windows(stream: torch.Tensor, plan: TrainingPlan) -> torch.Tensor:
    """(eval_windows, context+1) evenly spaced held-out windows — the same for every model."""
    n = plan.context_tokens + 1
    count = min(plan.eval_windows, len(stream) // n)
    stride = len(stream) // count
    return torch.stack([stream[i * stride:i * stride + n] for i in range(count)]).long()


def write_bigram(family_dir: Path, log=print) -> Path:
    """The n-gram drafter's fallback table for an exported family: each token's most frequent
    successor in the family's TRAINING files (held-out files excluded), written beside the models
    as ``ngram-bigram.json`` (``hsd.levels.ngram``; one int per vocabulary entry)."""
    import json
    import sys

    from transformers import AutoTokenizer

    from hsd.levels.ngram import bigram_table

    names = json.loads((family_dir / "family.json").read_text())["names"]
    tokenizer = AutoTokenizer.from_pretrained(family_dir / names[-1])
    train, _ = split_files(corpus_files())
    t0 = time.time()
    tokens = encode_files(tokenizer, train)
    table = bigram_table(tokens, len(tokenizer))
    out = family_dir / "ngram-bigram.json"
    out.write_text(json.dumps({"format": "hsd-ngram-bigram/1", "next": table,
                               "source": f"most frequent successor in {len(tokens)} training tokens of the "
                                         f"Python {sys.version.split()[0]} standard library (held-out files "
                                         "excluded)"}, separators=(",", ":")) + "\n", encoding="utf-8")
    log(f"wrote {out}: {len(table)} entries from {len(tokens)} tokens in {time.time() - t0:.0f} s")
    return out


# --------------------------------------------------------------------------------------------
# prompts from held-out code (the latency model's profile and validation prompts)
# --------------------------------------------------------------------------------------------
def prompt_windows(files: list[Path], n: int, *, seed: int = 0, lines: tuple[int, int] = (3, 8),
                   max_chars: int = 240) -> list[str]:
    """``n`` prompts, each a run of whole lines of one file (at most one prompt per file; files
    taken in a seeded random order, a file without a fitting window skipped).  A window holds
    ``lines[0]..lines[1]`` lines, at most ``max_chars`` characters, ASCII only, and ends with the
    newline after a code line (not blank, not a comment), so the model continues with the next
    line.  Deterministic for the same files and seed."""
    import random

    rng = random.Random(seed)
    order = list(files)
    rng.shuffle(order)
    out = []
    for path in order:
        if len(out) == n:
            break
        text = read_text(path)
        if not text.isascii() or "\r" in text:
            continue
        rows = text.split("\n")
        starts = [i for i, r in enumerate(rows) if r.strip() and not r.lstrip().startswith("#")]
        rng.shuffle(starts)
        for start in starts[:50]:
            k = rng.randint(lines[0], lines[1])
            window = rows[start:start + k]
            if len(window) < lines[0] or not window[-1].strip() or window[-1].lstrip().startswith("#"):
                continue
            prompt = "\n".join(window) + "\n"
            if len(prompt) <= max_chars and "\t" not in prompt:
                out.append(prompt)
                break
    if len(out) < n:
        raise ValueError(f"only {len(out)} of {n} prompt windows found in {len(files)} files")
    return out


def escape_prompt(text: str) -> str:
    """One line of a prompts file (``hsd.tools.paths.parse_prompts`` reads it back)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
