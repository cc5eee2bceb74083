"""The ggml level: a model run by llama.cpp's kernels (through ``llama-cpp-python``'s C API),
behind the same ``Level`` protocol, so every rule and hierarchy runs on llama.cpp unchanged.

- ``GGUFModel`` is a GGUF file loaded once (the weights, shared read-only) and a pool of llama.cpp
  contexts (each one KV cache).  It stands in a hierarchy's model list like any model:
  ``make_level`` hands each decode a ``GGMLLevel`` over a context of its own; the context goes
  back to the pool when that level is garbage-collected, so concurrent decodes never share one.
- ``GGMLLevel`` is a ``CachedLevel``: one ``llama_decode`` call per ``probs_after`` over the
  uncached suffix, asking logits of the last ``n_rows`` positions only; a crop is
  ``llama_memory_seq_rm`` from the first position that disagrees (``_crop``, the only place);
  ``reset`` clears the memory.  Its rows go through the decode's ``SamplingSettings`` like every
  other level's, so the rules see the same kind of rows and stay exact.
- ``ggml_model_for(model)`` is what ``forward="llamacpp"`` uses for a transformers model: the
  model is exported to GGUF once (``hsd.levels.gguf_export``, float32 weights and a float32 KV
  cache, cached on disk by the weights' hash under ``gguf_cache_dir()``) and loaded once per
  process and thread count.

Threads: each context runs with the thread count torch had when it was made (the CLI, the API and
the app set that for the machine), so both runtimes get the same cores.
llama.cpp's log lines are silenced (``_quiet``); errors still raise.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import json
import os
import threading
import weakref
from pathlib import Path

import numpy as np
import torch

from hsd.errors import ConfigError
from hsd.levels.cached import CachedLevel
from hsd.levels.sampling import SamplingSettings

INSTALL_HINT = ("the llamacpp forward needs the llama-cpp-python and gguf packages "
                "(pip install -r requirements-llamacpp.txt)")
MAX_CONTEXT = 4096          # positions a context holds at most (a model may allow more)
UBATCH = 512                # llama.cpp's default micro-batch: its compute buffers are sized for it


def llamacpp_missing() -> str | None:
    """None when llama-cpp-python and gguf import; else one sentence saying what to install."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def _lib():
    import llama_cpp
    _quiet(llama_cpp)
    return llama_cpp


_LOG_SINK = []
_LOG_TAIL: collections.deque = collections.deque(maxlen=40)   # llama.cpp's last log lines


def _quiet(L) -> None:
    """Keep llama.cpp's log lines out of the terminal (once per process; the callback must stay
    alive): the last ones are kept in ``_LOG_TAIL``, for the message of a load that fails."""
    if not _LOG_SINK:
        def keep(level, text, user):
            _LOG_TAIL.append(text.decode("utf-8", "replace").strip() if text else "")

        sink = L.llama_log_callback(keep)
        L.llama_log_set(sink, ctypes.c_void_p(0))
        L.llama_backend_init()
        _LOG_SINK.append(sink)


class GGUFModel:
    """A GGUF file loaded by llama.cpp, and the contexts decodes run in (see the module text)."""

    def __init__(self, path: str | Path, *, threads: int | None = None, n_ctx: int | None = None,
                 name: str | None = None):
        L = _lib()
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"There is no GGUF file at {self.path}")
        params = L.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = L.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            said = next((line for line in reversed(_LOG_TAIL) if "error" in line.lower()), "no reason given")
            raise ConfigError(f"llama.cpp could not load {self.path} (a damaged or unsupported GGUF file: {said})")
        self.name = name or self.path.stem
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
        self.n_ctx = int(n_ctx or min(self.n_ctx_train or MAX_CONTEXT, MAX_CONTEXT))
        self.threads = int(threads or torch.get_num_threads())
        self._free: list = []
        self._lock = threading.Lock()
        self.contexts_made = 0
        self._release = weakref.finalize(self, _free_model, L, self._model, self._free)
        self._release.atexit = False            # at exit the process's memory goes anyway

    def close(self) -> None:
        """Free the pooled contexts and the weights now (else when this object is collected);
        call it once no level over this model is in use."""
        self._release()

    # -- contexts ---------------------------------------------------------------------------
    def _new_slot(self) -> "_Slot":
        L = _lib()
        p = L.llama_context_default_params()
        p.n_ctx = p.n_batch = self.n_ctx              # one call may carry a whole prompt; llama.cpp
        p.n_ubatch = min(self.n_ctx, UBATCH)            # runs it in micro-batches of at most UBATCH
        p.n_seq_max = 1
        p.n_threads = p.n_threads_batch = self.threads
        p.no_perf = True
        # f32 KV cache and no flash attention (its f16 accumulation moved logits by ~4e-3)
        p.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.type_k = p.type_v = L.GGML_TYPE_F32
        ctx = L.llama_init_from_model(self._model, p)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {self.n_ctx} positions for {self.name}")
        self.contexts_made += 1
        return _Slot(L, ctx, self.n_ctx)

    def acquire(self) -> "_Slot":
        """A context (and its batch) with an empty memory: a pooled one, else a new one."""
        if not self._release.alive:
            raise RuntimeError(f"{self.name}: this GGUF model was closed")
        with self._lock:
            slot = self._free.pop() if self._free else None
        if slot is None:
            return self._new_slot()
        _lib().llama_memory_clear(slot.memory, True)
        return slot

    def release(self, slot: "_Slot") -> None:
        with self._lock:
            self._free.append(slot)

    def make_level(self, *, name: str, vocab_size: int, settings: SamplingSettings) -> "GGMLLevel":
        return GGMLLevel(self, name=name, vocab_size=vocab_size, settings=settings)

    # -- text (llama.cpp's own tokenizer: the benchmark checks it agrees with ours) ----------
    def tokenize(self, text: str) -> list[int]:
        L = _lib()
        raw = text.encode("utf-8")
        buf = (ctypes.c_int32 * (len(raw) + 8))()
        n = L.llama_tokenize(self._vocab, raw, len(raw), buf, len(buf), False, False)
        if n < 0:
            raise ValueError(f"llama.cpp could not tokenize {len(raw)} bytes")
        return list(buf[:n])

    def __repr__(self) -> str:
        return f"GGUFModel({self.path.name}, threads={self.threads}, n_ctx={self.n_ctx})"


def _free_model(L, model, slots: list) -> None:
    while slots:
        slot = slots.pop()
        L.llama_batch_free(slot.batch)
        L.llama_free(slot.ctx)
    L.llama_model_free(model)


class _Slot:
    """One llama.cpp context and the batch its decodes fill, made once and pooled: the batch's
    arrays are seen through numpy (a call fills them with slice assignments, not one ctypes
    store per field and token), every position belongs to sequence 0."""

    def __init__(self, L, ctx, n_ctx: int):
        self.ctx = ctx
        self.memory = L.llama_get_memory(ctx)
        self.batch = b = L.llama_batch_init(n_ctx, 0, 1)
        self.token = np.ctypeslib.as_array(b.token, shape=(n_ctx,))
        self.pos = np.ctypeslib.as_array(b.pos, shape=(n_ctx,))
        self.wants_logits = np.ctypeslib.as_array(b.logits, shape=(n_ctx,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(n_ctx,))[:] = 1
        for i in range(n_ctx):
            b.seq_id[i][0] = 0


class GGMLLevel(CachedLevel):
    """One decode's level over a ``GGUFModel`` context.  Not thread-safe (one decode at a time)."""

    _grad_mode = staticmethod(contextlib.nullcontext)   # no torch graph to keep out: llama.cpp computes

    def __init__(self, gguf_model: GGUFModel, *, name: str, vocab_size: int, settings: SamplingSettings):
        self.L = _lib()
        self.gguf_model, self.name, self.settings = gguf_model, name, settings
        if vocab_size > gguf_model.n_vocab:
            raise ConfigError(f"{name}: the GGUF model has {gguf_model.n_vocab} tokens, the family {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.max_positions = gguf_model.n_ctx
        self.device = torch.device("cpu")
        self._slot = gguf_model.acquire()
        weakref.finalize(self, gguf_model.release, self._slot)
        self._n_vocab = gguf_model.n_vocab
        self._start_counters()

    def _crop(self, n: int) -> None:
        """The ONLY place the KV cache is cut: positions ≥ n of the one sequence go."""
        if n == 0:
            self.L.llama_memory_clear(self._slot.memory, True)
        else:
            self.L.llama_memory_seq_rm(self._slot.memory, 0, n, -1)

    def _inputs(self, new: list[int], kept: int):
        if kept + len(new) > self.max_positions:
            raise ValueError(f"{self.name}: {kept + len(new)} positions exceed the context of {self.max_positions}")
        slot, m = self._slot, len(new)
        slot.token[:m] = new
        slot.pos[:m] = np.arange(kept, kept + m)
        slot.wants_logits[:m] = 0
        slot.batch.n_tokens = m
        return m

    def _forward(self, m: int, kept: int, n_rows: int) -> torch.Tensor:
        """One ``llama_decode`` over the new tokens; the logits of the last ``n_rows`` (copied out:
        llama.cpp reuses its buffer on the next call)."""
        slot = self._slot
        slot.wants_logits[m - n_rows:m] = 1
        code = self.L.llama_decode(slot.ctx, slot.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code} ({self.name}, {m} tokens after {kept})")
        out = torch.empty((n_rows, self._n_vocab), dtype=torch.float32)
        ctypes.memmove(out.data_ptr(), self.L.llama_get_logits(slot.ctx), out.numel() * 4)
        return out


# --------------------------------------------------------------------------------------------
# forward="llamacpp" for a transformers model: export once, load once
# --------------------------------------------------------------------------------------------
def gguf_cache_dir() -> Path:
    """Where exported GGUF files are kept: ``$HSD_CACHE_DIR/gguf`` or ``~/.cache/hsd/gguf``."""
    base = os.environ.get("HSD_CACHE_DIR") or Path.home() / ".cache" / "hsd"
    return Path(base) / "gguf"


def weights_key(model) -> str:
    """A hash of a model's configuration and every weight: an export is reused only for the
    same weights."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _tokenizer_of(model):
    """The tokenizer saved beside a model loaded from a folder, or None (an in-memory model)."""
    ref = str(getattr(model.config, "_name_or_path", "") or "")
    if ref and Path(ref).is_dir() and (Path(ref) / "tokenizer.json").exists():
        from hsd.models import load_tokenizer
        return load_tokenizer(ref)
    return None


class GGUFModels:
    """The GGUF twin of each transformers model this process runs with ``forward="llamacpp"``
    (weakly keyed by the model, one per thread count)."""

    def __init__(self):
        self._by_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, model, tokenizer=None) -> GGUFModel:
        from hsd.levels.gguf_export import export_gguf, gguf_support

        problem = llamacpp_missing() or gguf_support(model)
        if problem:
            raise ConfigError(f"--forward llamacpp: {problem}")
        threads = torch.get_num_threads()
        with self._lock:
            twins = self._by_model.setdefault(model, {})
            if threads not in twins:
                path = gguf_cache_dir() / f"{weights_key(model)}-f32.gguf"
                if not path.exists():
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    export_gguf(model, tokenizer or _tokenizer_of(model), tmp, dtype="f32")
                    tmp.replace(path)
                name = Path(str(getattr(model.config, "_name_or_path", "") or path.stem)).name
                twins[threads] = GGUFModel(path, threads=threads, name=name)
            return twins[threads]


GGUF_MODELS = GGUFModels()


def ggml_model_for(model, tokenizer=None) -> GGUFModel:
    """The loaded GGUF twin of a transformers model (exported and loaded on first use)."""
    return GGUF_MODELS.get(model, tokenizer)
