#!/usr/bin/env bash
# AN4 (CMU alphanumeric census database): BiLSTM-CTC trained on AN4 alone, speaker-disjoint dev split.
#
# Usage: bash recipes/an4/run.sh [--stage N] [--stop-stage N] [--data DIR] [--exp DIR] [--config YAML]
#   stage 0  download AN4 into DATA/an4 unless it is there already (needs network)
#   stage 1  manifests from the Sphinx layout (data_prep.an4) → EXP/data/an4_train.tsv
#   stage 2  speaker-disjoint split: the 7 dev speakers below → EXP/data/{train,dev}.tsv
#   stage 3  train (conf/train.yaml; resumes from EXP/train/last.pt)
#   stage 4  greedy decode of the dev split with the averaged model → EXP/decode_greedy/wer.json
#   stage 5  hybrid HMM/Viterbi: word 3-gram LM from the training transcripts, state head on the
#            frozen encoder (conf/hybrid.yaml) → EXP/hybrid/hybrid.npz, hybrid decode of the dev split
# DATA defaults to ../shared/data (which holds the an4/ folder); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=5
data=../shared/data
exp=exp/an4
config=recipes/an4/conf/train.yaml
source recipes/common/stages.sh "$@"
export EXP="$exp"   # conf/*.yaml refer to ${EXP}

# The same 7 dev speakers as recipes/default (2 f, 5 m, drawn with random.Random(0)).
dev_speakers="fnsv fplp mbmg mfaa mmaf mnfe mnjl"

if want_stage 0 "download"; then
  if [ -d "$data/an4/etc" ]; then echo "found $data/an4" >&2
  else python -m data_prep.an4 --download "$data" --out "$exp/data"; fi
fi

if want_stage 1 "manifests"; then
  python -m data_prep.an4 --corpus "$data/an4" --out "$exp/data" --parts train --jobs 2
fi

if want_stage 2 "speaker-disjoint split"; then
  python -m data_prep.split --manifest "$exp/data/an4_train.tsv" --out-dir "$exp/data" --dev-speakers $dev_speakers
fi

if want_stage 3 "train"; then
  if [ -f "$exp/train/avg.pt" ]; then echo "already trained: $exp/train/avg.pt" >&2
  else
    resume=""; [ -f "$exp/train/last.pt" ] && resume="--resume"
    python -m asr train --config "$config" --out-dir "$exp/train" $resume
  fi
fi

if want_stage 4 "greedy decode of the dev split"; then
  python -m asr decode --model "$exp/train/avg.pt" --manifest "$exp/data/dev.tsv" --out "$exp/decode_greedy" \
    > "$exp/decode_greedy.log"
  echo "dev: $(tail -n 1 "$exp/decode_greedy.log")" >&2
fi

if want_stage 5 "hybrid HMM/Viterbi decoding of the dev split"; then
  tail -n +2 "$exp/data/train.tsv" | cut -f6 > "$exp/data/train_text.txt"
  python -m asr lm build --order 3 --text "$exp/data/train_text.txt" -o "$exp/lm3.arpa"
  if [ -f "$exp/hybrid/hybrid.npz" ]; then echo "already trained: $exp/hybrid/hybrid.npz" >&2
  else python -m asr train --config recipes/an4/conf/hybrid.yaml --out-dir "$exp/hybrid"; fi
  python -m asr decode --model "$exp/train/avg.pt" --decoder hybrid --hybrid-emissions trained --hybrid-model "$exp/hybrid/hybrid.npz" \
    --lm "$exp/lm3.arpa" --manifest "$exp/data/dev.tsv" --out "$exp/decode_hybrid" > "$exp/decode_hybrid.log"
  echo "dev hybrid: $(tail -n 1 "$exp/decode_hybrid.log")" >&2
fi
