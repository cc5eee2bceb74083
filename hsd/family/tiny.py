"""Tiny REAL transformers models and a character tokenizer, built in memory in seconds: the ONE
tiny-family builder of the tests, the load test (``hsd stress --family tiny``) and the
examples.  Random weights (or, for ``bigram_llama``, weights set by hand); never a mock.

Weight initialisation runs inside ``torch.random.fork_rng``: building a model never moves the
caller's global RNG.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ALPHABET = list("abcdefghijklmnopqrstuvwxyz ():=\n")
WIDE_ALPHABET = list("abcdefghijklmnopqrstuvwxyz ():=\n_,.0123456789")   # code-like prompts
EOS = "<eos>"


def tiny_tokenizer(alphabet=ALPHABET) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character, plus <eos> (id 0)."""
    vocab = {EOS: 0}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token=EOS, pad_token=EOS)


def tiny_llama(seed: int, *, vocab_size: int, hidden: int = 32, layers: int = 1, heads: int = 2,
               max_positions: int = 128, scale: float = 1.0) -> LlamaForCausalLM:
    """A random-weight Llama; ``scale`` multiplies the output head (sharper or flatter rows)."""
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, tie_word_embeddings=False,
                         bos_token_id=None, eos_token_id=0, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)                     # weight init only; decoding never uses this RNG
        model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def tiny_family(n: int = 3, *, vocab_size: int | None = None, seed: int = 0, scale: float = 30.0,
                alphabet=ALPHABET, max_positions: int = 128, hidden: int = 32, layers: int = 2):
    """n tiny models sharing the tiny tokenizer; the drafts are the target with noise added
    (more for smaller ones), so acceptance is high but far from 1 (like a real distilled family).
    ``hidden`` × ``layers`` is every model's shape.  Returns (models smallest first, tokenizer)."""
    tok = tiny_tokenizer(alphabet)
    v = vocab_size or len(tok)
    target = tiny_llama(seed, vocab_size=v, hidden=hidden, layers=layers, scale=scale, max_positions=max_positions)
    family = []
    for i in range(n - 1):
        draft = tiny_llama(seed, vocab_size=v, hidden=hidden, layers=layers, scale=scale,
                           max_positions=max_positions)
        g = torch.Generator().manual_seed(seed * 100 + i + 1)
        with torch.no_grad():
            for p in draft.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05 * (n - 1 - i))
        family.append(draft)
    family.append(target)
    return family, tok


def save_tiny_family(folder: Path, names=("tiny-s", "tiny-m", "tiny-l"), **kwargs) -> str:
    """``tiny_family(len(names), **kwargs)`` saved as safetensors folders (reused when already
    there); returns the comma-separated spec, smallest first."""
    folder = Path(folder)
    if not all((folder / n / "config.json").exists() for n in names):
        models_, tok = tiny_family(len(names), **kwargs)
        for name, model in zip(names, models_):
            model.save_pretrained(folder / name)
            tok.save_pretrained(folder / name)
    return ",".join(str(folder / n) for n in names)


def bigram_llama(log_probs: torch.Tensor) -> LlamaForCausalLM:
    """A real LlamaForCausalLM whose weights are set by hand so that it IS a bigram table:
    P(next = v | current token = u) = softmax(log_probs[u])[v] whatever came before.

    One-hot embeddings, attention and MLP outputs zeroed (o_proj, down_proj = 0), final RMSNorm
    weight 1/sqrt(d) so the normed state is exactly one-hot, and lm_head[v, u] = log_probs[u, v].
    Lets the exactness tests pit the engine against a target whose joint law is known exactly."""
    v = log_probs.shape[0]
    d = v + v % 2                                   # rotary embeddings need an even head size
    config = LlamaConfig(vocab_size=v, hidden_size=d, intermediate_size=4, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=64,
                         tie_word_embeddings=False, rms_norm_eps=1e-12, bos_token_id=None,
                         eos_token_id=0, pad_token_id=0)
    with torch.random.fork_rng():
        model = LlamaForCausalLM(config).eval()     # every weight that matters is set below
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(v, d))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(d ** -0.5)
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :v].copy_(log_probs.T)
    return model


def bigram_tables(rows_by_level):
    """``rows_by_level[i][u]`` = next-token probabilities after token u for model i (over the
    tokens a, b; <eos> gets no mass).  Returns (models, tokenizer) with the 'ab' tokenizer."""
    tok = tiny_tokenizer(list("ab"))
    models_ = []
    for rows in rows_by_level:
        lp = torch.full((3, 3), -40.0)
        for u, (pa, pb) in rows.items():
            lp[u, 1], lp[u, 2] = torch.log(torch.tensor([pa, pb]))
        models_.append(bigram_llama(lp))
    return models_, tok
