#!/usr/bin/env bash
# LibriSpeech: BiLSTM-CTC on any training subset, cached log-mel, one or several GPUs (torchrun DDP).
#
# Usage: bash recipes/librispeech/run.sh [--train "PARTS"] [--dev "PARTS"] [--test "PARTS"]
#          [--stage N] [--stop-stage N] [--data DIR] [--exp DIR] [--config YAML] [--nj N] [--ngpu N]
#          [--speeds "0.9 1.0 1.1"] [--lm-source transcripts|openslr] [--lm-order N] [--beam N]
#          [--mirror URL] [--lm-mirror URL]
#   stage 0  download the parts that DATA lacks (OpenSLR 12; resumable, MD5-checked, safe extraction)
#   stage 1  manifests per part (data_prep.librispeech, NJ processes) + EXP/data/{train,dev}.tsv
#   stage 2  feature cache: log-mel of train (× --speeds) and dev in sharded float16 files (EXP/fbank)
#   stage 3  word LM: `asr lm build` on the training transcripts, or the official OpenSLR 11 pruned 3-gram
#   stage 4  train (conf/train.yaml; torchrun DDP with --ngpu > 1; resumes from EXP/train/last.pt)
#   stage 5  greedy decode of the dev and test parts
#   stage 6  beam search + LM decode of the dev and test parts
#   stage 7  score: one table of WER/CER per part and decoder → EXP/scores.tsv
# Defaults: --train train-clean-100 --dev dev-clean --test "test-clean test-other", DATA
# exp/librispeech/corpus (holding the part folders or LibriSpeech/), EXP exp/librispeech. Every stage
# is idempotent: finished work is skipped, so the recipe can be re-run after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=0; stop_stage=7
data=exp/librispeech/corpus
exp=exp/librispeech
config=recipes/librispeech/conf/train.yaml
train_parts="train-clean-100"; dev_parts="dev-clean"; test_parts="test-clean test-other"
nj=$(( $(nproc) < 16 ? $(nproc) : 16 )); ngpu=1
speeds="1.0"; lm_source=transcripts; lm_order=3; beam=16; mirror=""; lm_mirror=""

rest=()
while [ $# -gt 0 ]; do   # this recipe's own options; the common ones go to recipes/common/stages.sh
  case "$1" in
    --train) train_parts="$2"; shift 2 ;;
    --dev) dev_parts="$2"; shift 2 ;;
    --test) test_parts="$2"; shift 2 ;;
    --nj) nj="$2"; shift 2 ;;
    --ngpu) ngpu="$2"; shift 2 ;;
    --speeds) speeds="$2"; shift 2 ;;
    --lm-source) lm_source="$2"; shift 2 ;;
    --lm-order) lm_order="$2"; shift 2 ;;
    --beam) beam="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --lm-mirror) lm_mirror="$2"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
source recipes/common/stages.sh ${rest[@]+"${rest[@]}"}
export EXP="$exp"   # conf/*.yaml refer to ${EXP}
case "$lm_source" in transcripts|openslr) ;; *) echo "$0: --lm-source must be transcripts or openslr" >&2; exit 2 ;; esac

# every part once, in order: dev and test parts may overlap
all_parts=$(echo $train_parts $dev_parts $test_parts | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
eval_parts=$(echo $dev_parts $test_parts | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
manifest() { echo "$exp/data/librispeech_$1.tsv"; }
has_part() { [ -d "$data/$1" ] || [ -d "$data/LibriSpeech/$1" ]; }
if [ "$lm_source" = openslr ]; then lm="$exp/lm/3-gram.pruned.1e-7.arpa.gz"; else lm="$exp/lm/${lm_order}gram.arpa"; fi
model="$exp/train/avg.pt"

if want_stage 0 "download"; then
  missing=""; for part in $all_parts; do has_part "$part" || missing="$missing $part"; done
  if [ -z "$missing" ]; then echo "all parts present in $data: $all_parts" >&2
  else python -m data_prep.librispeech --download "$data" --parts $missing ${mirror:+--mirror "$mirror"}; fi
fi

if want_stage 1 "manifests"; then
  todo=""; for part in $all_parts; do [ -f "$(manifest "$part")" ] || todo="$todo $part"; done
  if [ -n "$todo" ]; then
    python -m data_prep.librispeech --corpus "$data" --parts $todo --out "$exp/data" --jobs "$nj"
  fi
  combine() {  # combine OUT PART...: one manifest of several parts
    local out="$1"; shift
    local inputs=(); for part in "$@"; do inputs+=("$(manifest "$part")"); done
    python -c 'import sys; from data_prep.common import combine_manifests as c; print(len(c(sys.argv[2:], sys.argv[1])))' \
      "$out" "${inputs[@]}" | sed "s|^|$out: |;s|$| utterances|" >&2
  }
  combine "$exp/data/train.tsv" $train_parts
  combine "$exp/data/dev.tsv" $dev_parts
fi

if want_stage 2 "feature cache"; then
  python -m asr.featcache build --manifest "$exp/data/train.tsv" --out "$exp/fbank/train" --jobs "$nj" --speeds $speeds
  python -m asr.featcache build --manifest "$exp/data/dev.tsv" --out "$exp/fbank/dev" --jobs "$nj"
fi

if want_stage 3 "language model ($lm_source)"; then
  if [ -f "$lm" ]; then echo "LM exists: $lm" >&2
  elif [ "$lm_source" = openslr ]; then
    python -m data_prep.librispeech --lm-dir "$exp/lm" --lm-files 3-gram.pruned.1e-7.arpa.gz ${lm_mirror:+--lm-mirror "$lm_mirror"}
  else
    mkdir -p "$exp/lm"
    tail -n +2 "$exp/data/train.tsv" | cut -f 6 > "$exp/lm/train_text.txt"
    python -m asr lm build --order "$lm_order" --text "$exp/lm/train_text.txt" -o "$lm"
  fi
fi

if want_stage 4 "train on $train_parts ($ngpu GPU(s))"; then
  if [ -f "$model" ]; then echo "already trained: $model" >&2
  else
    resume=""; [ -f "$exp/train/last.pt" ] && resume="--resume"
    if [ "$ngpu" -gt 1 ]; then
      python -m torch.distributed.run --standalone --nproc_per_node "$ngpu" -m asr train --config "$config" \
        --out-dir "$exp/train" $resume
    else
      python -m asr train --config "$config" --out-dir "$exp/train" $resume
    fi
  fi
fi

decode_all() {  # decode_all NAME ARGS...: decode every dev/test part with `asr decode ARGS`
  local name="$1"; shift
  for part in $eval_parts; do
    python -m asr decode --model "$model" --manifest "$(manifest "$part")" --out "$exp/decode_${name}_$part" "$@" \
      > "$exp/decode_${name}_$part.log"
    echo "$name $part: $(tail -n 1 "$exp/decode_${name}_$part.log")" >&2
  done
}

if want_stage 5 "greedy decode: $eval_parts"; then decode_all greedy --decoder greedy; fi

if want_stage 6 "beam search + LM decode: $eval_parts"; then decode_all beam --decoder beam --lm "$lm" --beam "$beam"; fi

if want_stage 7 "score"; then
  python - "$exp" $eval_parts <<'EOF'
import json, sys
from pathlib import Path
exp, parts = Path(sys.argv[1]), sys.argv[2:]
rows = ["part\tdecoder\tWER %\tCER %\tutterances\twords"]
for part in parts:
    for decoder in ("greedy", "beam"):
        path = exp / f"decode_{decoder}_{part}" / "wer.json"
        if path.is_file():
            s = json.loads(path.read_text())
            rows.append(f"{part}\t{decoder}\t{s['wer']:.2f}\t{s['cer']:.2f}\t{s['utterances']}\t{s['word_counts']['ref_len']}")
tmp = exp / ".scores.tsv.tmp"
tmp.write_text("\n".join(rows) + "\n")
tmp.replace(exp / "scores.tsv")
print("\n".join(rows))
EOF
fi
