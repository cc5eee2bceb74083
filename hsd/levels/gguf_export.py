"""Write a loaded transformers model, with its tokenizer's vocabulary, as a GGUF file that
llama.cpp loads: the weights the ggml level (``hsd.levels.ggml``) and llama.cpp's own tools run.

Covers what the lean forward covers (``LlamaForCausalLM``, ``Qwen2ForCausalLM``; see
``gguf_support``), with the default or linear rope.  The mapping, tensor by tensor, is llama.cpp's
own naming (``token_embd``, ``blk.N.attn_q`` …, ``output_norm``, ``output`` unless the head is tied):

- llama.cpp runs the ``llama`` architecture with interleaved rotary pairs, where transformers
  rotates the two halves of each head (``rotate_half``), so ``q`` and ``k`` rows are permuted head
  by head (``_permute_rope``): the same attention, the other pairing.  ``qwen2`` runs with
  transformers' pairing (llama.cpp's "neox" rope) and keeps its rows, and its q/k/v biases;
- one-dimensional tensors (norms, biases) stay float32; matrices are written as ``f32``, ``f16``
  or ``q8_0`` (``GGUF_TYPES``; q8_0 needs rows that are a multiple of 32 wide, else f16);
- the vocabulary is the tokenizer's byte-level BPE (``tokenizer.ggml.model = gpt2``): its tokens
  by id, their kinds (special tokens are control tokens), its merges, the bos/eos/pad ids and the
  pre-tokenizer llama.cpp should split text with (``_pre_tokenizer``).  The ggml level hands
  llama.cpp token ids, never text, so the pre-tokenizer only matters to llama.cpp's own programs
  (the benchmark's llama.cpp contenders tokenize their prompts themselves; the benchmark checks
  their tokens equal ours).

Nothing here runs a model; ``gguf`` (the package llama.cpp publishes) is imported when a file is
written.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hsd.errors import ConfigError
from hsd.levels.lean import _rope_type, lean_support

GGUF_TYPES = ("f32", "f16", "q8_0")
QK8_0 = 32                      # q8_0 block width: a row must be a multiple of it


def gguf_support(model) -> str | None:
    """None when ``export_gguf`` covers ``model``; else one sentence saying why not."""
    problem = lean_support(model)
    if problem:
        return problem.replace("the lean forward", "the GGUF export")
    if _rope_type(model.config) not in ("default", "linear"):
        return f"the GGUF export covers the default and linear rope, not {_rope_type(model.config)}"
    return None


def _permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows of a q or k projection, from transformers' half-split rotary pairs to llama.cpp's
    interleaved ones (per head: row j of the first half and row j of the second become 2j, 2j+1)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _tensors(model):
    """(gguf name, float32 numpy array) for every tensor llama.cpp reads, in its order."""
    c = model.config
    arch = c.model_type
    n_head, n_kv = c.num_attention_heads, c.num_key_value_heads
    inner = model.model

    def arr(t):
        return t.detach().to(torch.float32).cpu().numpy()

    yield "token_embd.weight", arr(inner.embed_tokens.weight)
    for i, layer in enumerate(inner.layers):
        a, m = layer.self_attn, layer.mlp
        q, k = a.q_proj.weight, a.k_proj.weight
        if arch == "llama":
            q, k = _permute_rope(q, n_head), _permute_rope(k, n_kv)
        yield f"blk.{i}.attn_norm.weight", arr(layer.input_layernorm.weight)
        yield f"blk.{i}.attn_q.weight", arr(q)
        yield f"blk.{i}.attn_k.weight", arr(k)
        yield f"blk.{i}.attn_v.weight", arr(a.v_proj.weight)
        yield f"blk.{i}.attn_output.weight", arr(a.o_proj.weight)
        for short, proj in (("q", a.q_proj), ("k", a.k_proj), ("v", a.v_proj)):
            if proj.bias is not None:
                bias = proj.bias
                if arch == "llama" and short in "qk":
                    bias = _permute_rope(bias, n_head if short == "q" else n_kv)
                yield f"blk.{i}.attn_{short}.bias", arr(bias)
        yield f"blk.{i}.ffn_norm.weight", arr(layer.post_attention_layernorm.weight)
        yield f"blk.{i}.ffn_gate.weight", arr(m.gate_proj.weight)
        yield f"blk.{i}.ffn_up.weight", arr(m.up_proj.weight)
        yield f"blk.{i}.ffn_down.weight", arr(m.down_proj.weight)
    yield "output_norm.weight", arr(inner.norm.weight)
    if model.lm_head.weight.data_ptr() != inner.embed_tokens.weight.data_ptr():
        yield "output.weight", arr(model.lm_head.weight)


def _pre_tokenizer(tokenizer_json: dict, model) -> str:
    """The name llama.cpp knows the text splitting by: ``gpt-2`` for a plain byte-level
    pre-tokenizer with GPT-2's pattern (the bundled family), ``qwen2`` / ``smollm`` for those
    families, ``default`` otherwise."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if model.config.model_type == "qwen2":
        return "qwen2"
    if "smollm" in str(getattr(model.config, "_name_or_path", "")).lower():
        return "smollm"
    return "default"


def vocabulary_problem(tokenizer) -> str | None:
    """None when llama.cpp can hold ``tokenizer``'s vocabulary (a fast byte-level BPE one); else
    why not -- the file then gets placeholder tokens: it runs from token ids (the ggml level), but
    llama.cpp's own programs cannot tokenize text for it."""
    if tokenizer is None:
        return "no tokenizer given"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "the tokenizer is not a fast (tokenizers) one"
    kind = (json.loads(backend.to_str()).get("model") or {}).get("type")
    return None if kind == "BPE" else f"llama.cpp holds byte-level BPE vocabularies, not {kind}"


def _vocabulary(tokenizer, n_vocab: int, model):
    """(tokens, kinds, merges, pre-tokenizer) of a byte-level BPE tokenizer, padded to the
    model's ``n_vocab`` rows with unused tokens."""
    from gguf import TokenType

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    bpe = spec["model"]
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = {a["id"] for a in spec.get("added_tokens", []) if a.get("special")}
    added = {a["id"] for a in spec.get("added_tokens", [])}
    tokens, kinds = [], []
    for i in range(n_vocab):
        if i in by_id:
            tokens.append(by_id[i])
            kinds.append(TokenType.CONTROL if i in special else
                         TokenType.USER_DEFINED if i in added else TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            kinds.append(TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges", [])]
    return tokens, kinds, merges, _pre_tokenizer(spec, model)


def export_gguf(model, tokenizer, path: str | Path, *, dtype: str = "f32", name: str | None = None) -> Path:
    """Write ``model`` (a loaded Llama / Qwen2 causal LM) and ``tokenizer``'s vocabulary (placeholder
    tokens where ``vocabulary_problem`` says llama.cpp cannot hold it, or for None) to
    ``path`` as GGUF, its matrices in ``dtype`` (one of ``GGUF_TYPES``).  Returns the path.
    Raises ``ConfigError`` (one sentence) for a model or tokenizer it does not cover."""
    import gguf
    import numpy as np

    if dtype not in GGUF_TYPES:
        raise ConfigError(f"the GGUF type must be one of {', '.join(GGUF_TYPES)}, got {dtype!r}")
    problem = gguf_support(model)
    if problem:
        raise ConfigError(problem)
    c = model.config
    arch = c.model_type
    n_vocab = int(model.model.embed_tokens.weight.shape[0])
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    if vocabulary_problem(tokenizer):      # ids only (the ggml level never sends text)
        tokens, kinds, merges, pre = [f"<id{i}>" for i in range(n_vocab)], [1] * n_vocab, None, None
    else:
        tokens, kinds, merges, pre = _vocabulary(tokenizer, n_vocab, model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]

    w = gguf.GGUFWriter(path, arch)
    # 1) the architecture's hyper-parameters
    w.add_name(name or Path(str(getattr(c, "_name_or_path", "") or "model")).name or "model")
    w.add_file_type(file_type)
    w.add_context_length(int(c.max_position_embeddings))
    w.add_embedding_length(int(c.hidden_size))
    w.add_block_count(int(c.num_hidden_layers))
    w.add_feed_forward_length(int(c.intermediate_size))
    w.add_head_count(int(c.num_attention_heads))
    w.add_head_count_kv(int(c.num_key_value_heads))
    w.add_key_length(int(head_dim))
    w.add_value_length(int(head_dim))
    w.add_rope_dimension_count(int(head_dim))
    params = getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {}
    w.add_rope_freq_base(float(params.get("rope_theta", getattr(c, "rope_theta", 10000.0))))
    if _rope_type(c) == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(params["factor"]))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_vocab_size(n_vocab)
    # 2) the vocabulary
    if merges is None:         # placeholder tokens: a sentencepiece-style list needs no merges
        w.add_tokenizer_model("llama")
        w.add_token_scores([0.0] * n_vocab)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_merges(merges)
    w.add_token_list(tokens)
    w.add_token_types(kinds)
    for key, setter in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                        ("pad_token_id", w.add_pad_token_id)):
        value = getattr(tokenizer, key, None) if tokenizer is not None else None
        if value is None:
            value = getattr(c, key, None)
        if isinstance(value, int):
            setter(value)
    probe = tokenizer("a").input_ids if merges is not None else []
    w.add_add_bos_token(len(probe) > 1 and probe[0] == tokenizer.bos_token_id)
    w.add_add_eos_token(False)
    # 3) the tensors
    for tensor_name, data in _tensors(model):
        if data.ndim == 1 or dtype == "f32":
            w.add_tensor(tensor_name, data.astype(np.float32))
        elif dtype == "q8_0" and data.shape[-1] % QK8_0 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(tensor_name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(tensor_name, data.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
