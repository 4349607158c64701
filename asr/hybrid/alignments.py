"""Frame-level HMM state labels: from the CTC model's forced alignment, or re-aligned by the hybrid model.

**From CTC.** A CTC forced alignment (:func:`asr.decoding.align.ctc_forced_align`) is *peaky*:
each character fires on one or two frames and blanks fill the rest. To turn it into state
occupancy, each run of blank frames between two labels is split at its midpoint, the first half
going to the label before it and the second half to the label after it. Blanks before the first
and after the last label, and every space label (with its share of blanks), become the word
boundary (silence). A character's segment of L frames is then cut evenly into its n states;
when L < n the character keeps only its first L states.

**Re-alignment.** :func:`forced_align` is a Viterbi pass over the linear state sequence of a
transcript (:meth:`Topology.utterance_states`, silences optional) with any emission scores,
e.g. the hybrid model's scaled log-likelihoods; it runs in numba.

**Statistics.** :func:`estimate_priors` (state frequencies) and :func:`estimate_transitions`
(self-loop probability = 1 − visits / frames per state) read the labels.
"""

from __future__ import annotations

import numba
import numpy as np

from asr.decoding.align import ctc_forced_align, merge_tokens
from asr.hybrid.topology import Topology
from asr.text import CharTokenizer


def ctc_path_to_states(path: np.ndarray, tokenizer: CharTokenizer, topology: Topology) -> np.ndarray:
    """A CTC frame path (T,) of tokenizer ids → (T,) int64 state ids of an "hmm" topology.

    Raises ValueError if the topology has no silence state but the path needs one.
    """
    if topology.kind != "hmm":
        raise ValueError("state labels are only defined for the 'hmm' topology")
    path = np.asarray(path, dtype=np.int64)
    n_frames = path.shape[0]
    spans = merge_tokens(path, np.zeros((n_frames, 1 + int(path.max(initial=0)))), tokenizer.blank_id)
    units = np.zeros(n_frames, dtype=np.int64)  # (T,) unit per frame; 0 = boundary
    if spans:
        starts = np.array([s.start for s in spans])  # (K,)
        ends = np.array([s.end for s in spans])  # (K,)
        cuts = (ends[:-1] + starts[1:]) // 2  # (K-1,) midpoints of the blank gaps
        seg_start = np.r_[starts[0], cuts]  # (K,)
        seg_end = np.r_[cuts, ends[-1]]  # (K,)
        chars = tokenizer.vocab
        unit_of = np.array([topology.unit_of_char.get(chars[s.token], 0) for s in spans])  # (K,) space → 0
        seg_id = np.full(n_frames, -1, dtype=np.int64)  # (T,) segment of each frame; -1 outside all
        seg_id[seg_start[0]:seg_end[-1]] = np.repeat(np.arange(len(spans)), seg_end - seg_start)
        inside = seg_id >= 0
        units[inside] = unit_of[seg_id[inside]]
    else:
        seg_id = np.full(n_frames, -1, dtype=np.int64)
        seg_start = seg_end = np.zeros(0, dtype=np.int64)
    if not topology.silence and np.any(units == 0):
        raise ValueError("the alignment has boundary frames but the topology has no silence state")
    # Position of each frame inside its segment → state index within the unit's chain.
    n = topology.states_per_char
    states = np.zeros(n_frames, dtype=np.int64)
    silence = topology.unit_states[0][0] if topology.silence else -1
    states[units == 0] = silence
    char = (units > 0) & (seg_id >= 0)
    if np.any(char):
        k = seg_id[char]
        offset = np.flatnonzero(char) - seg_start[k]  # frames since the segment began
        length = seg_end[k] - seg_start[k]
        j = np.minimum(offset * n // np.maximum(length, 1), n - 1)
        j = np.where(length < n, np.minimum(offset, n - 1), j)
        first = np.array([topology.unit_states[u][0] for u in range(1, len(topology.unit_states))])
        states[char] = first[units[char] - 1] + j
    return states


def ctc_states_for_utterance(log_probs: np.ndarray, text: str, tokenizer: CharTokenizer,
                             topology: Topology) -> np.ndarray:
    """CTC log-probs (T, V) and transcript → (T,) state labels (see the module doc)."""
    targets = np.asarray(tokenizer.encode(text), dtype=np.int64)
    path = ctc_forced_align(log_probs, targets, blank=tokenizer.blank_id)  # (T,)
    return ctc_path_to_states(path, tokenizer, topology)


@numba.njit(cache=True)
def _linear_viterbi(scores: np.ndarray, loop: np.ndarray, exits: np.ndarray, skippable: np.ndarray
                    ) -> tuple[np.ndarray, float]:
    """Best monotonic path through a chain of N states over T frames.

    scores (T, N): emission score of chain position n at frame t; loop/exits/skippable (N,).
    A path may start at any position whose predecessors are all skippable, jump forward over
    skippable positions, and must end where all later positions are skippable.
    Returns ((T,) chain positions, score); the score is -inf when no path fits.
    """
    n_frames, n = scores.shape
    best = np.full(n, -np.inf)
    back = np.zeros((n_frames, n), dtype=np.int64)  # (T, N) predecessor position
    for j in range(n):
        best[j] = scores[0, j]
        back[0, j] = j
        if not skippable[j]:
            break
    new = np.empty(n)
    for t in range(1, n_frames):
        for j in range(n):
            top = best[j] + loop[j]
            arg = j
            i = j - 1
            while i >= 0:
                cand = best[i] + exits[i]
                if cand > top:
                    top = cand
                    arg = i
                if not skippable[i]:
                    break
                i -= 1
            new[j] = top + scores[t, j]
            back[t, j] = arg
        best[:] = new
    end = n - 1
    top = best[end]
    j = n - 2
    while j >= 0 and skippable[j + 1]:
        if best[j] > top:
            top = best[j]
            end = j
        j -= 1
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = end
        end = back[t, end]
    return path, top


def forced_align(emissions: np.ndarray, text: str, topology: Topology) -> tuple[np.ndarray, float]:
    """Viterbi state alignment of a transcript.

    Args:
        emissions: (T, C) emission scores per acoustic-model column (e.g. scaled log-likelihoods).
        text: the transcript.
        topology: supplies the chain (silences optional) and transition scores.

    Returns:
        ((T,) int64 state ids, path score). Raises ValueError if the transcript cannot fit the frames.
    """
    states, skippable = topology.utterance_states(text)  # (N,), (N,)
    emissions = np.asarray(emissions, dtype=np.float64)
    scores = np.ascontiguousarray(emissions[:, topology.column[states]])  # (T, N)
    path, score = _linear_viterbi(scores, topology.loops()[states], topology.exits()[states], skippable)
    if not np.isfinite(score):
        raise ValueError(f"transcript needs more than {emissions.shape[0]} frames")
    return states[path], float(score)


def estimate_priors(labels: list[np.ndarray], num_states: int, floor: float = 1e-5) -> np.ndarray:
    """State priors p(s) from label counts (add-one smoothed, floored): (S,) float64 summing to 1."""
    counts = np.bincount(np.concatenate(labels), minlength=num_states).astype(np.float64) + 1.0  # (S,)
    priors = np.maximum(counts / counts.sum(), floor)
    return priors / priors.sum()


def estimate_transitions(labels: list[np.ndarray], num_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Self-loop and exit log-probabilities per state from labels: ((S,), (S,)).

    p(loop | s) = (frames − visits + 1) / (frames + 2): a visit is a run of equal labels, so every
    frame of a run but the last loops.
    """
    frames = np.zeros(num_states)
    visits = np.zeros(num_states)
    for lab in labels:
        if lab.size == 0:
            continue
        frames += np.bincount(lab, minlength=num_states)
        run_starts = np.r_[True, lab[1:] != lab[:-1]]
        visits += np.bincount(lab[run_starts], minlength=num_states)
    loop = (frames - visits + 1.0) / (frames + 2.0)
    return np.log(loop), np.log1p(-loop)
