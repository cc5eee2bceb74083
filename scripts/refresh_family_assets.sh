#!/usr/bin/env bash
# Re-measure everything in assets/ that depends on the bundled family, after a rebuild:
#   scripts/refresh_family_assets.sh [FAMILY_BUILD_DIR]
# (FAMILY_BUILD_DIR = the --out of `python -m hsd.family train`, copied over assets/family first.)
# Timings: run it on an otherwise idle machine; every timing step takes /tmp/hsd-timing.lock so
# two timing jobs never overlap.  About 40-50 minutes on 2 CPU cores (the 32-layer target).
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
$LOCK $PY -m hsd validate --family bundled --profile assets/profile-bundled.json --repeats 2 --threads 2 --retime-costs \
    --json assets/validation-bundled.json | tee assets/validation-bundled.txt
$LOCK $PY -m hsd bench --family bundled --profile assets/profile-bundled.json --max-prompts 4 --repeats 2 \
    --max-new-tokens 96 --temperature 0,1 --json assets/bench/bench-bundled-cpu.json \
    --html assets/bench/bench-bundled-cpu.html --plotlyjs cdn --markdown assets/bench/table-bundled-cpu.md
$PY -m hsd.tools.examples --family bundled --out assets/examples
# the family with the model-free n-gram level below it, greedy (where prompt lookup pays)
$LOCK $PY -m hsd profile --family ngram,bundled --temperature 0 --out assets/profile-ngram-bundled.json --threads 2
$PY -m hsd optimize assets/profile-ngram-bundled.json | tee assets/plan-ngram-bundled.txt
$LOCK $PY -m hsd validate --family ngram,bundled --profile assets/profile-ngram-bundled.json --repeats 2 --retime-costs \
    --temperature 0 --threads 2 --json assets/validation-ngram-bundled.json | tee assets/validation-ngram-bundled.txt
$LOCK $PY -m hsd bench --family ngram,bundled --profile assets/profile-ngram-bundled.json --max-prompts 4 \
    --repeats 2 --max-new-tokens 96 --temperature 0 --json assets/bench/bench-ngram-bundled-cpu.json \
    --markdown assets/bench/table-ngram-bundled-cpu.md
# the README's screenshot and regime map: the app on the bundled family, in chromium
PORT=${PORT:-7861}
GRADIO_SERVER_PORT=$PORT $PY app.py > /tmp/hsd-refresh-app.log 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/gradio_api/info" > /dev/null && break; sleep 1; done
$LOCK $PY scripts/screenshots.py --url "http://127.0.0.1:$PORT" --themes light --readme assets/screenshot.png \
    --regime assets/regime-bundled.png
