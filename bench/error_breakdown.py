"""Where the word errors of one or more decodes of the same set fall: spelled letters, number words, other words.

    python bench/error_breakdown.py exp/default/decode_bundled_greedy_an4_dev exp/default/decode_bundled_beamlm_an4_dev

Each argument is an `asr decode --out` folder (its hyps.tsv holds reference and hypothesis per
utterance). Each reference word the hypothesis substitutes or deletes counts against its class; a
word the hypothesis inserts counts as "inserted". AN4 mixes spelled random letters ("ERASE J N R G
FORTY EIGHT"), which no word LM can predict, with number words and commands, which it can; so this
shows how much of a decoder's gain or loss each kind of word carries. The first folder is the
baseline: the last column is each class's errors divided by the baseline's.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import jiwer

CLASSES = ("letter", "number", "other", "inserted")

_UNITS = "ZERO OH ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split()
_TEENS = "TEN ELEVEN TWELVE THIRTEEN FOURTEEN FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN".split()
_TENS = "TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY HUNDRED THOUSAND".split()
_ORDINALS = ("FIRST SECOND THIRD FOURTH FIFTH SIXTH SEVENTH EIGHTH NINTH TENTH ELEVENTH TWELFTH THIRTEENTH "
             "FOURTEENTH FIFTEENTH SIXTEENTH SEVENTEENTH EIGHTEENTH NINETEENTH TWENTIETH THIRTIETH").split()
NUMBER_WORDS = frozenset(_UNITS + _TEENS + _TENS + _ORDINALS)


def word_class(word: str) -> str:
    """The class of a reference word: "letter" (one letter: spelled), "number" (a number word) or "other"."""
    if len(word) == 1 and word.isalpha():
        return "letter"
    return "number" if word in NUMBER_WORDS else "other"


def classify_errors(ref: str, hyp: str) -> Counter:
    """Word errors of one utterance by class of the reference word (insertions: "inserted")."""
    counts: Counter = Counter()
    out = jiwer.process_words(ref, hyp)  # empty ref or hyp: all insertions or all deletions
    ref_words = out.references[0]
    for chunk in out.alignments[0]:
        if chunk.type in ("substitute", "delete"):
            counts.update(word_class(w) for w in ref_words[chunk.ref_start_idx:chunk.ref_end_idx])
        elif chunk.type == "insert":
            counts["inserted"] += chunk.hyp_end_idx - chunk.hyp_start_idx
    return counts


def read_hyps(folder: Path) -> dict[str, tuple[str, str]]:
    """utt_id → (ref, hyp) from an `asr decode --out` folder's hyps.tsv."""
    path = folder / "hyps.tsv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if rows and not {"utt_id", "ref", "hyp"} <= set(rows[0]):
        raise ValueError(f"{path}: not a decode hypotheses file (needs utt_id, ref and hyp columns)")
    return {row["utt_id"]: (row["ref"] or "", row["hyp"] or "") for row in rows}


def breakdown(pairs: dict[str, tuple[str, str]]) -> tuple[Counter, Counter]:
    """(errors by class, reference words by class) over one decode's utt_id → (ref, hyp)."""
    errors: Counter = Counter()
    words: Counter = Counter()
    for ref, hyp in pairs.values():
        errors += classify_errors(ref, hyp)
        words.update(word_class(w) for w in ref.split())
    return errors, words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("decodes", nargs="+", type=Path, help="asr decode --out folders; the first is the baseline")
    args = parser.parse_args(argv)
    try:
        decodes = [read_hyps(folder) for folder in args.decodes]
        if any(d.keys() != decodes[0].keys() for d in decodes[1:]):
            raise ValueError("the decode folders do not hold the same utterances")
        results = [breakdown(pairs) for pairs in decodes]
    except ValueError as exc:
        print(f"error_breakdown: {exc}", file=sys.stderr)
        return 2
    base_errors, words = results[0]
    print("reference words: " + ", ".join(f"{c} {words[c]}" for c in CLASSES[:3]) + f" ({len(decodes[0])} utterances)")
    for folder, (errors, _) in zip(args.decodes, results):
        total, base_total = sum(errors.values()), sum(base_errors.values())
        cells = [f"{c} {errors[c]}" + (f" ({errors[c] / base_errors[c]:.2f})" if base_errors[c] else "")
                 for c in CLASSES]
        ratio = f" ({total / base_total:.2f})" if base_total else ""
        print(f"{folder}: errors {total}{ratio} = " + ", ".join(cells))
    letters, total = base_errors["letter"], sum(base_errors.values())
    if total:
        print(f"baseline errors on spelled letters: {letters} of {total} ({100 * letters / total:.1f} %); a decoder "
              f"that kept those and fixed every other error would reach {letters / total:.2f} x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
