#!/usr/bin/env bash
# Re-measure the bundled family's assets on the ggml level (--forward llamacpp), beside the torch
# ones refresh_family_assets.sh writes: profiles (T = 1 and greedy, with and without the n-gram
# level), plans, validations and the benchmark against llama.cpp's own decoders.
#   scripts/build_llama_cpp.sh && scripts/refresh_llamacpp_assets.sh [--force]
# Resumable: a step whose output exists is skipped (--force redoes them all).  Run it on an
# otherwise idle machine; every timing step takes /tmp/hsd-timing.lock.  About 40 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
LOCK="flock /tmp/hsd-timing.lock"
FORCE=${1:-}
todo() { [[ "$FORCE" == "--force" || ! -s "$1" ]]; }
for fam in bundled ngram,bundled; do
  tag=${fam/,/-}
  for t in 1 0; do
    prof=assets/profile-$tag-llamacpp-t$t.json
    todo "$prof" && $LOCK $PY -m hsd profile --family "$fam" --forward llamacpp --temperature $t --threads 2 --out "$prof"
    todo assets/plan-$tag-llamacpp-t$t.txt && $PY -m hsd optimize "$prof" | tee assets/plan-$tag-llamacpp-t$t.txt
  done
done
for spec in bundled:1 bundled:0 ngram,bundled:0; do
  fam=${spec%:*}; t=${spec#*:}; tag=${fam/,/-}
  out=assets/validation-$tag-llamacpp-t$t
  todo "$out.json" && $LOCK $PY -m hsd validate --family "$fam" --forward llamacpp \
      --profile assets/profile-$tag-llamacpp-t$t.json --temperature $t --repeats 2 --threads 2 --retime-costs \
      --json "$out.json" | tee "$out.txt"
done
mkdir -p assets/bench
for fam in bundled ngram,bundled; do
  tag=${fam/,/-}
  for t in 0 1; do
    out=assets/bench/bench-$tag-llamacpp-t$t
    todo "$out.json" && $LOCK $PY -m hsd bench --family "$fam" --forward llamacpp \
        --profile assets/profile-$tag-llamacpp-t$t.json --max-prompts 6 --repeats 3 --max-new-tokens 128 \
        --temperature $t --threads 2 --json "$out.json" --markdown "$out.md" | tee "$out.txt"
  done
done
