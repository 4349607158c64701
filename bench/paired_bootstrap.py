"""Is one decode's WER really lower than another's on the same utterances? A paired bootstrap.

    python bench/paired_bootstrap.py exp/a/decode_greedy_an4_dev exp/b/decode_greedy_an4_dev [--resamples 10000]

Each argument is an `asr decode --out` folder. The word errors of each utterance are recomputed from
its hyps.tsv; then sets of as many utterances are drawn with replacement from the shared utterances,
and the WER difference B − A is taken on each set (`asr.metrics.paired_bootstrap`). Printed: both
WERs, the 95 % interval of the difference, and the share of sets on which B makes fewer errors (the
"probability of improvement" of Bisani & Ney, 2004). An interval that contains 0 says the set is too
small to tell the two apart. Dev sets of a few hundred words, like AN4's tuning speakers, rarely can.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.error_breakdown import read_hyps  # noqa: E402

from asr.metrics import paired_bootstrap, utterance_errors  # noqa: E402


def per_utterance_errors(pairs: dict[str, tuple[str, str]], utt_ids: list[str]) -> tuple[list[int], list[int]]:
    """(word errors, reference words) of each of `utt_ids` in a decode's utt_id → (ref, hyp)."""
    counts = [utterance_errors(*pairs[u]) for u in utt_ids]
    return [c["errors"] for c in counts], [c["ref_len"] for c in counts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="asr decode --out folder of system A (the baseline)")
    parser.add_argument("b", type=Path, help="asr decode --out folder of system B")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        pairs_a, pairs_b = read_hyps(args.a), read_hyps(args.b)
        if pairs_a.keys() != pairs_b.keys():
            raise ValueError("the two decode folders do not hold the same utterances")
        utt_ids = sorted(pairs_a)
        errors_a, ref_lens = per_utterance_errors(pairs_a, utt_ids)
        errors_b, _ = per_utterance_errors(pairs_b, utt_ids)
        result = paired_bootstrap(errors_a, errors_b, ref_lens, args.resamples, args.seed)
    except ValueError as exc:
        print(f"paired_bootstrap: {exc}", file=sys.stderr)
        return 2
    print(f"{len(utt_ids)} utterances, {sum(ref_lens)} reference words, {result.resamples} resamples")
    print(f"A {args.a}: WER {result.wer_a:.2f} % ({sum(errors_a)} errors)")
    print(f"B {args.b}: WER {result.wer_b:.2f} % ({sum(errors_b)} errors)")
    print(f"B - A: {result.wer_b - result.wer_a:+.2f} points, 95 % interval [{result.delta_low:+.2f}, "
          f"{result.delta_high:+.2f}]; B better in {100 * result.p_b_better:.1f} % of resamples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
