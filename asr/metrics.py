"""Recognition and retrieval metrics: WER/CER via jiwer, average precision and MAP, paired bootstrap of two WERs.

Error rates are computed from summed edit counts (not averaged per utterance), so empty
references and hypotheses are fine: an empty reference with a non-empty hypothesis adds
insertions and no reference words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    out: jiwer.WordOutput | jiwer.CharacterOutput
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


@dataclass(frozen=True)
class BootstrapComparison:
    """Paired bootstrap comparison of two systems' WER on the same utterances (rates in %)."""

    wer_a: float
    wer_b: float
    delta_low: float  # 2.5th percentile of WER_b − WER_a over the resamples, in points
    delta_high: float  # 97.5th percentile
    p_b_better: float  # share of resamples in which b makes fewer errors (ties count half)
    resamples: int


def paired_bootstrap(errors_a: Sequence[int] | np.ndarray, errors_b: Sequence[int] | np.ndarray,
                     ref_lens: Sequence[int] | np.ndarray, resamples: int = 10_000,
                     seed: int = 0) -> BootstrapComparison:
    """Resample utterances with replacement to see how much a WER difference owes to which utterances
    happen to be in the set (Bisani & Ney, 2004: the "probability of improvement").

    Args:
        errors_a, errors_b: (N,) word errors of each utterance under systems a and b.
        ref_lens: (N,) reference words of each utterance.
        resamples: bootstrap sets of N utterances each.
        seed: seed of the resampling, so a comparison can be repeated exactly.
    """
    a = np.asarray(errors_a, dtype=np.int64)
    b = np.asarray(errors_b, dtype=np.int64)
    n = np.asarray(ref_lens, dtype=np.int64)
    if not (a.shape == b.shape == n.shape) or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need three equal, non-empty 1-D arrays, got shapes {a.shape}, {b.shape}, {n.shape}")
    if n.sum() == 0:
        raise ValueError("the references hold no words")
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)  # (R,) WER_b − WER_a in points
    diff = b - a  # (N,)
    block = max(1, 4_000_000 // a.size)  # resamples per draw: keeps the (block, N) index array small
    for start in range(0, resamples, block):
        idx = rng.integers(0, a.size, size=(min(block, resamples - start), a.size))  # (block, N)
        deltas[start:start + idx.shape[0]] = 100.0 * diff[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    p_better = float(np.mean(deltas < 0) + 0.5 * np.mean(deltas == 0))
    return BootstrapComparison(100.0 * a.sum() / n.sum(), 100.0 * b.sum() / n.sum(), float(low), float(high),
                               p_better, resamples)
