"""The lean level: a plain functional forward of a Llama-style decoder over the weights of the
loaded transformers model, with a preallocated KV tensor -- no framework per-call tax.

Covers ``LlamaForCausalLM`` (SmolLM2, the bundled family) and ``Qwen2ForCausalLM`` (its q/k/v
biases): RMSNorm, rotary embeddings (the model's own ``rotary_emb`` tables, so every rope type
that does not depend on the sequence length is exact), grouped-query attention through
``F.scaled_dot_product_attention`` and a SwiGLU MLP.  Anything else -- another architecture,
sliding-window attention, a dynamic rope, a model spread over devices by accelerate -- is
refused by ``lean_support`` with one sentence, and ``forward="auto"`` keeps the transformers
level (``hsd.levels.hf.LevelModel``, the reference) for it.

State, all owned here: per layer a (kv_heads, capacity, head_dim) key and value tensor, grown by
doubling up to the context limit, and ``cached_ids``, the tokens they hold.  A crop is setting
a length (``_crop``, the only place): nothing is copied.  The check / crop / time / count
skeleton of ``logits_after`` is ``hsd.levels.cached.CachedLevel``, shared with the reference.  No second copy of any weight is made.
Implements the ``hsd.levels.Level`` protocol; the module knows nothing of rules or hierarchies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hsd.levels.cached import CachedLevel
from hsd.levels.sampling import SamplingSettings

LEAN_ARCHITECTURES = ("llama", "qwen2")         # config.model_type
EXACT_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
INITIAL_CAPACITY = 256


def _rope_type(config) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else "default"


def lean_support(model) -> str | None:
    """None when the lean forward covers ``model``; else one sentence saying why not."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    supported = ", ".join(LEAN_ARCHITECTURES)
    if kind not in LEAN_ARCHITECTURES:
        return f"the lean forward covers the {supported} architectures, not {kind or type(model).__name__}"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return f"the lean forward covers {kind} models with a SiLU MLP and no tensor-parallel split"
    if getattr(config, "use_sliding_window", False) or "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return f"the lean forward does not cover sliding-window attention ({kind})"
    if _rope_type(config) not in EXACT_ROPE_TYPES:
        return f"the lean forward covers rope types {', '.join(EXACT_ROPE_TYPES)}, not {_rope_type(config)}"
    if getattr(model, "hf_device_map", None):
        return "the lean forward needs the whole model on one device (this one is spread by accelerate)"
    return None


class _Layer:
    """One decoder layer's weights, read from the transformers modules (references, no copies)."""

    def __init__(self, layer):
        a, m = layer.self_attn, layer.mlp
        self.ln_in, self.eps_in = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.ln_post, self.eps_post = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        self.q, self.k, self.v, self.o = ((p.weight, p.bias) for p in (a.q_proj, a.k_proj, a.v_proj, a.o_proj))
        self.gate, self.up, self.down = ((p.weight, p.bias) for p in (m.gate_proj, m.up_proj, m.down_proj))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm, operation for operation (statistics in fp32)."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LeanLevel(CachedLevel):
    """A Llama-style model through the plain forward, with its own KV tensors.  Not thread-safe:
    one decode at a time per instance (``Hierarchy`` builds one per decode)."""

    def __init__(self, model, *, name: str, vocab_size: int, settings: SamplingSettings):
        problem = lean_support(model)
        if problem:
            raise ValueError(problem)
        c = model.config
        self.model, self.name, self.vocab_size, self.settings = model, name, int(vocab_size), settings
        self.max_positions = int(getattr(c, "max_position_embeddings", 0) or 0)
        self.embed = model.model.embed_tokens.weight                      # (V, d)
        self.layers = [_Layer(layer) for layer in model.model.layers]
        self.norm, self.norm_eps = model.model.norm.weight, model.model.norm.variance_epsilon
        self.head = model.lm_head.weight                                  # (V, d), tied or not
        self.n_heads, self.n_kv = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.scale = self.head_dim ** -0.5
        self.device, self.dtype = self.embed.device, self.embed.dtype
        self.capacity = 0
        self._cos = self._sin = None
        self._start_counters()

    # -- state ---------------------------------------------------------------------------
    def _crop(self, n: int) -> None:
        """The ONLY place the cache is cropped: its length is ``len(cached_ids)``, so setting that
        (``CachedLevel._keep``) is all a crop takes; the KV tensors are kept and overwritten."""

    def _reserve(self, length: int) -> None:
        """KV tensors and rotary tables for at least ``length`` positions (grown by doubling,
        up to the context limit; what is cached is copied over once per growth)."""
        if length <= self.capacity:
            return
        cap = max(length, 2 * self.capacity, INITIAL_CAPACITY)
        cap = min(cap, self.max_positions) if self.max_positions else cap
        cap = max(cap, length)
        shape = (self.n_kv, cap, self.head_dim)
        kv = [(torch.zeros(shape, device=self.device, dtype=self.dtype),
               torch.zeros(shape, device=self.device, dtype=self.dtype)) for _ in self.layers]
        if self.capacity:
            for (k, v), (k0, v0) in zip(kv, self.kv):
                k[:, : self.capacity] = k0
                v[:, : self.capacity] = v0
        self.kv, self.capacity = kv, cap
        positions = torch.arange(cap, device=self.device)[None]
        with torch.inference_mode():                  # the model's own tables: every exact rope type
            cos, sin = self.model.model.rotary_emb(self.embed[:1][None], positions)
        self._cos, self._sin = cos[0], sin[0]                               # (cap, head_dim)

    # -- scoring -------------------------------------------------------------------------
    def _inputs(self, new: list[int], kept: int) -> torch.Tensor:
        self._reserve(kept + len(new))
        return torch.tensor(new, dtype=torch.long, device=self.device)

    def _forward(self, ids: torch.Tensor, start: int, n_rows: int) -> torch.Tensor:
        """1) embed, 2) per layer: norm, q/k/v, rope, write k/v at ``start``, attention over the
        cache, o; norm, SwiGLU; 3) final norm and the head on the last ``n_rows`` rows."""
        m, end = ids.shape[0], start + ids.shape[0]
        x = F.embedding(ids, self.embed)                                    # (m, d)
        cos, sin = self._cos[start:end], self._sin[start:end]               # (m, D)
        mask = None
        if m > 1 and start > 0:                      # the block sees the cache and itself causally
            mask = torch.ones(m, end, dtype=torch.bool, device=self.device).tril(start)
        for layer, (k_cache, v_cache) in zip(self.layers, self.kv):
            h = rms_norm(x, layer.ln_in, layer.eps_in)
            q = F.linear(h, *layer.q).view(m, self.n_heads, self.head_dim).transpose(0, 1)   # (H, m, D)
            k = F.linear(h, *layer.k).view(m, self.n_kv, self.head_dim).transpose(0, 1)      # (Hkv, m, D)
            q = q * cos + rotate_half(q) * sin
            k_cache[:, start:end] = k * cos + rotate_half(k) * sin
            v_cache[:, start:end] = F.linear(h, *layer.v).view(m, self.n_kv, self.head_dim).transpose(0, 1)
            a = F.scaled_dot_product_attention(q[None], k_cache[None, :, :end], v_cache[None, :, :end],
                                               attn_mask=mask, is_causal=m > 1 and start == 0, scale=self.scale,
                                               enable_gqa=self.n_kv != self.n_heads)          # (1, H, m, D)
            x = x + F.linear(a[0].transpose(0, 1).reshape(m, -1), *layer.o)
            h = rms_norm(x, layer.ln_post, layer.eps_post)
            x = x + F.linear(F.silu(F.linear(h, *layer.gate)) * F.linear(h, *layer.up), *layer.down)
        return F.linear(rms_norm(x[-n_rows:], self.norm, self.norm_eps), self.head)        # (n_rows, V)
