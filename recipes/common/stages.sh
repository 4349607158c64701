# Shared stage helpers for recipes/*/run.sh (sourced, not executed).
# Usage in a recipe:  stage=0; stop_stage=100; source recipes/common/stages.sh "$@"
#   if want_stage 1; then ...; fi
# Options parsed here: --stage N, --stop-stage N, --data DIR, --exp DIR, --help.

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --exp) exp="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

want_stage() {  # true when stage $1 lies in [stage, stop_stage]; prints a banner
  if [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; then
    echo "=== stage $1: $2 ($(date -u +%H:%M:%S))" >&2
    return 0
  fi
  return 1
}

split_tune_eval() {  # split_tune_eval DEV.tsv "SPK1 SPK2 …": DEV_tune.tsv (those speakers) and DEV_eval.tsv (the rest)
  local dev="$1" speakers="$2"
  awk -F'\t' -v s="$speakers" 'BEGIN{n=split(s,a," "); for(i=1;i<=n;i++) t[a[i]]=1} NR==1 || ($2 in t)' \
    "$dev" > "${dev%.tsv}_tune.tsv"
  awk -F'\t' -v s="$speakers" 'BEGIN{n=split(s,a," "); for(i=1;i<=n;i++) t[a[i]]=1} NR==1 || !($2 in t)' \
    "$dev" > "${dev%.tsv}_eval.tsv"
}

train_unless_done() {  # train_unless_done OUT_DIR CONFIG [ASR_TRAIN_ARGS…]: `asr train` unless OUT_DIR/avg.pt exists; resumes from OUT_DIR/last.pt
  local out="$1" config="$2"; shift 2
  if [ -f "$out/avg.pt" ]; then echo "already trained: $out/avg.pt" >&2; return; fi
  local resume=""; [ -f "$out/last.pt" ] && resume="--resume"
  python -m asr train --config "$config" --out-dir "$out" $resume "$@"
}
