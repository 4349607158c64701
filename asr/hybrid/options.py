"""Command-line options of `--decoder hybrid` (kept free of heavy imports: the CLI builds its parser on every run)."""

from __future__ import annotations

import argparse


def add_hybrid_args(parser: argparse.ArgumentParser) -> None:
    """Add the hybrid decoder's options to an `asr transcribe` / `asr decode` parser."""
    group = parser.add_argument_group("hybrid HMM/Viterbi (--decoder hybrid; also uses --lm, --alpha, --beta, --lexicon)")
    group.add_argument("--hybrid-model", help="hybrid assets .npz (default: asr/pretrained/hybrid.npz)")
    group.add_argument("--hybrid-emissions", choices=["trained", "ctc"],
                       help="emissions from the state head trained on frame labels, or from the CTC model's own "
                       "posteriors (default: whichever scored better when the assets' scales were tuned)")
    group.add_argument("--acoustic-scale", type=float, help="emission weight (default: tuned value in the assets)")
    group.add_argument("--prior-scale", type=float, help="prior scale kappa: log p(s|x) - kappa log p(s) "
                       "(default: tuned value in the assets)")
    group.add_argument("--viterbi-beam", type=float, default=14.0, help="score beam of the Viterbi search (default 14)")
    group.add_argument("--max-active", type=int, default=1000, help="most tokens kept per frame (default 1000)")
