"""Beam-pruned token-passing Viterbi over a lexicon tree of HMM states, with an n-gram LM on word ends.

    >>> graph = build_graph(topology, ["ENTER", "ERASE", "TEN"])
    >>> decoder = ViterbiDecoder(graph, lm=load_arpa("lm.arpa"), lm_weight=0.5, word_bonus=1.0)
    >>> result = decoder.decode(emissions)           # (T, C) emission scores -> words + frames

**Graph.** Words are spelled with the topology's character units and stored in a prefix tree;
every tree node expands into its character's chain of HMM states (:mod:`asr.hybrid.topology`).
The word boundary (silence, or CTC's space/blank) is a chain of its own that may sit before the
first word, between words and after the last. Graph nodes are the boundary's states followed by
the tree's states. Static successors (state to state inside a chain, chain end to child chains,
boundary to first characters) are a CSR table; leaving a word-end node is a *word exit*.

**Scores.** A path's score is the sum of: per frame the emission score of its state's column;
per frame that stays in a state ``loop_logp`` and per move to another state (word exits
included) the leaving state's ``exit_logp``, both times ``transition_scale``; per word
``lm_weight · ln P(word | history) + word_bonus``; at the end ``lm_weight · ln P(</s> | history)``.
The utterance may end in a boundary state that can be left, or in a state from which its word can
be exited (that last exit is not charged). A word not in the LM scores as <unk>.

**Search.** A token is (graph node, LM state) with a score, the frame its current word began and a
pointer into a table of finished words (word, start, end, previous). Per frame every surviving
token is copied to its self-loop, its static successors, and, at a word end, through the LM to
every word-entry node under the new LM state; tokens meeting at the same (node, LM state) keep
the best. Pruning keeps tokens within ``beam`` of the frame's best and at most ``max_active`` of
them. All of it is one numba call per utterance; the LM is queried with
:func:`asr.decoding.lm.lm_advance` on its flat arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.typed import Dict

from asr.decoding.lm import NGramLM, lm_advance
from asr.hybrid.topology import Topology

LN10 = math.log(10.0)


@dataclass
class DecodingGraph:
    """The static search graph (see the module doc). G graph nodes, E static arcs."""

    words: list[str]  # lexicon, index = word id in `exit_word`
    node_state: np.ndarray  # (G,) HMM state of each node
    is_tree: np.ndarray  # (G,) bool: node belongs to a word (not the boundary)
    succ_ptr: np.ndarray  # (G+1,) CSR offsets into succ_idx
    succ_idx: np.ndarray  # (E,) successor nodes
    exit_word: np.ndarray  # (G,) word id ended by leaving this node, else -1
    entries: np.ndarray  # (N_e,) nodes a word, the boundary or the utterance may start in
    final_boundary: np.ndarray  # (G,) bool: boundary node the utterance may end in
    topology: Topology

    @property
    def num_nodes(self) -> int:
        return int(self.node_state.shape[0])


def _chain_entries(skippable: list[bool]) -> list[int]:
    """Positions a chain may be entered at: the first, and each one after only skippable positions."""
    out = []
    for j, skip in enumerate(skippable):
        out.append(j)
        if not skip:
            break
    return out


def _leavable(skippable: list[bool], j: int) -> bool:
    """A chain may be left from position j when every later position is skippable."""
    return all(skippable[j + 1:])


def build_graph(topology: Topology, words: list[str]) -> DecodingGraph:
    """Lexicon tree of `words` (spelled with the topology's units) plus the boundary chain.

    Words with characters outside the topology, and duplicates, are left out.
    """
    lexicon: list[str] = []
    spellings: list[list[int]] = []
    seen: set[str] = set()
    for word in words:
        units = topology.spell(word)
        if units is not None and word not in seen:
            seen.add(word)
            lexicon.append(word)
            spellings.append(units)
    if not lexicon:
        raise ValueError("the lexicon has no word spelled with the topology's characters")

    # Prefix tree over unit sequences: node 0 is the root.
    tree_unit = [0]
    tree_children: list[dict[int, int]] = [{}]
    tree_word = [-1]
    for w, units in enumerate(spellings):
        node = 0
        for unit in units:
            child = tree_children[node].get(unit)
            if child is None:
                child = len(tree_unit)
                tree_unit.append(unit)
                tree_children.append({})
                tree_word.append(-1)
                tree_children[node][unit] = child
            node = child
        tree_word[node] = w

    skippable = topology.skippable
    node_state: list[int] = []
    is_tree: list[bool] = []
    first_node: list[int] = [0] * len(tree_unit)  # graph node of each tree node's first state

    boundary = topology.unit_states[0]
    for s in boundary:
        node_state.append(s)
        is_tree.append(False)
    for n in range(1, len(tree_unit)):
        first_node[n] = len(node_state)
        for s in topology.unit_states[tree_unit[n]]:
            node_state.append(s)
            is_tree.append(True)

    def entries_of(tree_node: int) -> list[int]:
        chain = topology.unit_states[tree_unit[tree_node]]
        return [first_node[tree_node] + j for j in _chain_entries([bool(skippable[s]) for s in chain])]

    root_entries = [g for child in tree_children[0].values() for g in entries_of(child)]
    succ: list[list[int]] = [[] for _ in node_state]
    exit_word = np.full(len(node_state), -1, dtype=np.int64)
    final_boundary = np.zeros(len(node_state), dtype=np.bool_)

    def link_chain(base: int, chain: list[int]) -> list[int]:
        """Arcs inside one chain; returns the positions the chain may be left from."""
        skip = [bool(skippable[s]) for s in chain]
        for j in range(len(chain)):
            k = j + 1
            while k < len(chain):
                succ[base + j].append(base + k)
                if not skip[k]:
                    break
                k += 1
        return [j for j in range(len(chain)) if _leavable(skip, j)]

    boundary_leave = link_chain(0, boundary)
    for j in boundary_leave:
        succ[j] += root_entries
        final_boundary[j] = True
    boundary_entries = [j for j in _chain_entries([bool(skippable[s]) for s in boundary])] if boundary else []

    for n in range(1, len(tree_unit)):
        chain = topology.unit_states[tree_unit[n]]
        base = first_node[n]
        for j in link_chain(base, chain):
            last = j == len(chain) - 1
            for unit, child in tree_children[n].items():
                if unit == tree_unit[n] and topology.repeat_needs_last_state and not last:
                    continue
                succ[base + j] += entries_of(child)
            if tree_word[n] >= 0:
                exit_word[base + j] = tree_word[n]

    sizes = np.array([len(s) for s in succ], dtype=np.int64)
    succ_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    succ_idx = np.array([g for s in succ for g in s], dtype=np.int64)
    return DecodingGraph(lexicon, np.asarray(node_state, dtype=np.int64), np.asarray(is_tree, dtype=np.bool_),
                         succ_ptr, succ_idx, exit_word, np.asarray(boundary_entries + root_entries, dtype=np.int64),
                         final_boundary, topology)


@dataclass
class ViterbiResult:
    """Best word sequence: words, (start, end) frames (end exclusive) and its total score."""

    words: list[str]
    starts: list[int]
    ends: list[int]
    score: float
    complete: bool  # False when no token could end the utterance (best partial path returned)


@numba.njit(cache=True)
def _token_buffers(n: int):
    """Token arrays of capacity n: graph node, LM state, score, trace index, word start frame."""
    return (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64),
            np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))


@numba.njit(cache=True)
def _grow_trace(tr: np.ndarray, n: int) -> np.ndarray:
    """Double the (cap, 4) trace table when full."""
    if n < tr.shape[0]:
        return tr
    bigger = np.empty((2 * tr.shape[0], 4), dtype=np.int64)
    bigger[: tr.shape[0]] = tr
    return bigger


@numba.njit(cache=True)
def _offer_token(slot, key: int, n_new: int, node: int, lm_state: int, score: float, trace_id: int, word_start: int,
                 g_new: np.ndarray, h_new: np.ndarray, s_new: np.ndarray, tr_new: np.ndarray, ws_new: np.ndarray) -> int:
    """Add the token (node, LM state) = `key` with `score`, or improve the one already there; returns the new count."""
    j = slot[key] if key in slot else -1
    if j < 0:
        j = n_new
        n_new += 1
        slot[key] = j
        g_new[j] = node
        h_new[j] = lm_state
    elif score <= s_new[j]:
        return n_new
    s_new[j] = score
    tr_new[j] = trace_id
    ws_new[j] = word_start
    return n_new


@numba.njit(cache=True, nogil=True)  # nogil: the utterances of a batch are decoded in parallel threads
def _viterbi(em: np.ndarray, node_col: np.ndarray, node_loop: np.ndarray, node_exit: np.ndarray,
             is_tree: np.ndarray, succ_ptr: np.ndarray, succ_idx: np.ndarray, exit_word: np.ndarray,
             entries: np.ndarray, final_boundary: np.ndarray, word_lm: np.ndarray,
             lm_keys: np.ndarray, lm_logp: np.ndarray, lm_bow: np.ndarray, lm_suffix: np.ndarray,
             lm_offsets: np.ndarray, lm_vocab: int, lm_unk: float, lm_start: int, lm_eos: int, use_lm: bool,
             lm_weight: float, word_bonus: float, beam: float, max_active: int):
    """Token-passing Viterbi (see the module doc). em (T, C) emission scores per column.

    Returns (trace (cap, 4) int64 rows word/start/end/prev, best trace index, best score, complete).
    """
    n_frames = em.shape[0]
    n_lm = lm_keys.shape[0] + 1  # LM states -1..G_lm-1 → h + 1
    trace = np.empty((1024, 4), dtype=np.int64)
    n_trace = 0

    cap = max(16, entries.shape[0])
    g_cur, h_cur, s_cur, tr_cur, ws_cur = _token_buffers(cap)
    g_new, h_new, s_new, tr_new, ws_new = _token_buffers(cap)  # grown when a frame may need more
    n_cur = 0
    for e in entries:
        g_cur[n_cur] = e
        h_cur[n_cur] = lm_start
        s_cur[n_cur] = em[0, node_col[e]]
        tr_cur[n_cur] = -1
        ws_cur[n_cur] = 0
        n_cur += 1

    n_entries = entries.shape[0]
    for t in range(1, n_frames):
        # Upper bound on new tokens this frame: the buffers must hold them all.
        bound = 0
        for i in range(n_cur):
            g = g_cur[i]
            bound += 1 + succ_ptr[g + 1] - succ_ptr[g]
            if exit_word[g] >= 0:
                bound += n_entries
        if g_new.shape[0] < bound:
            g_new, h_new, s_new, tr_new, ws_new = _token_buffers(max(bound, 2 * g_new.shape[0]))
        slot = Dict.empty(key_type=types.int64, value_type=types.int64)
        n_new = 0
        best = -np.inf
        row = em[t]
        for i in range(n_cur):
            g = g_cur[i]
            h = h_cur[i]
            base = s_cur[i]
            # Moves that keep the LM state: self-loop, then static successors.
            n_moves = 1 + succ_ptr[g + 1] - succ_ptr[g]
            for m in range(n_moves):
                if m == 0:
                    target = g
                    score = base + node_loop[g]
                else:
                    target = succ_idx[succ_ptr[g] + m - 1]
                    score = base + node_exit[g]
                score += row[node_col[target]]
                if score < best - beam:
                    continue
                start = ws_cur[i]
                if is_tree[target] and not is_tree[g]:
                    start = t
                n_new = _offer_token(slot, target * n_lm + h + 1, n_new, target, h, score, tr_cur[i], start,
                                     g_new, h_new, s_new, tr_new, ws_new)
                if score > best:
                    best = score
            # Word exit: LM score, a trace entry, then every entry node under the new LM state.
            w = exit_word[g]
            if w >= 0:
                h2 = h
                lm_score = 0.0
                if use_lm:
                    h2, log10p = lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab, lm_unk,
                                            h, word_lm[w])
                    lm_score = lm_weight * log10p * 2.302585092994046
                exited = base + node_exit[g] + lm_score + word_bonus
                if exited < best - beam:
                    continue
                trace = _grow_trace(trace, n_trace)
                trace[n_trace, 0] = w
                trace[n_trace, 1] = ws_cur[i]
                trace[n_trace, 2] = t
                trace[n_trace, 3] = tr_cur[i]
                tr_id = n_trace
                n_trace += 1
                for e in entries:
                    score = exited + row[node_col[e]]
                    if score < best - beam:
                        continue
                    n_new = _offer_token(slot, e * n_lm + h2 + 1, n_new, e, h2, score, tr_id, t,
                                         g_new, h_new, s_new, tr_new, ws_new)
                    if score > best:
                        best = score
        # Prune: beam around the best, then at most max_active tokens.
        threshold = best - beam
        alive = 0
        for j in range(n_new):
            if s_new[j] >= threshold:
                alive += 1
        if alive > max_active:
            kept = np.empty(alive)
            k = 0
            for j in range(n_new):
                if s_new[j] >= threshold:
                    kept[k] = s_new[j]
                    k += 1
            threshold = np.partition(kept, alive - max_active)[alive - max_active]
        if g_cur.shape[0] < n_new:
            g_cur, h_cur, s_cur, tr_cur, ws_cur = _token_buffers(n_new)
        n_cur = 0
        for j in range(n_new):
            if s_new[j] >= threshold and n_cur < max_active:
                g_cur[n_cur] = g_new[j]
                h_cur[n_cur] = h_new[j]
                s_cur[n_cur] = s_new[j]
                tr_cur[n_cur] = tr_new[j]
                ws_cur[n_cur] = ws_new[j]
                n_cur += 1

    # Finish: end in a leavable boundary state, or exit the current word (uncharged), then </s>.
    best_score = -np.inf
    best_trace = -1
    best_any = -np.inf
    best_any_trace = -1
    pending_word = -1
    pending_start = 0
    for i in range(n_cur):
        g = g_cur[i]
        h = h_cur[i]
        if s_cur[i] > best_any:
            best_any = s_cur[i]
            best_any_trace = tr_cur[i]
        if final_boundary[g]:
            score = s_cur[i]
            if use_lm:
                score += lm_weight * lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab, lm_unk,
                                                h, lm_eos)[1] * 2.302585092994046
            if score > best_score:
                best_score = score
                best_trace = tr_cur[i]
                pending_word = -1
        w = exit_word[g]
        if w >= 0:
            score = s_cur[i] + word_bonus
            if use_lm:
                h2, log10p = lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab, lm_unk, h,
                                        word_lm[w])
                score += lm_weight * (log10p + lm_advance(lm_keys, lm_logp, lm_bow, lm_suffix, lm_offsets, lm_vocab,
                                                          lm_unk, h2, lm_eos)[1]) * 2.302585092994046
            if score > best_score:
                best_score = score
                best_trace = tr_cur[i]
                pending_word = w
                pending_start = ws_cur[i]
    complete = best_score > -np.inf
    if not complete:
        best_score = best_any
        best_trace = best_any_trace
    elif pending_word >= 0:
        trace = _grow_trace(trace, n_trace)
        trace[n_trace, 0] = pending_word
        trace[n_trace, 1] = pending_start
        trace[n_trace, 2] = n_frames
        trace[n_trace, 3] = best_trace
        best_trace = n_trace
        n_trace += 1
    return trace[:n_trace], best_trace, best_score, complete


_EMPTY_I = np.zeros(1, dtype=np.int64)
_EMPTY_F = np.zeros(1, dtype=np.float64)


class ViterbiDecoder:
    """Decode (T, C) emission scores into words with a :class:`DecodingGraph` and an optional LM."""

    def __init__(self, graph: DecodingGraph, lm: NGramLM | None = None, lm_weight: float = 1.0,
                 word_bonus: float = 0.0, beam: float = 16.0, max_active: int = 2000,
                 transition_scale: float = 1.0) -> None:
        if beam <= 0 or max_active < 1:
            raise ValueError("beam must be > 0 and max_active >= 1")
        self.graph = graph
        self.lm = lm
        self.lm_weight = lm_weight
        self.word_bonus = word_bonus
        self.beam = beam
        self.max_active = max_active
        topo = graph.topology
        states = graph.node_state
        self.node_col = topo.column[states]  # (G,)
        self.node_loop = topo.loops()[states] * transition_scale  # (G,)
        self.node_exit = topo.exits()[states] * transition_scale  # (G,)
        if lm is not None:
            self.word_lm = np.array([lm.word_id(w) for w in graph.words], dtype=np.int64)  # (W,) -1 = unnamed
            self._lm_arrays = lm.arrays()
            self._lm_start, self._lm_eos = lm.start_state(), lm.eos_id
        else:
            self.word_lm = np.full(len(graph.words), -1, dtype=np.int64)
            self._lm_arrays = (_EMPTY_I, _EMPTY_F, _EMPTY_F, _EMPTY_I, np.zeros(2, dtype=np.int64), 1, 0.0)
            self._lm_start, self._lm_eos = -1, -1

    def decode(self, emissions: np.ndarray) -> ViterbiResult:
        """Best path for one utterance's (T, C) emission scores (C ≥ the topology's columns)."""
        em = np.ascontiguousarray(np.asarray(emissions, dtype=np.float64))
        if em.ndim != 2 or em.shape[1] <= int(self.node_col.max()):
            raise ValueError(f"emissions must be (T, >{int(self.node_col.max())}), got {em.shape}")
        if em.shape[0] == 0:
            return ViterbiResult([], [], [], 0.0, True)
        g = self.graph
        keys, logp, bow, suffix, offsets, vocab, unk = self._lm_arrays
        trace, index, score, complete = _viterbi(
            em, self.node_col, self.node_loop, self.node_exit, g.is_tree, g.succ_ptr, g.succ_idx, g.exit_word,
            g.entries, g.final_boundary, self.word_lm, keys, logp, bow, suffix, offsets, vocab, unk,
            self._lm_start, self._lm_eos, self.lm is not None, self.lm_weight, self.word_bonus, self.beam,
            self.max_active)
        words, starts, ends = [], [], []
        while index >= 0:
            w, start, end, index = trace[index]
            words.append(g.words[w])
            starts.append(int(start))
            ends.append(int(end))
        return ViterbiResult(words[::-1], starts[::-1], ends[::-1], float(score), bool(complete))
