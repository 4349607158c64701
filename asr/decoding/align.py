"""CTC forced alignment: the single best frame path that spells a known transcript.

The trellis is the usual CTC one over the blank-extended target `_ y1 _ y2 _ ... yL _`
(2L + 1 states). From state s a frame may stay in s, move to s + 1, or skip the blank between
two *different* labels (s -> s + 2). The Viterbi recursion runs in numba, compiled on first use
(numba is imported then, not with this module, so that commands needing no alignment start faster);
torchaudio is only used, lazily, by :func:`torchaudio_forced_align` for cross-checks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from asr.text import CharTokenizer

_NEG_INF = -np.inf


@functools.cache
def _viterbi_kernel():
    """`_viterbi` compiled by numba (cached on disk like the other kernels); built on first use."""
    import numba

    return numba.njit(cache=True)(_viterbi)


def _viterbi(log_probs: np.ndarray, targets: np.ndarray, blank: int) -> tuple[np.ndarray, float]:
    """Best CTC path. log_probs (T, V) float32, targets (L,) int64 -> (path (T,) int64, score).

    Plain Python as written; `_viterbi_kernel()` is the compiled version that callers run."""
    n_frames = log_probs.shape[0]
    n_states = 2 * targets.shape[0] + 1
    ext = np.full(n_states, blank, dtype=np.int64)  # (S,) label of each trellis state
    for i in range(targets.shape[0]):
        ext[2 * i + 1] = targets[i]

    score = np.full(n_states, -np.inf)  # (S,) best log-score ending in each state at frame t
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # (T, S) how far back the best predecessor is
    score[0] = log_probs[0, ext[0]]
    if n_states > 1:
        score[1] = log_probs[0, ext[1]]
    new = np.empty(n_states)
    for t in range(1, n_frames):
        for s in range(n_states):
            best = score[s]
            step = 0
            if s >= 1 and score[s - 1] > best:
                best = score[s - 1]
                step = 1
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] and score[s - 2] > best:
                best = score[s - 2]
                step = 2
            new[s] = best + log_probs[t, ext[s]]
            back[t, s] = step
        score[:] = new

    # A path must end in the final blank or the final label.
    state = n_states - 1
    if n_states > 1 and score[n_states - 2] > score[n_states - 1]:
        state = n_states - 2
    best_score = score[state]
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = ext[state]
        state -= back[t, state]
    return path, best_score


def _check_inputs(log_probs: np.ndarray, targets: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and ids; return contiguous (T, V) float32 and (L,) int64 arrays."""
    log_probs = np.ascontiguousarray(np.asarray(log_probs, dtype=np.float32))
    targets = np.ascontiguousarray(np.asarray(targets, dtype=np.int64).reshape(-1))
    if log_probs.ndim != 2 or log_probs.shape[0] == 0:
        raise ValueError(f"log_probs must be a non-empty (T, V) array, got shape {log_probs.shape}")
    vocab = log_probs.shape[1]
    if not 0 <= blank < vocab:
        raise ValueError(f"blank id {blank} outside the vocabulary of size {vocab}")
    if targets.size and (targets.min() < 0 or targets.max() >= vocab):
        raise ValueError(f"target ids must lie in [0, {vocab}), got {targets.min()}..{targets.max()}")
    if np.any(targets == blank):
        raise ValueError(f"targets must not contain the blank id {blank}")
    repeats = int(np.count_nonzero(targets[1:] == targets[:-1])) if targets.size > 1 else 0
    needed = targets.size + repeats
    if log_probs.shape[0] < needed:
        raise ValueError(
            f"cannot align {targets.size} labels ({repeats} adjacent repeats need a blank between them) "
            f"to {log_probs.shape[0]} frames: at least {needed} frames are required"
        )
    return log_probs, targets


def ctc_forced_align_with_score(log_probs: np.ndarray, targets: np.ndarray, blank: int = 0) -> tuple[np.ndarray, float]:
    """Like :func:`ctc_forced_align`, also returning the path's total log-score."""
    log_probs, targets = _check_inputs(log_probs, targets, blank)
    path, score = _viterbi_kernel()(log_probs, targets, blank)
    if not np.isfinite(score):
        raise ValueError("no CTC alignment with a finite score (the emissions rule out every valid path)")
    return path, float(score)


def ctc_forced_align(log_probs: np.ndarray, targets: np.ndarray, blank: int = 0) -> np.ndarray:
    """Viterbi CTC alignment of `targets` to the frames of `log_probs`.

    Args:
        log_probs: (T, V) per-frame log-probabilities.
        targets: (L,) label ids without blanks.
        blank: id of the CTC blank.

    Returns:
        (T,) int64: the id emitted at each frame (the blank or a label) on the best path; the path
        collapses (merge repeats, drop blanks) to exactly `targets`.

    Raises:
        ValueError: if T < L + (number of adjacent repeated labels), i.e. no valid path exists,
            or on malformed input.
    """
    return ctc_forced_align_with_score(log_probs, targets, blank)[0]


@dataclass
class TokenSpan:
    """One aligned token: frames `[start, end)`; `score` is its mean posterior probability."""

    token: int
    start: int
    end: int
    score: float


@dataclass
class WordSpan:
    """One aligned word, times in seconds; `conf` is the mean of its characters' scores."""

    word: str
    start: float
    end: float
    conf: float


def merge_tokens(path: np.ndarray, log_probs: np.ndarray, blank: int = 0) -> list[TokenSpan]:
    """Merge a frame path into token spans.

    A run of identical non-blank ids (no blank in between) is one token. Its score is the mean
    of exp(log_probs[t, token]) over the run's frames.

    Args:
        path: (T,) id per frame, e.g. from :func:`ctc_forced_align`.
        log_probs: (T, V) log-probabilities the path was taken from.
    """
    path = np.asarray(path, dtype=np.int64).reshape(-1)
    log_probs = np.asarray(log_probs)
    n_frames = path.shape[0]
    if n_frames == 0:
        return []
    if log_probs.shape[0] != n_frames:
        raise ValueError(f"path has {n_frames} frames but log_probs has {log_probs.shape[0]}")
    starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])  # (R,) first frame of each run
    ends = np.r_[starts[1:], n_frames]  # (R,)
    probs = np.exp(log_probs[np.arange(n_frames), path].astype(np.float64))  # (T,)
    means = np.add.reduceat(probs, starts) / (ends - starts)  # (R,)
    tokens = path[starts]
    keep = np.flatnonzero(tokens != blank)
    return [TokenSpan(int(tokens[i]), int(starts[i]), int(ends[i]), float(means[i])) for i in keep]


def word_spans(token_spans: list[TokenSpan], tokenizer: "CharTokenizer", frame_shift_s: float) -> list[WordSpan]:
    """Group token spans into words at the tokenizer's space token.

    A word starts at its first character's first frame and ends at its last character's end
    frame (exclusive), both multiplied by `frame_shift_s`. Frames of the space itself and of
    surrounding blanks belong to no word.
    """
    space = tokenizer.space_id
    words: list[WordSpan] = []
    current: list[TokenSpan] = []

    def flush() -> None:
        if current:
            words.append(
                WordSpan(
                    word=tokenizer.decode([s.token for s in current]),
                    start=current[0].start * frame_shift_s,
                    end=current[-1].end * frame_shift_s,
                    conf=float(np.mean([s.score for s in current])),
                )
            )
            current.clear()

    for span in token_spans:
        if span.token == space:
            flush()
        else:
            current.append(span)
    flush()
    return words


def _to_numpy(log_probs: Any) -> np.ndarray:
    """Accept a torch tensor or anything array-like; return a float32 numpy array."""
    if hasattr(log_probs, "detach"):
        log_probs = log_probs.detach().to("cpu").float().numpy()
    return np.asarray(log_probs, dtype=np.float32)


def align_words(log_probs: Any, text: str, tokenizer: "CharTokenizer", frame_shift_s: float) -> list[WordSpan]:
    """Force-align `text` to one utterance's (T, V) log-probs and return timed words.

    The text is normalised and encoded by `tokenizer`; empty text gives no words.
    Raises ValueError when the utterance has too few frames for the text.
    """
    targets = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if targets.size == 0:
        return []
    lp = _to_numpy(log_probs)  # (T, V)
    path = ctc_forced_align(lp, targets, blank=tokenizer.blank_id)  # (T,)
    return word_spans(merge_tokens(path, lp, blank=tokenizer.blank_id), tokenizer, frame_shift_s)


def torchaudio_forced_align(log_probs: Any, targets: Any, blank: int = 0) -> np.ndarray:
    """Reference alignment from `torchaudio.functional.forced_align`, for cross-checks only.

    Same contract as :func:`ctc_forced_align`: (T, V) log-probs and (L,) targets -> (T,) ids.

    Raises:
        ImportError: if torchaudio (or its forced_align) cannot be loaded; PyPI torchaudio wheels
            are CUDA builds that usually fail to import next to a CPU-only torch.
    """
    try:
        import torch
        from torchaudio.functional import forced_align
    except Exception as err:  # ImportError, OSError (missing CUDA libs), RuntimeError (version clash)
        raise ImportError(
            "torchaudio.functional.forced_align is unavailable "
            f"({type(err).__name__}: {err}); it needs a torchaudio build matching your torch "
            "(CPU torch needs the CPU wheel) and a release that still ships forced_align "
            "(deprecated in torchaudio 2.8); asr.decoding.align.ctc_forced_align does not need it"
        ) from err
    lp = torch.from_numpy(_to_numpy(log_probs))[None]  # (T, V) -> (1, T, V)
    tg = torch.as_tensor(np.asarray(targets), dtype=torch.int32).reshape(1, -1)  # (1, L)
    alignment, _scores = forced_align(lp, tg, blank=blank)  # (1, T), (1, T)
    return alignment[0].cpu().numpy().astype(np.int64)
