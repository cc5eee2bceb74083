"""Timing one decode of one benchmark contender: the engine, transformers ``generate`` and
transformers assisted generation, with forward passes counted and timed through hooks."""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from hsd.tools.bench.contenders import BenchContender


@dataclass(frozen=True)
class Run:
    """One timed decode (wall clock) of one contender on one prompt."""

    contender: str
    prompt: int
    repeat: int
    n_tokens: int
    wall_ms: float                  # whole call, prefill included
    target_calls: int               # target forwards that produced tokens
    forward_calls: tuple[int, ...]  # per family model, prefill included
    forward_ms: tuple[float, ...]   # per family model
    token_ids: tuple[int, ...]

    @property
    def tokens_per_s(self) -> float:
        return 1000.0 * self.n_tokens / self.wall_ms if self.wall_ms > 0 else float("nan")

    @property
    def outside_forward_share(self) -> float:
        """Share of the wall time NOT spent inside a model forward (engine/framework overhead);
        NaN where no forward was seen (llama.cpp's own programs time theirs themselves)."""
        if self.wall_ms <= 0 or not any(self.forward_calls):
            return float("nan")
        return 1.0 - sum(self.forward_ms) / self.wall_ms


class ForwardMeter:
    """Counts forward passes and their wall time per model through forward hooks.  Synchronises
    CUDA around each forward so the time is honest on asynchronous devices."""

    def __init__(self, models: Sequence, device):
        self.models = list(models)
        self.sync = _synchronizer(device)
        self.calls = [0] * len(self.models)
        self.ms = [0.0] * len(self.models)
        self._t0 = [0.0] * len(self.models)
        self._handles = []

    def __enter__(self) -> "ForwardMeter":
        for i, m in enumerate(self.models):
            if not hasattr(m, "register_forward_pre_hook"):         # the model-free n-gram level
                continue
            self._handles.append(m.register_forward_pre_hook(self._pre(i)))
            self._handles.append(m.register_forward_hook(self._post(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre(self, i: int):
        def hook(module, args):
            self.sync()
            self._t0[i] = time.perf_counter()
        return hook

    def _post(self, i: int):
        def hook(module, args, output):
            self.sync()
            self.ms[i] += (time.perf_counter() - self._t0[i]) * 1000.0
            self.calls[i] += 1
        return hook

    def snapshot(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        return tuple(self.calls), tuple(self.ms)


def _synchronizer(device) -> Callable[[], None]:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@contextlib.contextmanager
def assistant_settings(model, num_assistant_tokens: int):
    """Give ``model`` (the assistant) a private generation config for one call: a fixed number of
    draft tokens per round, constant schedule, confidence-threshold early stop off.  transformers
    reads these from the ASSISTANT's ``generation_config``; the original is restored afterwards."""
    saved = model.generation_config
    cfg = copy.deepcopy(saved)
    cfg.num_assistant_tokens = int(num_assistant_tokens)
    cfg.num_assistant_tokens_schedule = "constant"
    cfg.assistant_confidence_threshold = 0.0            # 0 = off (ConfidenceCriteria needs > 0)
    model.generation_config = cfg
    try:
        yield
    finally:
        model.generation_config = saved


@dataclass(frozen=True)
class Decode:
    """What one decode is asked to do (the same for every contender of a run)."""

    prompt_text: str
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    seed: int
    stop_at_eos: bool


def hf_kwargs(job: Decode, tokenizer) -> dict:
    """``generate`` keyword arguments matching the engine's settings: greedy at temperature 0,
    else plain sampling at ``temperature`` (top-k and top-p off, as the engine's defaults)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    kwargs = dict(max_new_tokens=job.max_new_tokens, min_new_tokens=0,
                  eos_token_id=eos if job.stop_at_eos else None,
                  pad_token_id=pad if pad is not None else (eos if eos is not None else 0))
    if job.temperature > 0:
        kwargs.update(do_sample=True, temperature=float(job.temperature), top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    return kwargs


def make_runner(family, contender: BenchContender, meter: ForwardMeter, forward: str = "auto") -> Callable[[Decode], tuple]:
    """``runner(job) -> (token_ids, wall_ms, target_calls, forwards)`` for one contender.
    ``forwards``: (calls, ms) per family model from the engine's own level counters (the lean
    forward calls no ``model(...)`` for the meter's hooks to see); None for transformers' runs,
    which the meter counts."""
    import torch

    sync = _synchronizer(family.device)
    target_index = contender.chain[-1]
    if contender.runner.startswith("llamacpp-"):
        from hsd.tools.bench import llamacpp

        make = llamacpp.make_generate_runner if contender.runner == "llamacpp-generate" else llamacpp.make_program_runner
        return make(family, contender, torch.get_num_threads())
    if contender.runner == "engine":
        from hsd.engine import Hierarchy

        h = Hierarchy.from_family(family, chain=list(contender.chain), buffers=list(contender.buffers),
                                  rules=contender.rule, forward=forward, threads=None)
        n_models = len(family.models)

        def run_engine(job: Decode):
            sync()
            t0 = time.perf_counter()
            result = h.generate(job.prompt_text, max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                                seed=job.seed, stop_at_eos=job.stop_at_eos)
            sync()
            wall = (time.perf_counter() - t0) * 1000.0
            summary = result.trace.summary()
            calls, ms = [0] * n_models, [0.0] * n_models
            for model, level in zip(contender.chain, summary.levels):
                calls[model], ms[model] = level.forward_passes, level.forward_ms
            return tuple(result.token_ids), wall, summary.target_calls, (tuple(calls), tuple(ms))
        return run_engine

    target = family.models[target_index]
    assistant = family.models[contender.chain[0]] if contender.runner == "hf-assisted" else None
    gamma = contender.buffers[0] if contender.buffers else 0
    lookup = contender.runner == "hf-prompt-lookup"
    devices = [family.device] if torch.device(family.device).type == "cuda" else []

    def run_hf(job: Decode):
        ids = torch.tensor([list(job.prompt_ids)], dtype=torch.long, device=family.device)
        kwargs = hf_kwargs(job, family.tokenizer)
        calls0 = meter.calls[target_index]
        settings = assistant_settings(assistant, gamma) if assistant is not None else contextlib.nullcontext()
        with settings, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(job.seed)
            if assistant is not None:
                kwargs["assistant_model"] = assistant
            if lookup:                                # transformers' prompt lookup, the n-gram level's peer
                kwargs.update(prompt_lookup_num_tokens=gamma, max_matching_ngram_size=3)
            sync()
            t0 = time.perf_counter()
            out = target.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            sync()
            wall = (time.perf_counter() - t0) * 1000.0
        new = out[0, ids.shape[1]:].tolist()
        return tuple(new), wall, meter.calls[target_index] - calls0, None
    return run_hf


def _timed(runner, meter: ForwardMeter, contender: BenchContender, job: Decode, prompt: int, repeat: int) -> Run:
    calls0, ms0 = meter.snapshot()
    token_ids, wall, target_calls, forwards = runner(job)
    calls1, ms1 = meter.snapshot()
    calls, ms = forwards if forwards is not None else (tuple(b - a for a, b in zip(calls0, calls1)),
                                                       tuple(b - a for a, b in zip(ms0, ms1)))
    return Run(contender.key, prompt, repeat, len(token_ids), wall, int(target_calls), calls, ms,
               tuple(int(t) for t in token_ids))
