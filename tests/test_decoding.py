"""Tests for greedy decoding, CTC forced alignment, word timing and metrics."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from asr.decoding.align import (
    TokenSpan,
    WordSpan,
    align_words,
    ctc_forced_align,
    ctc_forced_align_with_score,
    merge_tokens,
    torchaudio_forced_align,
    word_spans,
)
from asr.decoding.greedy import greedy_decode, greedy_tokens_with_frames
from asr.metrics import average_precision, cer, error_counts, mean_average_precision, utterance_errors, wer
from asr.text import CharTokenizer

TOK = CharTokenizer()
V = TOK.vocab_size


def emissions(path: list[int], vocab: int = V, peak: float = 0.9) -> np.ndarray:
    """(T, V) log-probs whose argmax at frame t is path[t], with probability `peak` there."""
    probs = np.full((len(path), vocab), (1.0 - peak) / (vocab - 1))
    probs[np.arange(len(path)), path] = peak
    return np.log(probs).astype(np.float32)


def chars(text: str) -> list[int]:
    """Frame path from a string: '-' is the blank, '_' the space, letters themselves."""
    return [0 if c == "-" else TOK.space_id if c == "_" else TOK.encode(c)[0] for c in text]


def collapse(path: tuple[int, ...] | list[int], blank: int = 0) -> list[int]:
    """CTC collapse: merge repeats, drop blanks."""
    out, prev = [], None
    for x in path:
        if x != prev and x != blank:
            out.append(x)
        prev = x
    return out


# ----------------------------------------------------------------------------- greedy


def test_greedy_blank_keeps_doubled_letters() -> None:
    book = torch.from_numpy(emissions(chars("BOO-OK")))[None]  # (1, 6, V)
    bok = torch.from_numpy(emissions(chars("BOOOK")))[None]  # (1, 5, V)
    assert TOK.decode(greedy_decode(book, torch.tensor([6]))[0]) == "BOOK"
    assert TOK.decode(greedy_decode(bok, torch.tensor([5]))[0]) == "BOK"
    aa = torch.from_numpy(emissions(chars("A-A")))[None]
    a = torch.from_numpy(emissions(chars("AA")))[None]
    assert TOK.decode(greedy_decode(aa)[0]) == "AA"
    assert TOK.decode(greedy_decode(a)[0]) == "A"


def test_greedy_batch_respects_lengths() -> None:
    long = chars("-HI_-YOU")  # 8 frames
    short = chars("-NO") + chars("ZZZZZ")  # 3 valid frames, then padding whose argmax is Z
    batch = torch.from_numpy(np.stack([emissions(long), emissions(short)]))  # (2, 8, V)
    lengths = torch.tensor([8, 3])
    out = greedy_decode(batch, lengths)
    assert [TOK.decode(ids) for ids in out] == ["HI YOU", "NO"]
    # Without lengths the padding leaks in: proves the mask does the work above.
    assert TOK.decode(greedy_decode(batch)[1]) == "NOZ"


def test_greedy_tokens_with_frames() -> None:
    batch = torch.from_numpy(np.stack([emissions(chars("BOO-OK-")), emissions(chars("-AA-A--"))]))
    (tok0, fr0), (tok1, fr1) = greedy_tokens_with_frames(batch, torch.tensor([7, 5]))
    assert TOK.decode(tok0) == "BOOK" and fr0 == [0, 1, 4, 5]
    assert TOK.decode(tok1) == "AA" and fr1 == [1, 4]


def test_greedy_empty_and_all_blank() -> None:
    batch = torch.from_numpy(emissions([0, 0, 0]))[None]
    assert greedy_decode(batch, torch.tensor([3])) == [[]]
    assert greedy_decode(batch, torch.tensor([0])) == [[]]


# ----------------------------------------------------------------------------- forced alignment


def test_forced_align_hand_trellis() -> None:
    # V = 3 (0 blank, 1 = a, 2 = b), targets "ab", T = 4. Posteriors per frame:
    #   t0 [0.1, 0.8, 0.1]   t1 [0.6, 0.3, 0.1]   t2 [0.2, 0.2, 0.6]   t3 [0.3, 0.5, 0.2]
    # Unconstrained argmax is a - b a ("aba"), which is not allowed. The valid paths, best first:
    #   a - b -  .8*.6*.6*.3 = .0864   <- best
    #   a - b b  .8*.6*.6*.2 = .0576
    #   a a b -  .8*.3*.6*.3 = .0432
    #   a a b b  .0288, a - - b .0192, a b b - .0144, ... (15 paths in all)
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.3, 0.5, 0.2]])
    path, score = ctc_forced_align_with_score(np.log(probs), np.array([1, 2]))
    assert path.tolist() == [1, 0, 2, 0]
    assert score == pytest.approx(math.log(0.0864), abs=1e-5)


def test_forced_align_repeat_needs_blank() -> None:
    # "aa" in exactly 3 frames has one valid path: a - a, however strongly frame 1 wants "a".
    probs = np.array([[0.1, 0.8, 0.1], [0.05, 0.9, 0.05], [0.1, 0.8, 0.1]])
    assert ctc_forced_align(np.log(probs), np.array([1, 1])).tolist() == [1, 0, 1]


def brute_force_best(log_probs: np.ndarray, targets: list[int]) -> float:
    """Max total log-score over all frame paths that collapse to `targets` (-inf if none)."""
    n_frames, vocab = log_probs.shape
    best = -math.inf
    for path in itertools.product(range(vocab), repeat=n_frames):
        if collapse(path) == targets:
            best = max(best, float(sum(log_probs[t, k] for t, k in enumerate(path))))
    return best


TARGETS = [[1], [2], [1, 2], [1, 1], [2, 2, 1], [1, 2, 1], [1, 1, 2], [2, 1, 1]]


@pytest.mark.parametrize("targets", TARGETS, ids=lambda t: "".join("ab"[i - 1] for i in t))
def test_forced_align_matches_brute_force(targets: list[int]) -> None:
    rng = np.random.default_rng(sum(targets) * 10 + len(targets))
    for n_frames in range(1, 7):
        for _ in range(3):
            logits = rng.normal(scale=2.0, size=(n_frames, 3))
            log_probs = (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)).astype(np.float32)
            expected = brute_force_best(log_probs.astype(np.float64), targets)
            if expected == -math.inf:  # no valid path: the aligner must refuse
                with pytest.raises(ValueError, match="at least"):
                    ctc_forced_align(log_probs, np.array(targets))
                continue
            path, score = ctc_forced_align_with_score(log_probs, np.array(targets))
            assert path.shape == (n_frames,)
            assert collapse(path.tolist()) == targets
            path_score = float(log_probs.astype(np.float64)[np.arange(n_frames), path].sum())
            assert score == pytest.approx(expected, abs=1e-4)
            assert path_score == pytest.approx(expected, abs=1e-4)


def test_forced_align_impossible_raises() -> None:
    log_probs = np.log(np.full((3, 3), 1 / 3, dtype=np.float32))
    with pytest.raises(ValueError, match="at least 4 frames"):
        ctc_forced_align(log_probs, np.array([1, 1, 2]))  # a - a b needs 4 frames
    with pytest.raises(ValueError, match="blank"):
        ctc_forced_align(log_probs, np.array([1, 0]))
    # Empty target: all blanks.
    assert ctc_forced_align(log_probs, np.array([], dtype=np.int64)).tolist() == [0, 0, 0]


def test_torchaudio_cross_check() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(20, 5))
    log_probs = (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)).astype(np.float32)
    targets = np.array([1, 2, 2, 3, 4])
    try:
        reference = torchaudio_forced_align(log_probs, targets)
    except ImportError as err:
        pytest.skip(f"torchaudio not importable, cross-check skipped: {err}")
    ours = ctc_forced_align(log_probs, targets)
    lp64, frames = log_probs.astype(np.float64), np.arange(len(ours))
    assert collapse(reference.tolist()) == targets.tolist()
    # Same best score (paths could differ only on exact ties, which random emissions avoid).
    assert lp64[frames, ours].sum() == pytest.approx(lp64[frames, reference].sum(), abs=1e-4)
    np.testing.assert_array_equal(ours, reference)


def test_align_module_does_not_import_torchaudio() -> None:
    code = "import sys, asr.decoding.align, asr.decoding.greedy; assert 'torchaudio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- spans and words


def test_merge_tokens_and_word_spans_timing() -> None:
    path = np.array(chars("HH-I-__-YOUU-"))  # 13 frames
    peaks = [0.9, 0.7, 0.8, 0.6, 0.8, 0.5, 0.5, 0.8, 0.4, 0.6, 0.9, 0.7, 0.8]
    probs = np.full((len(path), V), 0.0)
    for t, (k, p) in enumerate(zip(path, peaks)):
        probs[t] = (1 - p) / (V - 1)
        probs[t, k] = p
    log_probs = np.log(probs).astype(np.float32)

    spans = merge_tokens(path, log_probs)
    assert [(TOK.decode([s.token]) or "_", s.start, s.end) for s in spans] == [
        ("H", 0, 2), ("I", 3, 4), ("_", 5, 7), ("Y", 8, 9), ("O", 9, 10), ("U", 10, 12),
    ]
    assert spans[0].score == pytest.approx(0.8)  # mean of 0.9 and 0.7
    assert isinstance(spans[0], TokenSpan)

    words = word_spans(spans, TOK, frame_shift_s=0.04)
    assert [w.word for w in words] == ["HI", "YOU"]
    assert all(isinstance(w, WordSpan) for w in words)
    assert (words[0].start, words[0].end) == pytest.approx((0.0, 0.16))
    assert (words[1].start, words[1].end) == pytest.approx((0.32, 0.48))
    assert words[0].conf == pytest.approx((0.8 + 0.6) / 2)
    assert words[1].conf == pytest.approx((0.4 + 0.6 + 0.8) / 3)


def test_align_words_end_to_end_torch_input() -> None:
    # Emissions peaked on a path spelling "HI YOU"; aligning the text must recover its timing.
    log_probs = torch.from_numpy(emissions(chars("-HH-I-__-YOUU--"), peak=0.6))
    words = align_words(log_probs, "hi, you!", TOK, frame_shift_s=0.02)
    assert [w.word for w in words] == ["HI", "YOU"]
    assert (words[0].start, words[0].end) == pytest.approx((0.02, 0.10))
    assert (words[1].start, words[1].end) == pytest.approx((0.18, 0.26))
    assert all(w.conf == pytest.approx(0.6) for w in words)
    assert align_words(log_probs, "", TOK, 0.02) == []
    with pytest.raises(ValueError):
        align_words(log_probs[:3], "hi you", TOK, 0.02)


# ----------------------------------------------------------------------------- metrics


def test_wer_cer_known_values() -> None:
    refs = ["THE CAT SAT", "ON THE MAT"]
    hyps = ["THE BAT SAT DOWN", "ON MAT"]
    # utt 1: CAT->BAT (S), DOWN inserted (I); utt 2: THE deleted (D) -> 3 errors / 6 words.
    assert wer(refs, hyps) == pytest.approx(3 / 6)
    assert utterance_errors(refs[0], hyps[0]) == {
        "substitutions": 1, "deletions": 0, "insertions": 1, "hits": 2, "errors": 2, "ref_len": 3,
    }
    # CER: "ABCD" -> "ABXD" is one substitution in 4 chars; "HI YO" -> "HI YOU" one insertion in 5.
    assert cer(["ABCD", "HI YO"], ["ABXD", "HI YOU"]) == pytest.approx(2 / 9)
    assert wer(["A B"], ["A B"]) == 0.0


def test_metrics_empty_strings() -> None:
    assert utterance_errors("", "A B")["insertions"] == 2
    assert utterance_errors("", "A B")["ref_len"] == 0
    assert utterance_errors("A B", "")["deletions"] == 2
    assert utterance_errors("", "")["errors"] == 0
    # Empty reference contributes insertions but no reference words.
    assert wer(["A B C D", ""], ["A B C D", "X"]) == pytest.approx(1 / 4)
    assert cer(["", "AB"], ["", "AB"]) == 0.0
    assert wer([""], [""]) == 0.0
    assert wer([""], ["X"]) == math.inf
    assert error_counts(["", "A"], ["B", ""], unit="char")["errors"] == 2
    with pytest.raises(ValueError):
        wer(["A"], [])


def test_average_precision_hand_example() -> None:
    # Ranked relevance 1 0 1 0 1: precision at the hits = 1/1, 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 3.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    labels = [1, 0, 1, 0, 1]
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # Order of the input does not matter, only the scores.
    perm = [3, 0, 4, 2, 1]
    assert average_precision([scores[i] for i in perm], [labels[i] for i in perm]) == pytest.approx(0.7555555)
    assert average_precision([0.3, 0.2], [1, 1]) == 1.0
    # A tie between a hit and a miss at the top counts as one threshold: precision 1/2 there.
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_paired_bootstrap_brackets_the_observed_difference_and_reads_ties_as_even() -> None:
    """Resampled WER differences centre on the observed one; equal systems give 0 and an even chance;
    a system better on every utterance wins every resample; the same seed repeats exactly."""
    from asr.metrics import paired_bootstrap

    rng = np.random.default_rng(3)
    ref_lens = rng.integers(3, 9, size=200)  # (200,)
    errors_a = rng.binomial(ref_lens, 0.15)  # (200,) about 15 % WER
    errors_b = np.maximum(errors_a - rng.binomial(1, 0.3, size=200), 0)  # fewer errors on ~30 % of utterances
    result = paired_bootstrap(errors_a, errors_b, ref_lens, resamples=4000, seed=1)
    observed = result.wer_b - result.wer_a
    assert result.wer_a == pytest.approx(100 * errors_a.sum() / ref_lens.sum())
    assert observed < 0 and result.delta_low < observed < result.delta_high < 0
    assert result.p_b_better == 1.0
    assert paired_bootstrap(errors_a, errors_b, ref_lens, resamples=4000, seed=1) == result

    same = paired_bootstrap(errors_a, errors_a, ref_lens, resamples=500)
    assert (same.delta_low, same.delta_high, same.p_b_better) == (0.0, 0.0, 0.5)
    # A one-error difference on a few hundred words: the interval holds 0.
    close = paired_bootstrap([1, 0, 2, 0, 1] * 8, [1, 0, 2, 0, 0] + [1, 0, 2, 0, 1] * 7, [6] * 40)
    assert close.delta_low < 0 <= close.delta_high and 0.5 < close.p_b_better < 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1], [3, 3])
    with pytest.raises(ValueError):
        paired_bootstrap([0], [0], [0])


def test_mean_average_precision() -> None:
    queries = [
        ([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1]),  # AP 0.7556
        ([0.1, 0.9], [1, 0]),  # AP 0.5
        ([0.4, 0.3], [0, 0]),  # no relevant item: skipped
    ]
    assert mean_average_precision(queries) == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 0.5) / 2)
    assert math.isnan(mean_average_precision([]))
