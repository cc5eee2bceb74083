"""What the bundled family is: each model's shape and its training stages (``TrainingPlan``),
and the constants of the recipe.  Plain data; ``hsd.family.train`` carries a plan out."""
from __future__ import annotations

from dataclasses import dataclass, replace

EOS = "<|endoftext|>"
HELDOUT_EVERY = 20          # file i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1
KD_WEIGHT = 0.9             # weight of KL(teacher ‖ student); the rest is cross-entropy
TV_WEIGHT = 1.0             # plus this weight of the total-variation distance (= 1 − acceptance)
IMPORTANCE_BATCHES = 4      # batches that rank channels, heads and neurons when pruning
CHECKPOINT_EVERY_S = 180.0
# The test suite is part of the corpus: without it the stdlib is 3.3M tokens and a 12M-parameter
# target overfits it (train 2.31, held-out 2.63 nats) until its own 3-layer distilled draft ties it.
SKIP_DIR_NAMES = {"site-packages", "__pycache__"}


@dataclass(frozen=True)
class ModelSpec:
    """Shape of one family member (tied input/output embeddings)."""

    name: str
    hidden: int
    layers: int
    heads: int
    ffn: int

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden {self.hidden} not divisible by heads {self.heads}")


@dataclass(frozen=True)
class Stage:
    """One training stage: ``teacher`` None = cross-entropy from scratch, else distillation.

    The budget is ``steps`` optimiser steps (the cosine schedule runs over them), optionally cut
    short by a wall-clock cap of ``minutes`` (whichever ends first)."""

    spec: ModelSpec
    steps: int
    lr: float
    teacher: str | None = None          # work key of the teacher's finished stage
    minutes: float | None = None
    init_from: str | None = None        # start from this finished stage's weights (pruned to spec)
    key: str | None = None              # work-dir key; default: the model name
    init_layers: tuple[int, ...] | None = None   # init_from's layers to keep; default the first
    grow_at: tuple[int, ...] | None = None       # deeper than init_from: where its layers go
    part_of: str | None = None          # a first phase of this (larger) model; default its own

    @property
    def model(self) -> str:
        """The exported model this stage trains (a phase of ``part_of`` when set)."""
        return self.part_of or self.spec.name

    @property
    def work_key(self) -> str:
        return self.key or self.spec.name


@dataclass(frozen=True)
class TrainingPlan:
    vocab_size: int
    context_tokens: int
    batch_size: int
    stages: tuple[Stage, ...]          # target first, then drafts largest → smallest
    eval_windows: int = 48
    seed: int = 1234
    max_files: int | None = None       # corpus slice (tests)
    warmup_steps: int = 60

    @property
    def names(self) -> list[str]:
        """Smallest first, target last (each model's last stage comes after every larger one's)."""
        last = {s.model: i for i, s in enumerate(self.stages)}
        return sorted(last, key=last.get, reverse=True)

    def last_stage(self, name: str) -> Stage:
        """The stage whose weights are exported for ``name``."""
        return [s for s in self.stages if s.model == name][-1]

    def scaled(self, factor: float) -> "TrainingPlan":
        return replace(self, stages=tuple(replace(s, steps=max(1, round(s.steps * factor)))
                                          for s in self.stages))


# The bundled family (v3, 2026-12-02), shaped by the design study (python -m hsd.family design;
# the card prints it): on this CPU a forward costs about 1.25 ms + 0.49 ms a layer whatever the
# width, so cost follows depth, and a stack pays when the target is many times deeper than a
# middle model that stays close to it.  A 32-layer 192-wide target, an 8-layer middle made of
# its layers, drafts of 2 and 1 layers; FFN 384 keeps the four within 40 MB in fp16.
# Training a 32-layer model from scratch costs about 3 s a step here, so the target is grown:
# an 8-layer model is trained first, then expanded to 32 layers without changing what it
# computes (LLaMA Pro block expansion) and trained on; the middle is cut back out of the target
# at the grown positions and distilled toward it, so it starts as a sub-network of the target.
XS = ModelSpec("hsd-family-xs", hidden=192, layers=1, heads=3, ffn=384)     # s's first layer
S = ModelSpec("hsd-family-s", hidden=192, layers=2, heads=3, ffn=384)       # m's first and last
M = ModelSpec("hsd-family-m", hidden=192, layers=8, heads=3, ffn=384)       # l's layers 0, 4, ... 28
L = ModelSpec("hsd-family-l", hidden=192, layers=32, heads=3, ffn=384)
GROWN_AT = tuple(range(0, 32, 4))

PLAN = TrainingPlan(
    vocab_size=4096,
    context_tokens=256,
    batch_size=16,
    stages=(
        Stage(M, steps=1800, lr=2e-3, key="hsd-family-l-base", part_of=L.name),   # l's first phase
        Stage(L, steps=500, lr=1e-3, init_from="hsd-family-l-base", grow_at=GROWN_AT),
        Stage(M, steps=450, lr=1e-3, teacher=L.name, init_from=L.name, init_layers=GROWN_AT),
        # distilled from the grown target, m caught up with it (held-out loss 2.769 against l's
        # 2.772 after these 450 steps): l trains on, and m follows it at a lower rate
        Stage(L, steps=200, lr=6e-4, init_from=L.name, key="hsd-family-l-2"),
        Stage(M, steps=100, lr=3e-4, teacher="hsd-family-l-2", init_from=M.name, key="hsd-family-m-2"),
        Stage(S, steps=1200, lr=3e-3, teacher="hsd-family-m-2", init_from="hsd-family-m-2", init_layers=(0, 7)),
        Stage(XS, steps=800, lr=3e-3, teacher=S.name, init_from=S.name, init_layers=(0,)),
    ),
)

# The family bundled until 2026-12-02 (v2), kept to rebuild it: python -m hsd.family train --plan v2
# Sizes are capped by the 40 MB the family may take in fp16 (≈ 19.5M parameters in all) and
# shaped by this CPU, where every decoder layer costs ~1 ms a call whatever its width: drafts
# are shallow.  Each draft is cut out of the model above it (layers chosen, then the least
# important hidden channels, heads and FFN neurons dropped -- Minitron-style) and distilled
# toward it, so it starts close to its verifier instead of from noise.
V2_XS = ModelSpec("hsd-family-xs", hidden=128, layers=2, heads=2, ffn=256)   # s at 2/3 width
V2_S = ModelSpec("hsd-family-s", hidden=192, layers=2, heads=3, ffn=256)     # m's layers 0, 2
V2_M = ModelSpec("hsd-family-m", hidden=384, layers=3, heads=6, ffn=512)     # l's layers 0, 4, 5
V2_L = ModelSpec("hsd-family-l", hidden=384, layers=6, heads=6, ffn=1024)

V2_PLAN = TrainingPlan(
    vocab_size=4096,
    context_tokens=256,
    batch_size=16,
    stages=(
        # idle 2-core CPU, bf16 autocast, 4096 tokens a step (2026-11-23 build): l 0.90 s/step
        # alone (33 min), m 0.86 s/step with l teaching (22 min), s 0.77 (19 min).  2026-11-29/30,
        # an AVX2-only EPYC, fp32 and the fused loss: s 1.1-1.3 s/step with m teaching, xs 0.65
        Stage(V2_L, steps=2200, lr=2e-3),                    # 9.0M tokens ≈ one pass of the corpus
        # m keeps l's first and last two layers (a first/last-layer cut starts at α 0.54 against
        # l, the first three layers at 0.42) with the FFN halved; a from-scratch 3x256 m
        # distilled for 700 steps only reached α(m, l) = 0.64 against this well-trained target.
        # s keeps m's first and last layers at half width (FFN 256): α(s, m) = 0.79, where one
        # 192-wide layer cut from l (FFN 768, same parameter count) reached 0.64 (copying via
        # induction heads needs two layers: Olsson et al. 2022).
        Stage(V2_M, steps=1500, lr=1e-3, teacher=V2_L.name, init_from=V2_L.name, init_layers=(0, 4, 5)),
        Stage(V2_S, steps=1500, lr=3e-3, teacher=V2_M.name, init_from=V2_M.name, init_layers=(0, 2)),
        # ... then more steps at a third of the rate: α(s, m) 0.792 after the first 1500 (card,
        # 48 windows), 0.806 after 600 more, 0.816 after 800 more (2026-11-30, fp32 weights)
        Stage(V2_S, steps=600, lr=1e-3, teacher=V2_M.name, init_from=V2_S.name, key="hsd-family-s-2"),
        Stage(V2_S, steps=800, lr=1e-3, teacher=V2_M.name, init_from="hsd-family-s-2",
              key="hsd-family-s-3"),
        # xs keeps both of s's layers at 2/3 width: α(xs, s) = 0.891, where the one-layer xs
        # (s's first layer, 128 wide) stalled at 0.66 -- copying via induction heads needs two
        # layers; it fits the 40 MB since tokenizer.json is written on one line
        Stage(V2_XS, steps=1500, lr=3e-3, teacher="hsd-family-s-3", init_from="hsd-family-s-3"),
    ),
)

# A second family, for checking the latency model on models it was not tuned on (issue 16):
# other shapes (a 4-layer 256-wide target, a 2-layer middle, a 1-layer draft), another seed, a
# shorter build (about 10 minutes on 2 cores).  Built into an ignored folder, never shipped:
#   python -m hsd.family train --plan second --out .cache/family-second --work .cache/second-train
B_S = ModelSpec("hsd-second-s", hidden=128, layers=1, heads=2, ffn=256)
B_M = ModelSpec("hsd-second-m", hidden=256, layers=2, heads=4, ffn=384)
B_L = ModelSpec("hsd-second-l", hidden=256, layers=4, heads=4, ffn=768)

SECOND_PLAN = TrainingPlan(
    vocab_size=4096,
    context_tokens=256,
    batch_size=16,
    stages=(
        Stage(B_L, steps=900, lr=2e-3),
        Stage(B_M, steps=450, lr=2e-3, teacher=B_L.name, init_from=B_L.name, init_layers=(0, 3)),
        Stage(B_S, steps=450, lr=3e-3, teacher=B_M.name, init_from=B_M.name, init_layers=(0,)),
    ),
    seed=4321,
    warmup_steps=40,
)

PLANS = {"bundled": PLAN, "v2": V2_PLAN, "second": SECOND_PLAN}

TINY_PLAN = TrainingPlan(  # for tests: seconds, not minutes
    vocab_size=320,
    context_tokens=32,
    batch_size=4,
    stages=(
        Stage(ModelSpec("tiny-b", hidden=32, layers=2, heads=2, ffn=64), steps=6, lr=3e-3,
              minutes=5),
        Stage(ModelSpec("tiny-a", hidden=16, layers=1, heads=1, ffn=32), steps=4, lr=3e-3,
              teacher="tiny-b", minutes=5, init_from="tiny-b", init_layers=(1,)),
    ),
    eval_windows=4,
    max_files=40,
    warmup_steps=2,
)


def make_config(spec: ModelSpec, plan: TrainingPlan, eos_id: int):
    """The transformers ``LlamaConfig`` of one member (tied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=plan.vocab_size, hidden_size=spec.hidden,
                       intermediate_size=spec.ffn, num_hidden_layers=spec.layers,
                       num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
                       max_position_embeddings=plan.context_tokens, tie_word_embeddings=True,
                       bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
                       rope_theta=10000.0, attention_dropout=0.0)
