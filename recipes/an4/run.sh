#!/usr/bin/env bash
# AN4 (CMU alphanumeric census database): BiLSTM-CTC trained on AN4 alone, speaker-disjoint dev split.
#
# Usage: bash recipes/an4/run.sh [--stage N] [--stop-stage N] [--data DIR] [--exp DIR] [--config YAML]
#   stage 0  download AN4 into DATA/an4 unless it is there already (needs network)
#   stage 1  manifests from the Sphinx layout (data_prep.an4) → EXP/data/an4_train.tsv
#   stage 2  speaker-disjoint split: the 7 dev speakers below → EXP/data/{train,dev}.tsv, and dev cut
#            into dev_tune (3 speakers: decoding weights are tuned there) and dev_eval (4: report only)
#   stage 3  train (conf/train.yaml; resumes from EXP/train/last.pt)
#   stage 4  greedy decode of the dev sets with the averaged model → EXP/decode_greedy_{dev_tune,dev_eval,dev}/
#   stage 5  word 3-gram LM from the training transcripts → EXP/lm3.arpa; beam-search weights tuned on
#            dev_tune → EXP/train/avg.decode.json; beam and beam + LM decodes of the dev sets
#   stage 6  hybrid HMM/Viterbi: state head on the frozen encoder (conf/hybrid.yaml) →
#            EXP/hybrid/hybrid.npz, its scales tuned on dev_tune, hybrid decodes of the dev sets
#   stage 7  side by side with PocketSphinx and the same 3-gram (bench/hybrid_vs_pocketsphinx.py; needs
#            pip install -e '.[bench]') → EXP/bench_hybrid_vs_pocketsphinx_{dev,dev_eval}.json
# DATA defaults to ../shared/data (which holds the an4/ folder); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=7
data=../shared/data
exp=exp/an4
config=recipes/an4/conf/train.yaml
source recipes/common/stages.sh "$@"
export EXP="$exp"   # conf/*.yaml refer to ${EXP}

# The same 7 dev speakers as recipes/default (2 f, 5 m, drawn with random.Random(0)), and the same 3 of
# them for tuning decoding weights.
dev_speakers="fnsv fplp mbmg mfaa mmaf mnfe mnjl"
tune_speakers="fnsv mbmg mmaf"
model="$exp/train/avg.pt"
dev_sets="dev_tune dev_eval dev"

if want_stage 0 "download"; then
  if [ -d "$data/an4/etc" ]; then echo "found $data/an4" >&2
  else python -m data_prep.an4 --download "$data" --out "$exp/data"; fi
fi

if want_stage 1 "manifests"; then
  python -m data_prep.an4 --corpus "$data/an4" --out "$exp/data" --parts train --jobs 2
fi

if want_stage 2 "speaker-disjoint split"; then
  python -m data_prep.split --manifest "$exp/data/an4_train.tsv" --out-dir "$exp/data" --dev-speakers $dev_speakers
  split_tune_eval "$exp/data/dev.tsv" "$tune_speakers"
fi

if want_stage 3 "train"; then train_unless_done "$exp/train" "$config"; fi

# decode_sets NAME ARGS…: `asr decode ARGS` of each dev set → EXP/decode_NAME_SET/, one summary line each.
decode_sets() {
  local name="$1"; shift
  for set in $dev_sets; do
    python -m asr decode --model "$model" "$@" --manifest "$exp/data/$set.tsv" --out "$exp/decode_${name}_$set" \
      > "$exp/decode_${name}_$set.log"
    echo "$set $name: $(tail -n 1 "$exp/decode_${name}_$set.log")" >&2
  done
}

if want_stage 4 "greedy decode of the dev sets"; then decode_sets greedy --decoder greedy; fi

if want_stage 5 "word 3-gram LM, beam-search weights tuned on dev_tune, beam decodes"; then
  tail -n +2 "$exp/data/train.tsv" | cut -f6 > "$exp/data/train_text.txt"
  python -m asr lm build --order 3 --text "$exp/data/train_text.txt" -o "$exp/lm3.arpa"
  python -m asr tune --model "$model" --manifest "$exp/data/dev_tune.tsv" --lm "$exp/lm3.arpa" --beam 16 \
    | tee "$exp/tune_beam.log" >&2
  decode_sets beam --decoder beam --lm none
  decode_sets beamlm --decoder beam
fi

if want_stage 6 "hybrid HMM/Viterbi: state head, scales tuned on dev_tune, hybrid decodes"; then
  if [ -f "$exp/hybrid/hybrid.npz" ]; then echo "already trained: $exp/hybrid/hybrid.npz" >&2
  else python -m asr train --config recipes/an4/conf/hybrid.yaml --out-dir "$exp/hybrid"; fi
  for emissions in trained ctc; do  # the LM: the one stage 5 recorded in EXP/train/avg.decode.json
    python -m asr.hybrid.tune --model "$model" --hybrid-model "$exp/hybrid/hybrid.npz" \
      --manifest "$exp/data/dev_tune.tsv" --emissions $emissions --write | tee "$exp/hybrid/tune_$emissions.log" >&2
    decode_sets hybrid_$emissions --decoder hybrid --hybrid-emissions $emissions --hybrid-model "$exp/hybrid/hybrid.npz"
  done
fi

if want_stage 7 "hybrid and CTC beam + LM side by side with PocketSphinx, same 3-gram"; then
  for set in dev dev_eval; do
    python bench/hybrid_vs_pocketsphinx.py --model "$model" --hybrid-model "$exp/hybrid/hybrid.npz" \
      --manifest "$exp/data/$set.tsv" --ps-tune-manifest "$exp/data/dev_tune.tsv" \
      --json "$exp/bench_hybrid_vs_pocketsphinx_$set.json" | tee "$exp/bench_hybrid_vs_pocketsphinx_$set.log" >&2
  done
fi
