#!/usr/bin/env bash
# Ablation of model.utterance_mean (per-utterance mean removal before the global CMVN) where it
# matters most: a small BiLSTM trained on FSDD's 3 training speakers only (conf/cmn_probe.yaml) and
# scored on the unseen FSDD dev speaker: without the option, with it, and with the mean over loud
# frames only (model.utterance_mean_within_db), 2 seeds each (~1 min per run on one CPU thread). Needs the split of recipes/default/run.sh stage 1 in EXP/data.
#
# Usage: bash recipes/default/cmn_probe.sh [--exp DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=1; stop_stage=1
data=../shared/data
exp=exp/default
config=recipes/default/conf/cmn_probe.yaml
source recipes/common/stages.sh "$@"
export EXP="$exp"   # conf/cmn_probe.yaml refers to ${EXP}

if [ ! -f "$exp/data/fsdd/train.tsv" ]; then
  echo "$exp/data/fsdd/train.tsv missing: run bash recipes/default/run.sh --stage 1 --stop-stage 1 first" >&2
  exit 1
fi
mkdir -p "$exp/cmn_probe"
# variant name → `asr train --set` flags: no per-utterance mean, the mean over all frames, the mean over
# the frames within 30 dB of the loudest (pauses excluded)
variants=("false:model.utterance_mean=false" "true:model.utterance_mean=true"
          "loud30:model.utterance_mean=true model.utterance_mean_within_db=30")
for seed in 0 1; do
  for variant in "${variants[@]}"; do
    name=${variant%%:*}; sets=()
    for setting in ${variant#*:}; do sets+=(--set "$setting"); done
    out="$exp/cmn_probe/utterance_mean_${name}_seed$seed"
    if [ ! -f "$out/avg.pt" ]; then
      python -m asr train --config "$config" --out-dir "$out" --set seed=$seed "${sets[@]}" \
        > "$out.log" 2>&1 || { echo "training failed, see $out.log" >&2; exit 1; }
    fi
    result=$(python -m asr decode --decoder greedy --model "$out/avg.pt" --manifest "$exp/data/fsdd/dev.tsv" --out "$out/decode_dev" | tail -n 1)
    echo "utterance_mean=$name seed=$seed  FSDD unseen speaker: $result"
  done
done
