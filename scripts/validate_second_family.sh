#!/usr/bin/env bash
# The latency model on a family it was not tuned on (issue 16): build the second family
# (hsd.family.plan.SECOND_PLAN: other shapes, another seed; ~15 min on 2 cores, resumable, into
# the ignored .cache/), then validate it at T = 1 and greedy with the profile measured in the same
# run.  Writes assets/validation-second-t{1,0}.{json,txt}.  Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
OUT=.cache/family-second
$PY -m hsd.family train --plan second --out "$OUT" --work .cache/second-train
SPEC="$OUT/hsd-second-s,$OUT/hsd-second-m,$OUT/hsd-second-l"
for T in 1 0; do
  $PY -m hsd validate --family "$SPEC" --fresh-profile --retime-costs --repeats 2 --temperature "$T" --threads 2 \
      --json "assets/validation-second-t$T.json" | tee "assets/validation-second-t$T.txt"
done
