#!/usr/bin/env bash
# Spoken-term search by example: word segments → segment autoencoder → index → evaluation vs DTW.
#
# Usage: bash recipes/search/run.sh [--stage N] [--stop-stage N] [--data DIR] [--exp DIR] [--config YAML]
#   stage 1  word segments of every speaker-disjoint split (forced alignment with the bundled model;
#            the digits are whole files) → EXP/segments/<corpus>_{train,dev}.tsv
#   stage 2  train the search model on training speakers only (conf/contrastive.yaml: the acoustic
#            model's states plus log-mel, contrastive + reconstruction, speed-perturbed views)
#            → EXP/contrastive/model.pt
#   stage 3  comparison models: the same without speed perturbation; on log-mel alone (with and
#            without speed perturbation) and on the states alone; plain, denoising and
#            correspondence autoencoders on the states
#   stage 4  index the held-out (dev-speaker) recordings and search one of them with the CLI
#   stage 5  bench/search_eval.py on held-out speakers: embeddings vs DTW on MFCCs and on posteriors
#   stage 6  export the search model (float16 weights) to asr/pretrained/search.pt
# Needs the speaker-disjoint splits of recipes/default/run.sh stage 1 (DEFAULT_EXP/data, default exp/default).
# ALIGN_MODEL (environment) names the acoustic model for stage 1's alignments (default: the bundled one).
# Run from the repository root. Every stage is idempotent: finished work is not redone.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=1; stop_stage=6
data=../shared/data
exp=exp/search
config=recipes/search/conf/contrastive.yaml
source recipes/common/stages.sh "$@"
export EXP="$exp"   # conf/*.yaml refer to ${EXP}
splits=${DEFAULT_EXP:-exp/default}/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
nice="nice -n 10"

if want_stage 1 "word segments"; then
  [ -d "$splits" ] || { echo "missing $splits: run 'bash recipes/default/run.sh --stop-stage 1' first" >&2; exit 1; }
  for corpus in an4 fsdd librispeech librivox; do
    for part in train dev; do
      manifest="$splits/$corpus/$part.tsv"; out="$exp/segments/${corpus}_$part.tsv"
      if [ -f "$out" ]; then echo "already done: $out" >&2; continue; fi
      [ "$(wc -l < "$manifest")" -gt 1 ] || continue   # librivox has no dev speaker
      $nice python -m asr.search.segments --manifest "$manifest" -o "$out" ${ALIGN_MODEL:+--model "$ALIGN_MODEL"}
    done
  done
  wc -l "$exp"/segments/*.tsv >&2
fi

# train_ae NAME CONFIG: train unless NAME/model.pt exists from the same config (NAME/config.yaml
# records it); resume if cut off. A model trained from another config stops the recipe.
train_ae() {
  if [ -f "$exp/$1/model.pt" ]; then
    if [ -f "$exp/$1/config.yaml" ] && ! cmp -s "$2" "$exp/$1/config.yaml"; then
      echo "$exp/$1 was trained from another version of $2: remove $exp/$1 to retrain it" >&2; exit 1
    fi
    echo "already trained: $exp/$1/model.pt" >&2; return
  fi
  local resume=""; [ -f "$exp/$1/last.pt" ] && resume="--resume"
  $nice python -m asr train --config "$2" --out-dir "$exp/$1" $resume 2> "$exp/$1.log"
  cp "$2" "$exp/$1/config.yaml"
  tail -n 2 "$exp/$1.log" >&2
}

if want_stage 2 "train the search model"; then mkdir -p "$exp"; train_ae contrastive "$config"; fi

if want_stage 3 "comparison models"; then
  for name in contrastive_logmel contrastive_logmel_nospeed contrastive_am_logmel_nospeed contrastive_am; do
    train_ae $name recipes/search/conf/$name.yaml
  done
  train_ae plain recipes/search/conf/plain.yaml
  train_ae denoising recipes/search/conf/denoising.yaml
  train_ae correspondence recipes/search/conf/correspondence.yaml
fi

if want_stage 4 "index the held-out recordings, search one"; then
  if [ -f "$exp/dev.index/index.json" ]; then   # exit 3: built with another search model
    status=0; python - "$exp/dev.index/index.json" "$exp/contrastive/model.pt" <<'PY' || status=$?
import json, sys
from asr.search.features import file_sha256
sys.exit(3 if json.load(open(sys.argv[1]))["model_sha256"] != file_sha256(sys.argv[2]) else 0)
PY
    if [ "$status" = 3 ]; then
      echo "$exp/dev.index was built with another search model: rebuilding it" >&2; rm -rf "$exp/dev.index"
    elif [ "$status" != 0 ]; then exit "$status"; fi
  fi
  if [ ! -f "$exp/dev.index/index.json" ]; then
    cut -f1 "$exp"/segments/*_dev.tsv | grep -v '^source$' | sort -u | sed "s|^|$exp/segments/|" > "$exp/dev_files.txt"
    $nice python -m asr index build --model "$exp/contrastive/model.pt" $(cat "$exp/dev_files.txt") -o "$exp/dev.index"
  fi
  python -m asr search "$exp/dev.index" "$data/fsdd/recordings/3_jackson_0.wav" --top 5 >&2
fi

if want_stage 5 "evaluation on held-out speakers vs DTW"; then
  models="--model $exp/contrastive/model.pt"
  for extra in contrastive_logmel contrastive_logmel_nospeed contrastive_am_logmel_nospeed contrastive_am \
               plain denoising correspondence; do [ -f "$exp/$extra/model.pt" ] && models="$models --model $exp/$extra/model.pt"; done
  $nice python bench/search_eval.py $models --segments "$exp"/segments/{an4,fsdd,librispeech}_dev.tsv \
    --filler "$splits/an4/train.tsv" --json "$exp/search_eval.json" | tee "$exp/search_eval.txt"
fi

if want_stage 6 "export the search model"; then
  python -c "
import torch
s = torch.load('$exp/contrastive/model.pt', weights_only=True)
s['state_dict'] = {k: v.half() for k, v in s['state_dict'].items()}
from asr.checkpoint import atomic_torch_save; atomic_torch_save(s, 'asr/pretrained/search.pt')"
  ls -l asr/pretrained/search.pt >&2
fi
