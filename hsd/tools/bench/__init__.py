"""``hsd bench``: side-by-side speed against plain decoding and Hugging Face assisted
generation, in ONE run (issue 6).

Contenders (all on the same loaded family, same prompts, same device, same run):

- (a) the target alone with transformers ``generate`` — the autoregressive baseline;
- (b) transformers assisted generation (``assistant_model=``) with the drafter and draft length of
      (c): ``num_assistant_tokens`` fixed, ``num_assistant_tokens_schedule="constant"``,
      ``assistant_confidence_threshold`` off (0), so both propose exactly γ tokens per round;
- (b) with the model-free n-gram level in the family: also transformers' own prompt lookup
      (``prompt_lookup_num_tokens``, the block of the n-gram level's best single draft); (b)
      assisted generation then takes the best MODEL drafter;
- (c) this engine, the best single draft of any kind (a model or the n-gram level; drafter and γ
      from the optimiser over single drafts);
- (d) this engine, the optimiser's hierarchy (rule ``hsd``);
- (e) (d) with each other lossless verification rule (``token``, ``block``);
- (f) hand-picked hierarchies: the target alone through the engine (shallowest: separates the
      engine's per-token overhead from transformers'), the smallest drafter alone, and the deeper
      alternatives ``hsd.plan.contenders`` chooses (best other stack, full stack).

Per temperature, every prompt × repeat runs every contender once, in an order rotated per
(prompt, repeat) so slow machine drift hits all alike; one warm-up decode per contender is
excluded.  Per run we time the whole call (wall clock, prefill included) and count forward passes
and their wall time per model through forward hooks (the engine and ``generate`` both call
``model(...)``), which gives tokens per target call for transformers' contenders and the share of
wall time spent OUTSIDE model forwards for everyone.  Summaries are medians; ratios such as
(c)/(b) are taken per (prompt, repeat) — both decoded the same prompt back to back — and reported
as median and min–max.  Greedy runs also check every contender's tokens against (a)'s.

End of sequence is ignored by default (every contender emits exactly ``max_new_tokens``: equal
work per run; transformers gets ``eos_token_id=None``, the engine ``stop_at_eos=False``).
transformers' own sampling uses the global torch RNG, so its runs are wrapped in
``torch.random.fork_rng`` (the caller's RNG state is untouched); the engine uses its generator.

Model-predicted ms/token comes from ``hsd.latency`` (OUR derivation) on the profile; there is none
for (b).  Numbers depend on the machine's load: run nothing else at the same time.

The figure is ``visual.bench.figure_bench(report)``, a pure function of the JSON report; this
module imports it only inside ``write_figure`` and never touches plotly itself.
"""
from hsd.tools.bench.contenders import ENGINE_RULE, BenchContender, pick_bench_contenders
from hsd.tools.bench.core import FORMAT, bench
from hsd.tools.bench.report import format_markdown, format_report, write_figure
from hsd.tools.bench.runners import Decode, ForwardMeter, Run, assistant_settings, hf_kwargs, make_runner
from hsd.tools.bench.stats import first_mismatch, paired_ratios, rotated, spread, summarise
from hsd.tools.paths import PROMPT_FILES, default_prompts_path, load_prompts, parse_prompts

__all__ = ["ENGINE_RULE", "BenchContender", "pick_bench_contenders", "FORMAT", "bench", "format_markdown", "format_report",
           "write_figure", "Decode", "ForwardMeter", "Run", "assistant_settings", "hf_kwargs", "make_runner",
           "first_mismatch", "paired_ratios", "rotated", "spread", "summarise", "PROMPT_FILES",
           "default_prompts_path", "load_prompts", "parse_prompts"]
