"""Cutting a draft out of the model above it (Minitron-style, arXiv 2407.14679): chosen layers,
then the most active hidden channels, attention heads and FFN neurons, ranked on real batches."""
from __future__ import annotations

import torch

from hsd.family.plan import ModelSpec, TrainingPlan, make_config


@torch.no_grad()
def activation_importance(model, batches) -> dict:
    """Activation-based importance (Minitron: Muralidharan et al. 2024, arXiv 2407.14679) from
    forwards over ``batches``: per hidden channel the mean |output| of every RMSNorm, per attention
    head the mean L2 norm of its output before ``o_proj``, per FFN neuron the mean |input| of
    ``down_proj``.  Layer-indexed lists for heads and neurons."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    layers = model.model.layers
    imp = {"hidden": torch.zeros(c.hidden_size),
           "heads": [torch.zeros(c.num_attention_heads) for _ in layers],
           "ffn": [torch.zeros(c.intermediate_size) for _ in layers]}

    def add_hidden(_mod, _inp, out):
        imp["hidden"].add_(out.detach().float().abs().flatten(0, -2).mean(0))

    hooks = [model.model.norm.register_forward_hook(add_hidden)]
    for i, layer in enumerate(layers):
        hooks += [layer.input_layernorm.register_forward_hook(add_hidden),
                  layer.post_attention_layernorm.register_forward_hook(add_hidden)]

        def add_heads(_mod, inp, i=i):
            x = inp[0].detach().float()
            imp["heads"][i].add_(x.view(*x.shape[:-1], -1, head_dim).norm(dim=-1).flatten(0, -2).mean(0))

        def add_ffn(_mod, inp, i=i):
            imp["ffn"][i].add_(inp[0].detach().float().abs().flatten(0, -2).mean(0))

        hooks += [layer.self_attn.o_proj.register_forward_pre_hook(add_heads),
                  layer.mlp.down_proj.register_forward_pre_hook(add_ffn)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(input_ids=batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return imp


def _keep(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` highest scores, in their original order (all of them when n = len)."""
    if n == len(scores):
        return torch.arange(n)
    return scores.topk(n).indices.sort().values


def _check_cut(c, spec: ModelSpec, layers: tuple[int, ...], head_dim: int, batches) -> bool:
    """Raise ValueError (one sentence) unless ``spec`` can be cut from a model of config ``c``;
    returns whether the cut is narrower than the source (then importance is measured)."""
    problems = []
    if c.num_key_value_heads != c.num_attention_heads:
        problems.append("grouped-query attention is not supported")
    if spec.hidden > c.hidden_size or spec.heads > c.num_attention_heads or spec.ffn > c.intermediate_size:
        problems.append("width, heads and FFN must not exceed the source's")
    if spec.hidden != spec.heads * head_dim:
        problems.append(f"head size must stay {head_dim} (hidden = heads × {head_dim})")
    if len(layers) != spec.layers or list(layers) != sorted(set(layers)) \
            or not all(0 <= i < c.num_hidden_layers for i in layers):
        problems.append(f"layers {list(layers)} must be {spec.layers} increasing indices "
                        f"below {c.num_hidden_layers}")
    narrower = (spec.hidden, spec.heads, spec.ffn) != (c.hidden_size, c.num_attention_heads,
                                                       c.intermediate_size)
    if narrower and not batches and not problems:
        problems.append("pruning width needs batches to measure importance on")
    if problems:
        raise ValueError(f"{spec.name} cannot be cut from a {c.num_hidden_layers}-layer model of "
                         f"width {c.hidden_size}: " + "; ".join(problems))
    return narrower


def pruned(source, spec: ModelSpec, plan: TrainingPlan, layers: tuple[int, ...] | None = None,
           batches=None):
    """A ``spec``-shaped model cut out of a trained ``source``: the decoder layers ``layers``
    (default: the first ``spec.layers`` -- an early-exit copy as in LayerSkip), and, where
    ``spec`` is narrower, the most important hidden channels, attention heads and FFN neurons
    by ``activation_importance`` over ``batches`` (Minitron-style width pruning).  Head size
    stays the source's.  Distillation then starts close to the teacher instead of from noise."""
    from transformers import LlamaForCausalLM

    c = source.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    layers = tuple(range(spec.layers)) if layers is None else tuple(layers)
    narrower = _check_cut(c, spec, layers, head_dim, batches)
    imp = activation_importance(source, batches) if narrower else None

    def ranked(kind: str, n: int, layer: int | None = None) -> torch.Tensor:
        if imp is None:
            return torch.arange(n)
        return _keep(imp[kind] if layer is None else imp[kind][layer], n)

    keep_h = ranked("hidden", spec.hidden)
    keep_attn = {i: (ranked("heads", spec.heads, i)[:, None] * head_dim + torch.arange(head_dim)).flatten()
                 for i in layers}                                  # rows of the kept heads
    keep_ffn = {i: ranked("ffn", spec.ffn, i) for i in layers}

    sd = {}
    for k, v in source.state_dict().items():
        if not k.startswith("model.layers."):
            sd[k] = v[:, keep_h] if v.dim() == 2 else v[keep_h]      # embeddings, head, final norm
            continue
        i = int(k.split(".")[2])
        if i not in layers:
            continue
        new_k = k.replace(f"model.layers.{i}.", f"model.layers.{layers.index(i)}.", 1)
        if k.endswith("layernorm.weight"):
            v = v[keep_h]
        elif any(p in k for p in ("q_proj", "k_proj", "v_proj")):
            v = v[keep_attn[i]][:, keep_h]
        elif "o_proj" in k:
            v = v[keep_h][:, keep_attn[i]]
        elif "gate_proj" in k or "up_proj" in k:
            v = v[keep_ffn[i]][:, keep_h]
        elif "down_proj" in k:
            v = v[keep_h][:, keep_ffn[i]]
        else:
            raise ValueError(f"{spec.name}: unexpected weight {k} in the source")
        sd[new_k] = v.clone()
    model = LlamaForCausalLM(make_config(spec, plan, eos_id=c.eos_token_id or 0))
    model.load_state_dict(sd, strict=True)
    return model


def grown(source, spec: ModelSpec, plan: TrainingPlan, at: tuple[int, ...]):
    """A deeper ``spec``-shaped model that computes exactly what ``source`` does (function-
    preserving block expansion, as in LLaMA Pro, Wu et al. 2024): source layer k sits at position
    ``at[k]``; every other position holds a copy of the source layer before it with its two output
    projections (attention ``o_proj``, FFN ``down_proj``) zeroed, so it adds nothing to the
    residual stream until training moves it.  Width, heads and FFN stay the source's.  The source's
    layers then stay a sub-network of the grown model: a middle model cut back out of it at
    ``at`` starts as the source, close to the grown model."""
    from transformers import LlamaForCausalLM

    c = source.config
    at = tuple(at)
    problems = []
    if (spec.hidden, spec.heads, spec.ffn) != (c.hidden_size, c.num_attention_heads, c.intermediate_size):
        problems.append("width, heads and FFN must be the source's")
    if len(at) != c.num_hidden_layers or list(at) != sorted(set(at)) or not at or at[0] != 0 \
            or at[-1] >= spec.layers:
        problems.append(f"positions {list(at)} must be {c.num_hidden_layers} increasing indices "
                        f"from 0, below {spec.layers}")
    if problems:
        raise ValueError(f"{spec.name} cannot be grown from a {c.num_hidden_layers}-layer model of "
                         f"width {c.hidden_size}: " + "; ".join(problems))
    src = source.state_dict()
    owner = [max(k for k, p in enumerate(at) if p <= i) for i in range(spec.layers)]
    sd = {k: v.clone() for k, v in src.items() if not k.startswith("model.layers.")}
    for i, k_src in enumerate(owner):
        prefix = f"model.layers.{k_src}."
        for k, v in src.items():
            if k.startswith(prefix):
                name = k[len(prefix):]
                v = v.clone()
                if i not in at and ("o_proj" in name or "down_proj" in name):
                    v.zero_()
                sd[f"model.layers.{i}.{name}"] = v
    model = LlamaForCausalLM(make_config(spec, plan, eos_id=c.eos_token_id or 0))
    model.load_state_dict(sd, strict=True)
    return model
