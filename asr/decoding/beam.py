"""CTC prefix beam search over characters, with optional word n-gram shallow fusion.

    >>> from asr.decoding.lm import load_arpa
    >>> decoder = BeamSearchDecoder(tokenizer, lm=load_arpa("lm.arpa"), beam_size=16, alpha=0.5, beta=1.0)
    >>> decoder.decode(log_probs, lengths)            # (B, T, V) torch, (B,) -> list[str]

**Search** (Hannun et al. 2014, log domain). Each hypothesis is a *prefix* (a collapsed label
sequence) with two acoustic scores: `pb`, the log-probability of all frame paths so far that
spell the prefix and end in a blank, and `pnb`, those ending in its last label. Per frame and
prefix l with total p = logaddexp(pb, pnb):

    blank:               pb'(l)   += p + lp[blank]
    repeat last label:   pnb'(l)  += pnb + lp[last]          (collapses onto l)
    label c != last:     pnb'(lc) += p + lp[c]
    label c == last:     pnb'(lc) += pb + lp[c]              (a blank separates the two)

then the `beam_size` prefixes with the best `logaddexp(pb', pnb') + word score` survive. With
`merge="max"` every `+=` keeps the maximum instead (Viterbi prefix scores); then beam 1 is exactly
greedy best-path decoding, which is why beam width 1 uses it by default. Wider beams default to
`"sum"`, which gives each prefix the probability of all its alignments (a wide beam finds the most
probable labelling, which best-path decoding may miss).

**Pruning.** Token pruning: per frame only the most probable labels are extended, as many as
reach `token_prune` cumulative probability (blank included in the mass) and at most `token_topk`;
the blank and the repeat of a prefix's own last label are always scored. Blank skipping: a frame
whose blank probability exceeds `blank_skip` creates no new prefixes and does not re-rank: every
prefix only gets the blank and repeat updates above, so the mass dropped is the frame's
probability of new labels, below 1 - blank_skip.

**Words.** With an LM or a lexicon, the space label (the tokenizer's word boundary) completes the
word spelled since the previous space, and so does the end of the utterance. A completed word adds
`alpha * ln P_LM(word | previous words) + beta` to the prefix's word score (fixed per prefix, as a
prefix determines its words); at the end `alpha * ln P_LM(</s> | words)` is added too
(`score_eos`). A space that would complete an empty word (leading or doubled spaces) is not
extended in this mode: it would only split one text's probability over several prefixes. Words
are tracked through a character trie of the vocabulary (the LM's words, or a given word list):

* open vocabulary (`lexicon=False`): any spelling; a word not in the LM scores as <unk>
  (`alpha * ln P(<unk> | ...)`), or `-oov_penalty` when that is given;
* lexicon-constrained (`lexicon=True` for the LM's words, or a list of words): a prefix that
  leaves the trie is never created, a space or the utterance end must finish a vocabulary word.
  If no final hypothesis ends on a word, the best one is cut back to its last complete word.

**Numba core.** One `@njit` call per utterance runs every frame. Prefixes are nodes of a tree
held in two growable tables: int64 `(cap, 7)` = parent, last token, LM state, trie node, first
child, next sibling, frame stamp; float64 `(cap, 3)` = word score and the frame's pb', pnb'
accumulators. Before a beam prefix is extended, its child list (at most V - 1 siblings) is
spread into a (V,) table, so finding the node for (prefix, label) is O(1) and each prefix is one
node whose scores merge automatically. The frame stamp marks nodes touched in the current frame
(accumulators reset on first touch, node listed as a candidate). A prefix that has no node yet has
exactly one parent in the beam, so it gets exactly one score per frame: it is kept as a light
candidate (parent, label, LM state, trie node, word score, pnb) and becomes a node only if it
makes the beam; the tree therefore grows by at most `beam_size` nodes per frame. The next beam
is chosen with an O(n) partition, not a sort. The LM lives in flat numpy arrays
(:mod:`asr.decoding.lm`) and is queried from numba by binary search when a new prefix completes a
word, so nothing returns to Python per frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from asr.decoding.lm import NGramLM, lm_advance
from asr.decoding.threads import default_threads, map_utterances

LN10 = math.log(10.0)
# Columns of the int64 node table.
_PARENT, _TOKEN, _STATE, _TRIE, _FIRST, _NEXT, _STAMP = 0, 1, 2, 3, 4, 5, 6
# Columns of the float64 node table.
_WORDS, _PB, _PNB = 0, 1, 2
_SPECIAL_WORDS = {"<s>", "</s>", "<unk>"}


@dataclass
class Hypothesis:
    """One decoded hypothesis; scores are natural logs, `score = acoustic + lm`."""

    text: str
    tokens: list[int]
    score: float
    acoustic: float
    lm: float  # alpha * LM log-probs + beta * words (+ </s>); 0 without an LM


@dataclass
class _Trie:
    """Character trie in CSR form; node 0 is the root (the empty word)."""

    start: np.ndarray  # (S+1,) int64: edges of node s are start[s]:start[s+1]
    token: np.ndarray  # (E,) int64: label of each edge
    child: np.ndarray  # (E,) int64: node each edge leads to
    is_word: np.ndarray  # (S,) bool: a vocabulary word ends here
    lm_id: np.ndarray  # (S,) int64: LM word id of that word (the LM's <unk> id if it has none)
    words: int = 0

    @classmethod
    def empty(cls) -> "_Trie":
        z = np.zeros(1, dtype=np.int64)
        return cls(np.zeros(2, dtype=np.int64), z[:0], z[:0], np.zeros(1, dtype=np.bool_), np.full(1, -1, np.int64))


def build_trie(spellings: Iterable[tuple[list[int], int]]) -> _Trie:
    """Trie of label sequences; `spellings` yields `(labels, lm_id)`; the first of duplicates wins."""
    edges: dict[tuple[int, int], int] = {}
    parent: list[int] = []
    label: list[int] = []
    ends: dict[int, int] = {}
    for labels, lm_id in spellings:
        node = 0
        for c in labels:
            nxt = edges.get((node, c))
            if nxt is None:
                nxt = edges[(node, c)] = len(parent) + 1
                parent.append(node)
                label.append(c)
            node = nxt
        if node and node not in ends:
            ends[node] = lm_id
    n_nodes = len(parent) + 1
    par = np.asarray(parent, dtype=np.int64)  # (E,) edge e leads to node e + 1
    lab = np.asarray(label, dtype=np.int64)
    order = np.lexsort((lab, par))  # group edges by parent, labels ascending
    start = np.searchsorted(par[order], np.arange(n_nodes + 1)).astype(np.int64)  # (S+1,)
    is_word = np.zeros(n_nodes, dtype=np.bool_)
    lm_ids = np.full(n_nodes, -1, dtype=np.int64)
    for node, wid in ends.items():
        is_word[node] = True
        lm_ids[node] = wid
    return _Trie(start, lab[order], order.astype(np.int64) + 1, is_word, lm_ids, len(ends))


# ----------------------------------------------------------------------------- numba core


@numba.njit(cache=True)
def _logadd(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow; -inf is the identity."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@numba.njit(cache=True)
def _merge(a: float, b: float, use_max: bool) -> float:
    """Combine two path scores of one prefix: log-sum (exact) or max (Viterbi)."""
    if use_max:
        return a if a > b else b
    return _logadd(a, b)


@numba.njit(cache=True)
def _select_tokens(row: np.ndarray, blank: int, mass: float, topk: int, out: np.ndarray) -> int:
    """Fill out[:n] with the labels to extend this frame, most probable first; return n.

    row: (V,) log-probs. Stops once the labels seen (blank included) reach `mass` probability
    or `topk` non-blank labels are taken.
    """
    order = np.argsort(-row)  # (V,)
    n = 0
    cum = 0.0
    for j in range(order.shape[0]):
        c = order[j]
        if c != blank:
            out[n] = c
            n += 1
            if n >= topk:
                break
        cum += np.exp(row[c])
        if cum >= mass:
            break
    return n


@numba.njit(cache=True)
def _trie_step(node: int, token: int, start: np.ndarray, labels: np.ndarray, child: np.ndarray) -> int:
    """Trie node reached from `node` by `token`, or -1 (also from -1: off the trie stays off)."""
    if node < 0:
        return -1
    for e in range(start[node], start[node + 1]):
        if labels[e] == token:
            return child[e]
    return -1


@numba.njit(cache=True)
def _word_score(state: int, trie_node: int, is_word: np.ndarray, lm_id: np.ndarray, use_lm: bool,
                lm_keys: np.ndarray, lm_logp: np.ndarray, lm_bow: np.ndarray, lm_suffix: np.ndarray,
                lm_offsets: np.ndarray, lm_vocab: int, unk_log10: float, unk_id: int,
                alpha: float, beta: float, oov_score: float) -> tuple[int, float, bool]:
    """Complete the word at `trie_node` (> 0, or -1 off the trie): (new LM state, score, in lexicon)."""
    in_lexicon = trie_node > 0 and is_word[trie_node]
    word = lm_id[trie_node] if in_lexicon else unk_id
    if not use_lm:
        return state, 0.0, in_lexicon
    new_state, log10p = lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab, unk_log10, state, word)
    if (word < 0 or word == unk_id) and not np.isnan(oov_score):
        return new_state, oov_score + beta, in_lexicon
    return new_state, alpha * log10p * LN10 + beta, in_lexicon


@numba.njit(cache=True)
def _grow(ni: np.ndarray, nf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Double the node tables' capacity."""
    cap = ni.shape[0] * 2
    ni2 = np.full((cap, ni.shape[1]), -1, dtype=np.int64)
    nf2 = np.zeros((cap, nf.shape[1]), dtype=np.float64)
    ni2[: ni.shape[0]] = ni
    nf2[: nf.shape[0]] = nf
    return ni2, nf2


@numba.njit(cache=True)
def _touch(ni: np.ndarray, nf: np.ndarray, node: int, t: int, cand: np.ndarray, n_cand: int) -> int:
    """First touch of `node` in frame t resets its accumulators and lists it as a candidate."""
    if ni[node, _STAMP] != t:
        ni[node, _STAMP] = t
        nf[node, _PB] = -np.inf
        nf[node, _PNB] = -np.inf
        cand[n_cand] = node
        n_cand += 1
    return n_cand


@numba.njit(cache=True)
def _top_k(score: np.ndarray, n: int, k: int, out: np.ndarray) -> int:
    """Positions of the k largest of score[:n] into out (unordered; ties by position); return count.

    O(n) with a partition instead of a full sort: the beam is small and candidates are many.
    """
    if n <= k:
        for i in range(n):
            out[i] = i
        return n
    kth = np.partition(score[:n], n - k)[n - k]  # the k-th largest value
    m = 0
    for i in range(n):
        if score[i] > kth:
            out[m] = i
            m += 1
    for i in range(n):
        if m == k:
            break
        if score[i] == kth:
            out[m] = i
            m += 1
    return m


@numba.njit(cache=True, nogil=True)  # nogil: utterances of a batch are searched in parallel threads
def _beam_search(lp, blank, beam_size, prune_mass, prune_topk, skip_log, use_max,
                 use_words, lexicon, space, tr_start, tr_label, tr_child, tr_is_word, tr_lm_id,
                 use_lm, lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab, unk_log10, unk_id,
                 eos_id, start_state, alpha, beta, oov_score, score_eos):
    """Prefix beam search of one utterance. lp: (T, V) float32 log-probs.

    Returns `(nodes, total, acoustic, words, valid, ni)`: the final beam's node ids (K,) sorted
    by total score, their scores (K,), whether each ends on a complete word (lexicon mode), and
    the int64 node table for :func:`_backtrack`.
    """
    n_frames, vocab = lp.shape
    cap = max(1024, 8 * beam_size)
    ni = np.full((cap, 7), -1, dtype=np.int64)
    nf = np.zeros((cap, 3), dtype=np.float64)
    ni[0, _STATE] = start_state
    ni[0, _TRIE] = 0
    n_nodes = 1

    beam = np.zeros(beam_size, dtype=np.int64)  # (K,) node ids of the current beam
    beam_pb = np.full(beam_size, -np.inf)  # (K,)
    beam_pnb = np.full(beam_size, -np.inf)  # (K,)
    beam_pb[0] = 0.0
    n_beam = 1
    # Candidates of a frame: existing nodes touched (cand), then new prefixes not yet made into
    # nodes (v_*): a new prefix has one parent in the beam, so it gets exactly one score per frame
    # and only the few that make the beam are stored as nodes.
    cand = np.empty(beam_size * (vocab + 1), dtype=np.int64)
    v_parent = np.empty(beam_size * vocab, dtype=np.int64)
    v_token = np.empty(beam_size * vocab, dtype=np.int64)
    v_state = np.empty(beam_size * vocab, dtype=np.int64)
    v_trie = np.empty(beam_size * vocab, dtype=np.int64)
    v_words = np.empty(beam_size * vocab)
    v_pnb = np.empty(beam_size * vocab)
    cand_score = np.empty(beam_size * (2 * vocab + 1))  # existing first, then new
    keep = np.empty(beam_size, dtype=np.int64)  # positions in cand_score of the next beam
    labels = np.empty(vocab, dtype=np.int64)  # labels extended this frame
    kids = np.empty(vocab, dtype=np.int64)  # (V,) existing children of the prefix being extended

    for t in range(n_frames):
        row = lp[t].astype(np.float64)  # (V,)
        if row[blank] > skip_log:  # blank skip: no new prefixes, no re-ranking
            for i in range(n_beam):
                last = ni[beam[i], _TOKEN]
                total = _merge(beam_pb[i], beam_pnb[i], use_max)
                beam_pnb[i] = beam_pnb[i] + row[last] if last >= 0 else -np.inf
                beam_pb[i] = total + row[blank]
            continue
        n_labels = _select_tokens(row, blank, prune_mass, prune_topk, labels)
        n_cand = 0
        n_new = 0
        for i in range(n_beam):
            node = beam[i]
            pb = beam_pb[i]
            pnb = beam_pnb[i]
            total = _merge(pb, pnb, use_max)
            last = ni[node, _TOKEN]
            kids[:] = -1
            child = ni[node, _FIRST]
            while child >= 0:
                kids[ni[child, _TOKEN]] = child
                child = ni[child, _NEXT]
            n_cand = _touch(ni, nf, node, t, cand, n_cand)
            nf[node, _PB] = _merge(nf[node, _PB], total + row[blank], use_max)
            if last >= 0:
                nf[node, _PNB] = _merge(nf[node, _PNB], pnb + row[last], use_max)
            for j in range(n_labels):
                c = labels[j]
                src = pb if c == last else total
                if src == -np.inf:
                    continue
                child = kids[c]
                if child >= 0:  # the prefix node + c exists: merge into it
                    n_cand = _touch(ni, nf, child, t, cand, n_cand)
                    nf[child, _PNB] = _merge(nf[child, _PNB], src + row[c], use_max)
                    continue
                state = ni[node, _STATE]
                trie = ni[node, _TRIE]
                words = nf[node, _WORDS]
                if use_words:
                    if c == space:
                        if trie == 0:
                            continue  # empty word: leading or doubled space
                        if lexicon and not (trie > 0 and tr_is_word[trie]):
                            continue  # not a vocabulary word
                        state, score, _ = _word_score(
                            state, trie, tr_is_word, tr_lm_id, use_lm, lm_keys, lm_logp, lm_bow, lm_suffix,
                            lm_offsets, lm_vocab, unk_log10, unk_id, alpha, beta, oov_score)
                        words += score
                        trie = 0
                    else:
                        trie = _trie_step(trie, c, tr_start, tr_label, tr_child)
                        if lexicon and trie < 0:
                            continue  # leaves the lexicon
                v_parent[n_new] = node
                v_token[n_new] = c
                v_state[n_new] = state
                v_trie[n_new] = trie
                v_words[n_new] = words
                v_pnb[n_new] = src + row[c]
                n_new += 1
        for j in range(n_cand):
            node = cand[j]
            cand_score[j] = _merge(nf[node, _PB], nf[node, _PNB], use_max) + nf[node, _WORDS]
        for j in range(n_new):
            cand_score[n_cand + j] = v_pnb[j] + v_words[j]
        n_beam = _top_k(cand_score, n_cand + n_new, beam_size, keep)
        while n_nodes + n_beam > ni.shape[0]:
            ni, nf = _grow(ni, nf)
        for i in range(n_beam):
            j = keep[i]
            if j < n_cand:
                node = cand[j]
            else:  # a new prefix made the beam: store it as a node
                j -= n_cand
                node = n_nodes
                n_nodes += 1
                parent = v_parent[j]
                ni[node, _PARENT] = parent
                ni[node, _TOKEN] = v_token[j]
                ni[node, _STATE] = v_state[j]
                ni[node, _TRIE] = v_trie[j]
                ni[node, _FIRST] = -1
                ni[node, _NEXT] = ni[parent, _FIRST]
                ni[node, _STAMP] = t
                ni[parent, _FIRST] = node
                nf[node, _WORDS] = v_words[j]
                nf[node, _PB] = -np.inf
                nf[node, _PNB] = v_pnb[j]
            beam[i] = node
            beam_pb[i] = nf[node, _PB]
            beam_pnb[i] = nf[node, _PNB]

    # End of utterance: complete the last word, add </s>.
    out_node = np.empty(n_beam, dtype=np.int64)
    out_ac = np.empty(n_beam)
    out_words = np.empty(n_beam)
    out_valid = np.ones(n_beam, dtype=np.bool_)
    for i in range(n_beam):
        node = beam[i]
        acoustic = _merge(beam_pb[i], beam_pnb[i], use_max)
        state = ni[node, _STATE]
        words = nf[node, _WORDS]
        trie = ni[node, _TRIE]
        if use_words and trie != 0:
            new_state, score, in_lex = _word_score(
                state, trie, tr_is_word, tr_lm_id, use_lm, lm_keys, lm_logp, lm_bow, lm_suffix,
                lm_offsets, lm_vocab, unk_log10, unk_id, alpha, beta, oov_score)
            if lexicon and not in_lex:
                out_valid[i] = False  # cut back to the last complete word
                while ni[node, _PARENT] >= 0 and ni[node, _TOKEN] != space:
                    node = ni[node, _PARENT]
                state = ni[node, _STATE]
                words = nf[node, _WORDS]
            else:
                state = new_state
                words += score
        if use_lm and score_eos:
            words += alpha * lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab,
                                        unk_log10, state, eos_id)[1] * LN10
        out_node[i] = node
        out_ac[i] = acoustic
        out_words[i] = words
    total = out_ac + out_words
    # Valid hypotheses first, each group best first.
    order = np.argsort(-(total - np.where(out_valid, 0.0, np.inf)), kind="mergesort")
    if not out_valid.any():
        order = np.argsort(-total, kind="mergesort")
    return out_node[order], total[order], out_ac[order], out_words[order], out_valid[order], ni


@numba.njit(cache=True)
def _backtrack(ni: np.ndarray, node: int) -> np.ndarray:
    """Labels of the prefix ending at `node`, first to last."""
    length = 0
    n = node
    while ni[n, _PARENT] >= 0:
        length += 1
        n = ni[n, _PARENT]
    out = np.empty(length, dtype=np.int64)
    n = node
    for i in range(length - 1, -1, -1):
        out[i] = ni[n, _TOKEN]
        n = ni[n, _PARENT]
    return out


# ----------------------------------------------------------------------------- the decoder


def _to_numpy(log_probs: Any) -> np.ndarray:
    """Torch tensor or array-like -> float32 numpy array."""
    if hasattr(log_probs, "detach"):
        log_probs = log_probs.detach().to("cpu").float().numpy()
    return np.asarray(log_probs, dtype=np.float32)


class BeamSearchDecoder:
    """CTC prefix beam search with optional n-gram shallow fusion; a `Decoder` for the Transcriber.

    Args:
        tokenizer: the model's :class:`asr.text.CharTokenizer` (blank id 0; its space is the word boundary).
        lm: word n-gram model (:func:`asr.decoding.lm.load_arpa` / `build_kneser_ney`), or None.
        beam_size: prefixes kept per frame.
        alpha: LM weight on natural-log word probabilities.
        beta: word insertion bonus per completed word (used with an LM).
        lexicon: False = open vocabulary; True = only the LM's words; a list of words = only those.
        token_prune: per frame, extend the most probable labels until this much probability
            (blank included) is covered; >= 1 disables.
        token_topk: extend at most this many labels per frame (None: no cap).
        blank_skip: skip frames whose blank probability exceeds this (None disables); see module doc.
        oov_penalty: with an LM, an out-of-vocabulary word scores `-oov_penalty` (+ beta) instead of
            `alpha * ln P(<unk> | context)`.
        score_eos: add `alpha * ln P(</s> | last words)` at the end of the utterance.
        merge: "sum" (prefix probability over all alignments) or "max" (best alignment only);
            None (default) = "max" for beam_size 1, so that beam width 1 is exactly greedy decoding
            (without an LM), else "sum".
        num_threads: utterances of a batch searched at once, each in its own thread (the numba core
            releases the GIL); None = torch's thread count (`torch.set_num_threads`).
            Results do not depend on it.
    """

    def __init__(self, tokenizer, lm: NGramLM | None = None, beam_size: int = 16, alpha: float = 0.5,
                 beta: float = 1.0, lexicon: bool | Iterable[str] = False, token_prune: float = 0.9999,
                 token_topk: int | None = None, blank_skip: float | None = 0.999, oov_penalty: float | None = None,
                 score_eos: bool = True, merge: str | None = None, num_threads: int | None = None) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if merge is None:
            merge = "max" if beam_size == 1 else "sum"
        if merge not in ("sum", "max"):
            raise ValueError(f"merge must be 'sum' or 'max', got {merge!r}")
        if not 0.0 < token_prune:
            raise ValueError(f"token_prune must be > 0, got {token_prune}")
        if blank_skip is not None and not 0.0 < blank_skip <= 1.0:
            raise ValueError(f"blank_skip must be in (0, 1] or None, got {blank_skip}")
        if lexicon is True and lm is None:
            raise ValueError("lexicon=True takes the words from the LM: pass lm=..., or a list of words")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = num_threads
        self.tokenizer = tokenizer
        self.lm = lm
        self.beam_size = int(beam_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.token_prune = float(token_prune)
        self.token_topk = token_topk
        self.blank_skip = blank_skip
        self.oov_penalty = oov_penalty
        self.score_eos = score_eos
        self.merge = merge
        self.lexicon = lexicon is not False
        self.use_words = lm is not None or self.lexicon
        self.blank = tokenizer.blank_id
        self.space = tokenizer.space_id if self.use_words else -1
        words = None if lexicon is True or lexicon is False else list(lexicon)
        self.trie = self._make_trie(words) if self.use_words else _Trie.empty()
        if self.lexicon and self.trie.words == 0:
            raise ValueError("the lexicon has no word the tokenizer can spell")

    def _make_trie(self, words: list[str] | None) -> _Trie:
        """Trie over `words` (default: the LM's vocabulary) spelled in the tokenizer's labels."""
        label_of = {ch: i for i, ch in enumerate(self.tokenizer.vocab) if i != self.blank and i != self.space}
        lm = self.lm
        if words is None:
            words = [w for w in lm.vocab if w not in _SPECIAL_WORDS] if lm is not None else []
        unk = lm.unk_id if lm is not None else -1

        def spellings() -> Iterable[tuple[list[int], int]]:
            for word in words:
                for spelled in (word, word.upper()):
                    if spelled and all(ch in label_of for ch in spelled):
                        wid = lm.word_to_id.get(word, unk) if lm is not None else -1
                        yield [label_of[ch] for ch in spelled], wid
                        break

        return build_trie(spellings())

    def search(self, log_probs: Any) -> list[Hypothesis]:
        """Decode one utterance: (T, V) log-probs -> hypotheses, best first, one per distinct text."""
        lp = np.ascontiguousarray(_to_numpy(log_probs))  # (T, V)
        if lp.ndim != 2 or lp.shape[1] != self.tokenizer.vocab_size:
            raise ValueError(f"log_probs must be (T, {self.tokenizer.vocab_size}), got shape {lp.shape}")
        lm = self.lm
        if lm is not None:
            keys, logp, bow, suffix, offsets, lm_vocab, unk_log10 = lm.arrays()
            unk_id, eos_id, start = lm.unk_id, lm.eos_id, lm.start_state()
        else:
            keys = suffix = np.zeros(1, dtype=np.int64)
            logp = bow = np.zeros(1)
            offsets = np.array([0, 1], dtype=np.int64)
            lm_vocab, unk_log10, unk_id, eos_id, start = 1, 0.0, -1, -1, -1
        mass = self.token_prune if self.token_prune < 1.0 else np.inf
        topk = self.token_topk if self.token_topk else lp.shape[1]
        skip_log = math.log(self.blank_skip) if self.blank_skip is not None and self.blank_skip < 1.0 else np.inf
        oov = -float(self.oov_penalty) if self.oov_penalty is not None else np.nan
        tr = self.trie
        nodes, total, acoustic, words, valid, ni = _beam_search(
            lp, self.blank, self.beam_size, mass, topk, skip_log, self.merge == "max",
            self.use_words, self.lexicon, self.space, tr.start, tr.token, tr.child, tr.is_word, tr.lm_id,
            lm is not None, keys, logp, bow, suffix, offsets, lm_vocab, unk_log10, unk_id,
            eos_id, start, self.alpha, self.beta, oov, self.score_eos and eos_id >= 0)
        out: list[Hypothesis] = []
        seen: set[str] = set()
        for i in range(len(nodes)):
            if out and not valid[i] and valid[0]:
                break  # cut-back hypotheses only stand in when no hypothesis ends on a word
            tokens = _backtrack(ni, nodes[i]).tolist()
            text = self.tokenizer.decode(tokens)
            if text in seen:
                continue
            seen.add(text)
            out.append(Hypothesis(text, tokens, float(total[i]), float(acoustic[i]), float(words[i])))
        return out

    def decode_nbest(self, log_probs: Any, lengths: Any = None, n: int | None = None) -> list[list[Hypothesis]]:
        """(B, T, V) log-probs and (B,) valid lengths -> per utterance up to `n` hypotheses, best first."""
        lp = _to_numpy(log_probs)  # (B, T, V)
        if lp.ndim != 3:
            raise ValueError(f"log_probs must be (B, T, V), got shape {lp.shape}")
        if lengths is None:
            lens = [lp.shape[1]] * lp.shape[0]
        else:
            lens = [int(x) for x in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
        return map_utterances(lambda b: self.search(lp[b, : lens[b]])[:n], lp.shape[0], self.threads())

    def threads(self) -> int:
        """How many utterances `decode_nbest` searches at once (see `num_threads`)."""
        return self.num_threads if self.num_threads is not None else default_threads()

    def decode(self, log_probs: Any, lengths: Any = None) -> list[str]:
        """(B, T, V) log-probs and (B,) lengths -> the best text per utterance."""
        return [hyps[0].text if hyps else "" for hyps in self.decode_nbest(log_probs, lengths, n=1)]
