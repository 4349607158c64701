#!/usr/bin/env bash
# The bundled default model: trained on all of ../shared/data except a speaker-disjoint dev split.
#
# Usage: bash recipes/default/run.sh [--stage N] [--stop-stage N] [--data DIR] [--exp DIR] [--config YAML]
#   stage 1  split each corpus manifest by speaker (dev speakers listed below)
#   stage 2  train, first cosine cycle (conf/train.yaml; resumes from EXP/train/last.pt)
#   stage 3  second, lower cosine cycle from stage 2's average (conf/finetune.yaml)
#   stage 4  greedy decode of the dev sets with the final averaged model → EXP/decode_*/wer.json
#   stage 5  export the final model (float16 weights) to asr/pretrained/model.pt
# Run from the repository root. Every stage is idempotent: finished work is not redone.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=1; stop_stage=5
data=../shared/data
exp=exp/default
config=recipes/default/conf/train.yaml
source recipes/common/stages.sh "$@"
export EXP="$exp"   # conf/*.yaml refer to ${EXP}
final="$exp/finetune/avg.pt"

# Speaker-disjoint dev split: 7 of 67 AN4 speakers (2 f, 5 m, drawn with random.Random(0)),
# 1 of 4 FSDD speakers, the LibriSpeech dev-clean speaker. Nothing else is held out.
an4_dev="fnsv fplp mbmg mfaa mmaf mnfe mnjl"
fsdd_dev="yweweler"
librispeech_dev="2412"

if want_stage 1 "speaker-disjoint split"; then
  split() { python -m data_prep.split --manifest "$1" --out-dir "$2" --dev-speakers "${@:3}"; }
  split "$data/an4/manifest.tsv" "$exp/data/an4" $an4_dev
  split "$data/fsdd/manifest.tsv" "$exp/data/fsdd" $fsdd_dev
  split "$data/librispeech/manifest.tsv" "$exp/data/librispeech" $librispeech_dev
  split "$data/librivox_pocketsphinx/manifest.tsv" "$exp/data/librivox"
  wc -l "$exp"/data/*/*.tsv >&2
fi

# train_stage NAME CONFIG: run one training stage unless its averaged model exists; resume if cut off.
train_stage() {
  if [ -f "$exp/$1/avg.pt" ]; then echo "already trained: $exp/$1/avg.pt" >&2; return; fi
  local resume=""; [ -f "$exp/$1/last.pt" ] && resume="--resume"
  python -m asr train --config "$2" --out-dir "$exp/$1" $resume
}

if want_stage 2 "train, first cycle"; then train_stage train "$config"; fi

if want_stage 3 "train, second cycle"; then train_stage finetune recipes/default/conf/finetune.yaml; fi

if want_stage 4 "greedy decode of the dev sets"; then
  for set in an4 fsdd librispeech; do
    python -m asr decode --model "$final" --manifest "$exp/data/$set/dev.tsv" \
      --out "$exp/decode_greedy_$set" > "$exp/decode_greedy_$set.log"
    echo "$set: $(tail -n 1 "$exp/decode_greedy_$set.log")" >&2
  done
fi

if want_stage 5 "export the bundled model"; then
  python -c "from asr.checkpoint import export_for_inference as e; e('$final', 'asr/pretrained/model.pt')"
  ls -l asr/pretrained/model.pt >&2
fi
