"""One entry point to load a model family: ``load_family(spec) -> LoadedFamily``.

A spec names the models smallest first, the target last:
  - ``"bundled"`` — the offline family in ``assets/family`` (see ``hsd.family``);
  - a preset name from ``PRESETS`` (Hugging Face hub ids; they need the Hub or a warm cache);
  - ``"a,b,c"`` or a list — local folders, bundled member names, hub ids or preset names
    (expanded in place), mixed freely; ``ngram`` is the model-free n-gram drafter
    (``hsd.levels.ngram``), e.g. ``"ngram,bundled"``: it can only be first (the bottom level).

Contract:
  - Every model loads with ``use_safetensors=True`` and ``trust_remote_code=False``; pickled
    ``.bin`` weights and custom code are refused.
  - Device: cuda > mps > cpu unless given.  dtype: fp32 on CPU, bf16 on CUDA (fp16 where bf16 is
    unsupported, and on MPS) unless given.
  - A model whose weights (parameter count × bytes per parameter) exceed 85% of the free memory of
    the GPU is loaded with accelerate's ``device_map="auto"`` (spread over GPUs, then CPU); its
    inputs still go to ``LoadedFamily.device`` (accelerate's hooks move them).
  - All tokenizers must map the same strings to the same ids (``get_vocab()`` equal), else
    ``IncompatibleModelsError``.  ``vocab_size`` is the smallest of the tokenizer's length and every
    model's output width, so a model whose lm_head is only padded wider still fits: callers slice
    logits to ``[..., :vocab_size]``.
  - Anything that cannot be loaded (missing folder, hub id neither cached nor reachable) raises
    ``ModelLoadError`` with one sentence that points at the bundled family and local folders.
    When ``HF_HUB_OFFLINE`` is set, or the Hub does not answer within ``HUB_PROBE_TIMEOUT_S``,
    nothing is fetched (``local_files_only=True``), so an offline machine never hangs.
  - The same resolved spec, device and dtype load once per process (``load_family`` returns the
    same object), and a model shared by two specs (``bundled``, ``ngram,bundled``) loads once.

This module knows nothing of decoding, verification or profiling.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hsd.errors import IncompatibleModelsError, ModelLoadError
from hsd.levels.ngram import NGRAM_NAME as NGRAM
from hsd.levels.ngram import NGramDrafter, load_bigram

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "family"
BUNDLED_NAMES_FALLBACK = ["hsd-family-xs", "hsd-family-s", "hsd-family-m", "hsd-family-l"]
BUNDLED_BIGRAM = BUNDLED_DIR / "ngram-bigram.json"       # the n-gram drafter's fallback table
HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 2.0
GPU_MEMORY_FRACTION = 0.85     # above this share of free GPU memory a model is spread with accelerate
_WAY_FORWARD = ("use the bundled offline family (spec 'bundled') or local model folders "
                "('path/to/small,path/to/large')")


def bundled_names(family_dir: Path = BUNDLED_DIR) -> list[str]:
    """Member names of a family folder, smallest first (from its ``family.json``)."""
    meta = family_dir / "family.json"
    if meta.exists():
        return list(json.loads(meta.read_text())["names"])
    return list(BUNDLED_NAMES_FALLBACK)


PRESETS: dict[str, list[str]] = {
    "bundled": [str(BUNDLED_DIR / n) for n in bundled_names()],
    "smollm2": ["HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-360M",
                "HuggingFaceTB/SmolLM2-1.7B"],
    "qwen2.5": ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-7B"],
    "pythia": ["EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "EleutherAI/pythia-410m",
               "EleutherAI/pythia-1b"],
}


@dataclass
class LoadedFamily:
    """A loaded stack of models sharing one tokenizer, smallest first, target last."""

    names: list[str]
    models: list = field(repr=False)             # list[PreTrainedModel], eval mode, same order
    tokenizer: object = field(repr=False)        # PreTrainedTokenizerBase
    vocab_size: int                              # slice logits to [..., :vocab_size]
    device: torch.device
    spec: str

    @property
    def target(self):
        return self.models[-1]


class ModelStore:
    """What this process has loaded and learned, in one place: the families (by refs, names,
    device and dtype), the models under them (by ref, device and dtype: families that share
    members share them, not copies), and whether the Hub answered (asked once, lazily)."""

    def __init__(self):
        self.families: dict[tuple, LoadedFamily] = {}
        self.models: dict[tuple, object] = {}
        self.hub_reachable: bool | None = None

    def clear(self) -> None:
        """Forget the families and models (the Hub's answer is kept)."""
        self.families.clear()
        self.models.clear()


STORE = ModelStore()


# --------------------------------------------------------------------------------------------
# Spec resolution
# --------------------------------------------------------------------------------------------
def _looks_like_path(item: str) -> bool:
    return (item.startswith((".", "/", "~", "\\")) or item.count("/") > 1
            or (os.sep != "/" and os.sep in item))


def _resolve_item(item: str) -> str:
    """One model reference -> absolute local folder, or a hub id (``org/name``)."""
    if item in bundled_names() and (BUNDLED_DIR / item).is_dir():
        return str(BUNDLED_DIR / item)
    path = Path(item).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):            # a name too long for a path, or with a NUL in it
        raise ModelLoadError(f"{item[:40]!r}{'…' if len(item) > 40 else ''} is neither a model folder "
                             f"nor a hub id; {_WAY_FORWARD}.") from None
    if exists:
        if not path.is_dir():
            raise ModelLoadError(f"{item} is a file, not a model folder; {_WAY_FORWARD}.")
        return str(path.resolve())
    if _looks_like_path(item):
        raise ModelLoadError(f"There is no model folder at {item}; {_WAY_FORWARD}.")
    return item


def resolve_spec(spec: str | list[str]) -> list[str]:
    """``"bundled"`` | preset name | ``"a,b,c"`` | list  ->  local folders / hub ids, smallest first."""
    raw = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    items = []
    for item in (s for s in raw if s):
        key = item.lower()
        if key == "bundled":
            if not (BUNDLED_DIR / "family.json").exists():
                raise ModelLoadError(f"The bundled family is missing from {BUNDLED_DIR}; rebuild it with "
                                     "'python -m hsd.family train' or use local model folders.")
            items += [str(BUNDLED_DIR / n) for n in bundled_names()]
        elif key in PRESETS:
            items += list(PRESETS[key])
        else:
            items.append(NGRAM if key == NGRAM else item)
    if not items:
        raise ModelLoadError(f"The model spec {spec!r} names no models; {_WAY_FORWARD}.")
    return [s if s == NGRAM else _resolve_item(s) for s in items]


def display_name(ref: str) -> str:
    """Short name for a folder or hub id: its last path component."""
    return Path(ref).name if Path(ref).is_absolute() else ref.rstrip("/").split("/")[-1]


# --------------------------------------------------------------------------------------------
# Device, dtype, Hub reachability
# --------------------------------------------------------------------------------------------
def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout_s`` (asked once per process).
    Runs in a daemon thread so that a slow DNS lookup cannot hang the caller either."""
    if hub_offline():
        return False
    if STORE.hub_reachable is None:
        connected = threading.Event()

        def probe():
            try:
                socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
                connected.set()
            except OSError:
                pass

        threading.Thread(target=probe, daemon=True).start()
        STORE.hub_reachable = connected.wait(timeout_s + 0.5)
    return STORE.hub_reachable


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects (bad characters) is simply not cached
        return False


def _local_only(ref: str) -> bool:
    """True: load without touching the network.  Raises ModelLoadError when that cannot work."""
    if Path(ref).is_absolute():
        if not (Path(ref) / "config.json").exists():
            raise ModelLoadError(f"The folder {ref} holds no config.json, so it is not a model "
                                 f"folder; {_WAY_FORWARD}.")
        return True
    if _hub_cached(ref):
        return True
    if hub_offline() or not hub_reachable():
        raise ModelLoadError(f"{ref} is not in the local Hugging Face cache and the Hub cannot be "
                             f"reached (offline); {_WAY_FORWARD}.")
    return False


def unavailable_reason(spec: str | list[str]) -> str | None:
    """Why ``spec`` cannot be loaded here, in one sentence, without loading any weights (a model
    folder without config.json, a hub id neither cached nor reachable); None when it can."""
    try:
        refs = resolve_spec(spec)
        for ref in refs:
            if ref != NGRAM:
                _local_only(ref)
    except ModelLoadError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _param_count(ref: str, local_only: bool) -> int:
    """Parameter count from the config alone (model built on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(ref, local_files_only=local_only, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return sum(p.numel() for p in model.parameters())


def _device_map(ref: str, device: torch.device, dtype: torch.dtype, local_only: bool):
    """``"auto"`` when the weights would not fit in GPU_MEMORY_FRACTION of free GPU memory."""
    if device.type != "cuda":
        return None
    need_bytes = _param_count(ref, local_only) * torch.finfo(dtype).bits // 8
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return "auto" if need_bytes > GPU_MEMORY_FRACTION * free_bytes else None


def _load_model(ref: str, device: torch.device, dtype: torch.dtype):
    from huggingface_hub.errors import HfHubHTTPError
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    local_only = _local_only(ref)
    try:
        device_map = _device_map(ref, device, dtype, local_only)
        model = AutoModelForCausalLM.from_pretrained(
            ref, dtype=dtype, use_safetensors=True, trust_remote_code=False,
            local_files_only=local_only, device_map=device_map)
    except SafetensorError as exc:                      # a damaged or cut-short weight file
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"The weights of {ref} cannot be read: the safetensors file is damaged or incomplete "
                             f"({reason}); copy or download it again.") from exc
    except (OSError, ValueError, KeyError, HfHubHTTPError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{ref} could not be loaded as a safetensors causal LM ({reason}); "
                             f"{_WAY_FORWARD}.") from exc
    if device_map is None:
        model.to(device)
    model.eval().requires_grad_(False)
    return model


def load_tokenizer(ref: str):
    """The tokenizer of a model folder or hub id, loaded the one way this project loads one."""
    from huggingface_hub.errors import HfHubHTTPError
    from transformers import AutoTokenizer

    local_only = _local_only(ref)      # raises its own ModelLoadError: keep it outside the try
    try:
        return AutoTokenizer.from_pretrained(ref, local_files_only=local_only, trust_remote_code=False)
    except (OSError, ValueError, KeyError, HfHubHTTPError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"The tokenizer of {ref} could not be loaded ({reason}); "
                             f"{_WAY_FORWARD}.") from None


def check_tokenizers(names: list[str], tokenizers: list) -> None:
    """Raise IncompatibleModelsError unless every tokenizer has the target's vocabulary mapping."""
    reference = tokenizers[-1].get_vocab()
    for name, tok in zip(names[:-1], tokenizers[:-1]):
        if tok.get_vocab() != reference:
            raise IncompatibleModelsError(
                f"{name} and {names[-1]} do not share one tokenizer vocabulary, so their "
                "probabilities cannot be compared token by token; pick models of one family.")


def output_width(model) -> int:
    """Number of logits the model produces per position (its lm_head rows)."""
    head = model.get_output_embeddings()
    return head.weight.shape[0] if head is not None else model.config.vocab_size


def load_family(spec: str | list[str] = "bundled", *, device=None, dtype=None,
                names: list[str] | None = None) -> LoadedFamily:
    """Load a family (smallest first, target last); see the module docstring for the contract.

    ``names`` optionally overrides the display names (same length as the resolved spec)."""
    refs = resolve_spec(spec)
    dev = torch.device(device) if device is not None else default_device()
    dt = dtype if dtype is not None else default_dtype(dev)
    labels = list(names) if names is not None else [display_name(r) for r in refs]
    if len(labels) != len(refs) or len(set(labels)) != len(labels):
        raise ModelLoadError(f"Give one distinct name per model ({len(refs)} models, names "
                             f"{labels}); {_WAY_FORWARD}.")
    key = (tuple(refs), tuple(labels), str(dev), str(dt))
    if key in STORE.families:
        return STORE.families[key]

    real = [(r, n) for r, n in zip(refs, labels) if r != NGRAM]     # the n-gram drafter loads nothing
    if not real:
        raise ModelLoadError(f"The model spec {spec!r} has no model to verify with; {_WAY_FORWARD}.")
    # 1) tokenizers first: cheap, and an incompatible family fails before any weights load
    tokenizers = [load_tokenizer(r) for r, _ in real]
    check_tokenizers([n for _, n in real], tokenizers)
    # 2) weights
    loaded = {r: _shared_model(r, dev, dt) for r, _ in real}
    # 3) common vocabulary: the tokenizer's and every lm_head's, whichever is smallest
    vocab = min([len(tokenizers[-1])] + [output_width(m) for m in loaded.values()])
    bundled = any(Path(r).parent == BUNDLED_DIR for r, _ in real)
    bigram = load_bigram(BUNDLED_BIGRAM) if bundled else None
    models = [loaded[r] if r != NGRAM else NGramDrafter(vocab, bigram=bigram) for r in refs]
    spec_text = spec if isinstance(spec, str) else ",".join(spec)
    family = LoadedFamily(names=labels, models=models, tokenizer=tokenizers[-1], vocab_size=vocab,
                          device=dev, spec=spec_text)
    STORE.families[key] = family
    return family


def _shared_model(ref: str, device: torch.device, dtype: torch.dtype):
    """``_load_model``, once per (ref, device, dtype): ``bundled`` and ``ngram,bundled`` hold the
    same four models, not two copies."""
    key = (ref, str(device), str(dtype))
    if key not in STORE.models:
        STORE.models[key] = _load_model(ref, device, dtype)
    return STORE.models[key]


def clear_cache() -> None:
    """Forget loaded families and models (tests; freeing memory before loading another big family)."""
    STORE.clear()
