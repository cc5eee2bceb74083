#!/usr/bin/env bash
# Re-measure everything in assets/ that depends on the bundled family, after a rebuild:
#   scripts/refresh_family_assets.sh [FAMILY_BUILD_DIR]
# (FAMILY_BUILD_DIR = the --out of `python -m hsd.family train`, copied over assets/family first.)
# Timings: run it on an otherwise idle machine; every timing step takes /tmp/hsd-timing.lock so
# two timing jobs never overlap.  About 15-20 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
LOCK="flock /tmp/hsd-timing.lock"
if [[ $# -ge 1 ]]; then
  rm -rf assets/family.new && cp -r "$1" assets/family.new
  rm -rf assets/family && mv assets/family.new assets/family
fi
du -sh assets/family
$PY -m hsd.family ngram --family assets/family                            # the n-gram level's fallback table
$LOCK $PY -m hsd.family design --json assets/family/design-study.json     # shapes' costs (the card prints it)
$LOCK $PY -m hsd.family card --family assets/family                       # card + card.json
$LOCK $PY -m hsd profile --family bundled --out assets/profile-bundled.json --threads 2
$PY -m hsd optimize assets/profile-bundled.json | tee assets/plan-bundled.txt
$LOCK $PY -m hsd validate --family bundled --profile assets/profile-bundled.json --repeats 2 --threads 2 \
    --json assets/validation-bundled.json | tee assets/validation-bundled.txt
$LOCK $PY -m hsd bench --family bundled --profile assets/profile-bundled.json --max-prompts 4 --repeats 2 \
    --max-new-tokens 96 --temperature 0,1 --json assets/bench/bench-bundled-cpu.json \
    --html assets/bench/bench-bundled-cpu.html --plotlyjs cdn --markdown assets/bench/table-bundled-cpu.md
$PY -m hsd.tools.examples --family bundled --out assets/examples
