#!/usr/bin/env bash
# Seed sweep of the bundled recipe (stages 2-3 with other seeds) and soups of its second cycles, scored on
# the tuning sets only. Meant for a GPU machine: the runs go in parallel on one device.
#
# Usage: bash recipes/default/seed_sweep.sh [--exp DIR] [--data DIR] [--an4-seeds "0 1"] [--ft-seeds "1 2 3"]
#                                           [--workers N]
#   1. recipes/default stage 1 (speaker-disjoint split) into EXP/data, unless it is there;
#   2. the AN4 stage (recipes/an4/conf/train.yaml) once per AN4 seed, in parallel → EXP/a$SEED/an4;
#   3. from each AN4 model, the second cycle (conf/finetune.yaml as bundled) once per second-cycle seed,
#      in parallel → EXP/a$SEED/ft$FT; the dev WER they log is on dev_tune only (weights do not depend on it);
#   4. per AN4 model, the soup: the uniform weight average of its second-cycle models → EXP/a$SEED/soup.pt;
#   5. every model and soup scored greedily on dev_tune, FSDD dev, and FSDD dev padded (bench/padded_wer.py)
#      → EXP/a$SEED/score_*.txt. dev_eval is never decoded here.
# SWEEP_SETS (environment) adds `asr train` options to every run, e.g. "--set optim.epochs=1" for a smoke run.
# Run from the repository root. Finished steps are not redone. The sweep of 2026-11-25 in RESULTS.md ran
# these commands, with the defaults, on one H100 (AN4 stages 4.3 min for both seeds; each set of three
# second cycles 6.3 min); on a 2-vCPU machine one second cycle takes about 51 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
exp=exp/seed_sweep; data=../shared/data; an4_seeds="0 1"; ft_seeds="1 2 3"; workers=4
while [ $# -gt 0 ]; do
  case "$1" in
    --exp) exp="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --an4-seeds) an4_seeds="$2"; shift 2 ;;
    --ft-seeds) ft_seeds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ -f "$exp/data/an4/dev_tune.tsv" ] || bash recipes/default/run.sh --data "$data" --exp "$exp" --stage 1 --stop-stage 1
train() {  # train OUT_DIR LOG asr-train-args…: `asr train` unless OUT_DIR/avg.pt exists
  local out="$1" log="$2"; shift 2
  [ -f "$out/avg.pt" ] && return 0
  python -m asr train --out-dir "$out" "$@" ${SWEEP_SETS:-} > "$log" 2>&1 || { echo "FAILED: $out (see $log)" >&2; return 1; }
}
wait_all() {  # wait_all PID…: wait for each background job; the first that failed stops the sweep (set -e)
  local pid
  for pid in "$@"; do wait "$pid"; done
}

pids=()
for a in $an4_seeds; do
  mkdir -p "$exp/a$a"
  # the AN4 recipe's config on the same AN4 training speakers, reporting on dev_tune
  EXP="$exp" train "$exp/a$a/an4" "$exp/a$a/an4.log" --config recipes/an4/conf/train.yaml \
    --set "data.train=[$exp/data/an4/train.tsv]" --set "data.dev={an4: $exp/data/an4/dev_tune.tsv}" \
    --set seed="$a" --set data.num_workers="$workers" & pids+=($!)
done
wait_all "${pids[@]}"

for a in $an4_seeds; do
  pids=()
  for f in $ft_seeds; do
    EXP="$exp" AN4_EXP="$exp/a$a" train "$exp/a$a/ft$f" "$exp/a$a/ft$f.log" --config recipes/default/conf/finetune.yaml \
      --set init_from="$exp/a$a/an4/avg.pt" --set seed="$f" --set data.num_workers="$workers" \
      --set "data.dev={an4: $exp/data/an4/dev_tune.tsv}" & pids+=($!)
  done
  wait_all "${pids[@]}"
  python -m asr model average -o "$exp/a$a/soup.pt" $(for f in $ft_seeds; do echo "$exp/a$a/ft$f/avg.pt"; done)
done

score() {  # score NAME MODEL OUT_TXT: greedy errors on dev_tune + FSDD dev, and FSDD dev padded
  local name="$1" model="$2" dir="${3%.txt}"
  python -m asr decode --decoder greedy --model "$model" --manifest "$exp/data/an4/dev_tune.tsv" --out "$dir/tune" > /dev/null
  python -m asr decode --decoder greedy --model "$model" --manifest "$exp/data/fsdd/dev.tsv" --out "$dir/fsdd" > /dev/null
  python bench/padded_wer.py --manifest "$exp/data/fsdd/dev.tsv" --model "$model" > "$dir/padded.txt"
  python - "$name" "$dir" > "$3" <<'PY'
import json, sys
name, d = sys.argv[1:]
tune, fsdd = (json.load(open(f"{d}/{s}/wer.json"))["word_counts"] for s in ("tune", "fsdd"))
print(f"{name}: dev_tune {tune['errors']}/{tune['ref_len']} + fsdd {fsdd['errors']}/{fsdd['ref_len']}"
      f" = {tune['errors'] + fsdd['errors']}")
print(open(f"{d}/padded.txt").read().strip())
PY
}
for a in $an4_seeds; do
  pids=()
  for f in $ft_seeds; do score "a$a-ft$f" "$exp/a$a/ft$f/avg.pt" "$exp/a$a/score_ft$f.txt" & pids+=($!); done
  score "a$a-soup" "$exp/a$a/soup.pt" "$exp/a$a/score_soup.txt" & pids+=($!)
  wait_all "${pids[@]}"
  cat "$exp/a$a"/score_*.txt
done
