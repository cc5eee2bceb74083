#!/usr/bin/env bash
# The latency model on a family it was not tuned on (issue 16): build the second family
# (hsd.family.plan.SECOND_PLAN: other shapes, another seed; ~21 min on 2 cores, resumable, into
# the ignored .cache/), then validate it greedy and at T = 1 with the profile measured in the same
# run (scripts/validate_latency_model.sh second).  Writes assets/validation-second-t{0,1}.*.
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
$PY -m hsd.family train --plan second --out .cache/family-second --work .cache/second-train
PY=$PY scripts/validate_latency_model.sh second
