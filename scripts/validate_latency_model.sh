#!/usr/bin/env bash
# The latency model against wall clock (issue 16), with the profile measured in the same run:
# the bundled family and the second family (built by scripts/validate_second_family.sh's first
# step into the ignored .cache/, ~21 min), each at T = 1 and greedy.  Acceptance is measured on
# assets/prompts/profile.txt, the decodes run on assets/prompts/validate.txt (held-out stdlib code,
# disjoint files).  Writes assets/validation-{bundled,second}-t{1,0}.{json,txt} and each run's
# profile beside it.  About 50 minutes on 2 CPU cores; run it on an otherwise idle machine.
#   scripts/validate_latency_model.sh [bundled|second ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
SECOND=.cache/family-second
FAMILIES=("${@:-bundled second}")
for NAME in ${FAMILIES[@]}; do
  case "$NAME" in
    bundled) SPEC=bundled ;;
    second)  SPEC="$SECOND/hsd-second-s,$SECOND/hsd-second-m,$SECOND/hsd-second-l" ;;
    *) echo "unknown family $NAME (bundled or second)" >&2; exit 2 ;;
  esac
  for T in 0 1; do
    OUT="assets/validation-$NAME-t$T"
    flock /tmp/hsd-timing.lock $PY -m hsd validate --family "$SPEC" --fresh-profile --retime-costs --repeats 3 \
        --temperature "$T" --threads 2 --json "$OUT.json" --save-profile "$OUT-profile.json" | tee "$OUT.txt"
  done
done
