"""Building the bundled offline family (``python -m hsd.family train|card``), in steps:

- ``plan``    what to build: shapes and training stages (``TrainingPlan``, ``PLAN``, ``TINY_PLAN``);
- ``corpus``  the standard library's source, the BPE tokenizer, batches and held-out windows;
- ``prune``   cutting a draft out of the model above it, and growing a model deeper;
- ``design``  the design study: costs of candidate shapes, the optimum they would give;
- ``distill`` the training loss and precision;
- ``train``   carrying a plan out, resumably, and exporting the family;
- ``card``    measuring the exported family and writing its model card;
- ``tiny``    tiny real models built in memory (tests, the load test).

Tooling beside the engine: the core (``hsd.engine`` …) never imports this package.
"""
from dataclasses import replace

from hsd.family.corpus import corpus_files, encode_files, split_files, stdlib_dir
from hsd.family.distill import DistillLoss, autocast, heldout_loss, native_bf16, precision, stage_loss
from hsd.family.plan import (EOS, KD_WEIGHT, PLAN, TINY_PLAN, TV_WEIGHT, ModelSpec, Stage,
                             TrainingPlan)
from hsd.family.prune import activation_importance, grown, pruned
from hsd.family.train import make_config, reuse_stages, train_family

__all__ = ["replace", "corpus_files", "encode_files", "split_files", "stdlib_dir", "DistillLoss", "autocast",
           "heldout_loss", "native_bf16", "precision", "stage_loss", "EOS", "KD_WEIGHT", "PLAN", "TINY_PLAN",
           "TV_WEIGHT", "ModelSpec", "Stage", "TrainingPlan", "activation_importance", "grown", "pruned", "make_config",
           "reuse_stages", "train_family"]
