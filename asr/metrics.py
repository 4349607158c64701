"""Recognition and retrieval metrics: WER/CER via jiwer, average precision and MAP in numpy.

Error rates are computed from summed edit counts (not averaged per utterance), so empty
references and hypotheses are fine: an empty reference with a non-empty hypothesis adds
insertions and no reference words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import jiwer
import numpy as np

Unit = Literal["word", "char"]


def utterance_errors(ref: str, hyp: str, unit: Unit = "word") -> dict[str, int]:
    """Edit counts of one hypothesis against its reference.

    Args:
        ref, hyp: normalised text; words are split on whitespace, characters include spaces.
        unit: "word" (for WER) or "char" (for CER).

    Returns:
        dict with int values: `substitutions`, `deletions`, `insertions`, `hits`,
        `errors` (S + D + I) and `ref_len` (reference words, or characters for unit="char").
    """
    if unit == "word":
        out = jiwer.process_words(ref, hyp)
    elif unit == "char":
        out = jiwer.process_characters(ref, hyp)
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    s, d, i, h = out.substitutions, out.deletions, out.insertions, out.hits
    return {
        "substitutions": s,
        "deletions": d,
        "insertions": i,
        "hits": h,
        "errors": s + d + i,
        "ref_len": s + d + h,
    }


def error_counts(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word") -> dict[str, int]:
    """Summed :func:`utterance_errors` over a corpus (same keys)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = {"substitutions": 0, "deletions": 0, "insertions": 0, "hits": 0, "errors": 0, "ref_len": 0}
    for ref, hyp in zip(refs, hyps):
        for key, value in utterance_errors(ref, hyp, unit).items():
            total[key] += value
    return total


def _rate(counts: dict[str, int]) -> float:
    """errors / ref_len; 0.0 when both are zero, inf when there are errors but no reference."""
    if counts["ref_len"] == 0:
        return 0.0 if counts["errors"] == 0 else float("inf")
    return counts["errors"] / counts["ref_len"]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: (S + D + I) / reference words, summed over utterances."""
    return _rate(error_counts(refs, hyps, "word"))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate (spaces count as characters)."""
    return _rate(error_counts(refs, hyps, "char"))


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Non-interpolated average precision of a ranked list.

    Higher score = ranked earlier (negate distances first). Equals the mean of precision@k over
    the ranks k of the relevant items; tied scores are treated as one threshold, so the result
    does not depend on the order of ties.

    Args:
        scores: (N,) relevance scores.
        labels: (N,) 1/True for relevant items, 0/False otherwise.

    Returns:
        AP in [0, 1], or NaN when there is no relevant item (such queries are skipped by
        :func:`mean_average_precision`).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")  # (N,) best first
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)  # (N,)
    last_of_tie = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # (K,) end of each score group
    tp_k = tp[last_of_tie]
    precision = tp_k / (last_of_tie + 1)  # (K,)
    recall_gain = np.diff(np.r_[0, tp_k]) / n_pos  # (K,)
    return float(np.sum(precision * recall_gain))


def mean_average_precision(queries: Iterable[tuple[Sequence[float] | np.ndarray, Sequence[int] | np.ndarray]]) -> float:
    """Mean of :func:`average_precision` over `(scores, labels)` pairs, one per query.

    Queries without any relevant item are skipped; NaN if none is left.
    """
    aps = [average_precision(scores, labels) for scores, labels in queries]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float("nan")
