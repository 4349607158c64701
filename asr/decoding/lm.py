"""Word n-gram language models: modified Kneser-Ney estimation, ARPA files, fast backoff queries.

    >>> lm = build_kneser_ney(["the cat sat", "the dog sat"], order=3)
    >>> write_arpa(lm, "lm.arpa"); lm = load_arpa("lm.arpa")
    >>> lm.log10_prob("SAT", ("THE", "CAT"))                 # standard ARPA backoff
    >>> state = lm.start_state()                              # the decoder's integer-state API
    >>> state, ln_p = lm.advance(state, lm.word_id("THE"))

Storage (built once, used by numpy and numba alike). Word ids are the unigram positions. Every
order k keeps its n-grams sorted by the key ``index_{k-1}(w1..w_{k-1}) * |V| + w_k``, where
``index_{k-1}`` is the n-gram's prefix position within order k-1 (order 1: the word id), and all
orders are concatenated into one set of flat arrays; an n-gram's *global index* is its position
there. A decoder **state** is the global index of the longest stored suffix of the context (at most
order-1 words), or -1 for the empty context. Looking up a child is one binary search; backing off
follows a precomputed ``suffix`` pointer. Missing prefixes of stored n-grams (SRILM-pruned files)
are inserted with backoff 0 and the probability standard backoff gives them, so the model means
exactly what the file means.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import time
import zlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numba
import numpy as np

from asr.fileio import atomic_output
from asr.text import normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
NO_PROB_LOG10 = -99.0  # what ARPA files give <s>, which is never predicted
DEFAULT_DISCOUNTS = (0.5, 1.0, 1.5)  # fallback D1, D2, D3+ (KenLM's --discount_fallback values)
_SPECIAL = {"<s>": BOS, "</s>": EOS, "<unk>": UNK}  # lower-cased spelling -> canonical token

Discounts = tuple[float, float, float]


# ----------------------------------------------------------------------------- numba kernels


@numba.njit(cache=True)
def _order_of(offsets: np.ndarray, g: int) -> int:
    """Order k of global index g: offsets (N+1,) with order k at [offsets[k-1], offsets[k])."""
    k = 1
    while g >= offsets[k]:
        k += 1
    return k


@numba.njit(cache=True)
def _find(keys: np.ndarray, lo: int, hi: int, key: int) -> int:
    """Absolute position of `key` in the sorted slice keys[lo:hi], or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and keys[lo] == key:
        return lo
    return -1


@numba.njit(cache=True)
def lm_advance(keys: np.ndarray, logp: np.ndarray, bow: np.ndarray, suffix: np.ndarray, offsets: np.ndarray,
               vocab_size: int, unk_log10: float, state: int, word: int) -> tuple[int, float]:
    """One backoff query: (state, word id) -> (next state, log10 P(word | state)).

    keys/logp/bow/suffix: (G,) flat n-gram tables; offsets: (N+1,). `word` < 0 means a word the
    model cannot name (no <unk> in it): it scores `unk_log10` and empties the context.
    """
    order = offsets.shape[0] - 1
    if word < 0:
        return -1, unk_log10
    total = 0.0
    ctx = state
    while ctx >= 0:
        k = _order_of(offsets, ctx)
        if k < order:
            g = _find(keys, offsets[k], offsets[k + 1], (ctx - offsets[k - 1]) * vocab_size + word)
            if g >= 0:
                # Context + word is stored: it is the new context unless it already has `order` words.
                return (g if k + 1 < order else suffix[g]), total + logp[g]
        total += bow[ctx]
        ctx = suffix[ctx]
    return (word if order > 1 else -1), total + logp[word]


# ----------------------------------------------------------------------------- the model


class NGramLM:
    """A backoff word n-gram model (what an ARPA file holds) with fast integer-state queries.

    Attributes:
        vocab: words; a word's id is its position (the 1-gram order of the ARPA file).
        order: the highest n-gram order N.
        bos_id, eos_id, unk_id: ids of <s>, </s>, <unk> (-1 where the model lacks one).
        discounts: the modified Kneser-Ney discounts per order when built here, else None.
    """

    def __init__(self, vocab: Sequence[str], ngrams: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 discounts: list[Discounts] | None = None) -> None:
        """Args:
            vocab: the words, id = position.
            ngrams: per order k = 1..N a triple `(ids (n_k, k) int, log10 probs (n_k,), log10 backoffs (n_k,))`;
                order 1 must list every vocabulary word exactly once.
            discounts: recorded for reporting only.
        """
        self.vocab: list[str] = list(vocab)
        self.word_to_id: dict[str, int] = {w: i for i, w in enumerate(self.vocab)}
        if len(self.word_to_id) != len(self.vocab):
            raise ValueError("duplicate words in the vocabulary")
        self.order = len(ngrams)
        if self.order < 1:
            raise ValueError("an n-gram model needs at least the 1-grams")
        self.bos_id = self.word_to_id.get(BOS, -1)
        self.eos_id = self.word_to_id.get(EOS, -1)
        self.unk_id = self.word_to_id.get(UNK, -1)
        self.discounts = discounts
        self._build(ngrams)
        self._cache: dict[tuple[int, int], tuple[int, float]] = {}

    # ---- construction

    def _build(self, ngrams: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Sort every order by key, insert missing prefixes, link suffixes, flatten."""
        V = len(self.vocab)
        tables = [(np.asarray(i, dtype=np.int64).reshape(len(p), k + 1), np.asarray(p, dtype=np.float64),
                   np.asarray(b, dtype=np.float64)) for k, (i, p, b) in enumerate(ngrams)]
        ids1, logp1, bow1 = tables[0]
        if ids1.shape[0] != V or not np.array_equal(np.sort(ids1[:, 0]), np.arange(V)):
            raise ValueError("the 1-grams must list every vocabulary word exactly once")
        order1 = np.argsort(ids1[:, 0])
        tables[0] = (ids1[order1], logp1[order1], bow1[order1])
        largest = max(len(t[1]) for t in tables)
        if largest * V >= 2**62:
            raise ValueError(f"model too large for 64-bit n-gram keys ({largest} n-grams x {V} words)")

        # Insert missing prefixes (logp NaN, filled below) until every n-gram's prefix is stored.
        while True:
            keys_by_order = [np.arange(V, dtype=np.int64)]
            restart = False
            for k in range(2, self.order + 1):
                ids, logp, bow = tables[k - 1]
                parent = self._lookup_rows(ids[:, :-1], keys_by_order, V)  # (n_k,)
                missing = parent < 0
                if missing.any():
                    new = np.unique(ids[missing, :-1], axis=0)  # (m, k-1)
                    low_ids, low_logp, low_bow = tables[k - 2]
                    tables[k - 2] = (np.concatenate([low_ids, new]),
                                     np.concatenate([low_logp, np.full(len(new), np.nan)]),
                                     np.concatenate([low_bow, np.zeros(len(new))]))
                    restart = True
                    break
                key = parent * V + ids[:, -1]  # (n_k,)
                perm = np.argsort(key, kind="stable")
                key = key[perm]
                if key.size > 1 and np.any(key[1:] == key[:-1]):
                    dup = ids[perm][np.flatnonzero(key[1:] == key[:-1])[0]]
                    raise ValueError(f"duplicate {k}-gram: {' '.join(self.vocab[i] for i in dup)}")
                tables[k - 1] = (ids[perm], logp[perm], bow[perm])
                keys_by_order.append(key)
            if not restart:
                break

        sizes = [len(t[1]) for t in tables]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (N+1,)
        self._keys = np.concatenate(keys_by_order)  # (G,)
        self._logp = np.concatenate([t[1] for t in tables])  # (G,) log10
        self._bow = np.concatenate([t[2] for t in tables])  # (G,) log10
        self._ids = [t[0] for t in tables]  # per order (n_k, k), in key order

        # suffix[g]: global index of the longest stored proper suffix of n-gram g (-1: empty).
        suffix = [np.full(V, -1, dtype=np.int64)]
        for k in range(2, self.order + 1):
            rows = self._ids[k - 1]
            out = np.full(len(rows), -1, dtype=np.int64)
            todo = np.ones(len(rows), dtype=bool)
            for drop in range(1, k):  # try the suffix of k - drop words, longest first
                local = self._lookup_rows(rows[:, drop:], keys_by_order, V)
                hit = todo & (local >= 0)
                out[hit] = self._offsets[k - drop - 1] + local[hit]
                todo &= ~hit
            suffix.append(out)
        self._suffix = np.concatenate(suffix)  # (G,)
        finite = self._logp[: V][np.isfinite(self._logp[:V]) & (self._logp[:V] > NO_PROB_LOG10)]
        self._unk_log10 = float(self._logp[self.unk_id]) if self.unk_id >= 0 else float(finite.min(initial=NO_PROB_LOG10))

        # Inserted prefixes get what standard backoff gave them before they were stored.
        for k in range(2, self.order + 1):
            lo = self._offsets[k - 1]
            for pos in np.flatnonzero(np.isnan(self._logp[lo: self._offsets[k]])):
                row = self._ids[k - 1][pos]
                prefix = self._global_index(tuple(row[:-1]))
                backoff = self._bow[prefix] if prefix >= 0 else 0.0
                self._logp[lo + pos] = backoff + self._log10_ids(int(row[-1]), tuple(int(x) for x in row[1:-1]))

    @staticmethod
    def _lookup_rows(rows: np.ndarray, keys_by_order: list[np.ndarray], V: int) -> np.ndarray:
        """Local index (within order j) of each row of `rows` (n, j), or -1 where not stored."""
        n, j = rows.shape
        idx = rows[:, 0].astype(np.int64).copy()  # order 1: the word id
        for m in range(1, j):
            keys = keys_by_order[m]
            key = idx * V + rows[:, m]
            pos = np.searchsorted(keys, key)
            pos_c = np.minimum(pos, max(len(keys) - 1, 0))
            found = (idx >= 0) & (pos < len(keys)) & (keys[pos_c] == key if len(keys) else False)
            idx = np.where(found, pos, -1)
        return idx

    def _global_index(self, ids: tuple[int, ...]) -> int:
        """Global index of a stored n-gram given as word ids, else -1."""
        if not ids:
            return -1
        g = ids[0]
        for k in range(1, len(ids)):
            if k >= self.order:
                return -1
            g = _find(self._keys, self._offsets[k], self._offsets[k + 1], (g - self._offsets[k - 1]) * len(self.vocab) + ids[k])
            if g < 0:
                return -1
        return int(g)

    # ---- queries

    @property
    def counts(self) -> list[int]:
        """Number of n-grams per order, 1..N."""
        return [int(x) for x in np.diff(self._offsets)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, float]:
        """The flat tables for numba callers: `(keys, logp, bow, suffix, offsets, vocab_size, unk_log10)`."""
        return self._keys, self._logp, self._bow, self._suffix, self._offsets, len(self.vocab), self._unk_log10

    def ngrams(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Order-k n-grams: `(ids (n_k, k), log10 probs (n_k,), log10 backoffs (n_k,))`."""
        lo, hi = self._offsets[k - 1], self._offsets[k]
        return self._ids[k - 1], self._logp[lo:hi], self._bow[lo:hi]

    def word_id(self, word: str) -> int:
        """Id of `word` (special tokens in any case); unknown words map to <unk> (-1 if absent)."""
        word = _SPECIAL.get(word.lower(), word) if word.startswith("<") else word
        return self.word_to_id.get(word, self.unk_id)

    def start_state(self) -> int:
        """The state after <s> (the empty context if the model has no <s>)."""
        return self.advance(-1, self.bos_id)[0] if self.bos_id >= 0 else -1

    def advance(self, state: int, word_id: int) -> tuple[int, float]:
        """(state, word id) -> (next state, natural-log P(word | state)), cached."""
        hit = self._cache.get((state, word_id))
        if hit is None:
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            new_state, log10p = lm_advance(self._keys, self._logp, self._bow, self._suffix, self._offsets,
                                           len(self.vocab), self._unk_log10, state, word_id)
            hit = self._cache[(state, word_id)] = (int(new_state), float(log10p) * LN10)
        return hit

    def context_state(self, context: Sequence[str]) -> int:
        """State for a context given as words (only the last order-1 words matter)."""
        state = -1
        for word in list(context)[max(0, len(context) - (self.order - 1)):] if self.order > 1 else []:
            state = self.advance(state, self.word_id(word))[0]
        return state

    def _log10_ids(self, word: int, context: tuple[int, ...]) -> float:
        state = -1
        for w in context[max(0, len(context) - (self.order - 1)):] if self.order > 1 else ():
            state = int(lm_advance(self._keys, self._logp, self._bow, self._suffix, self._offsets,
                                   len(self.vocab), self._unk_log10, state, w)[0])
        return float(lm_advance(self._keys, self._logp, self._bow, self._suffix, self._offsets,
                                len(self.vocab), self._unk_log10, state, word)[1])

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 P(word | context) with standard ARPA backoff; unknown words score as <unk>."""
        return self.advance(self.context_state(context), self.word_id(word))[1] / LN10

    def score_sentence(self, words: Sequence[str] | str, bos: bool = True, eos: bool = True) -> float:
        """Natural-log probability of a word sequence, from <s> and including </s> by default."""
        if isinstance(words, str):
            words = words.split()
        state = self.start_state() if bos else -1
        total = 0.0
        for word in [*words, EOS] if eos else words:
            state, ln_p = self.advance(state, self.word_id(word))
            total += ln_p
        return total

    def __repr__(self) -> str:
        return f"NGramLM(order={self.order}, vocab={len(self.vocab)}, counts={self.counts})"


# ----------------------------------------------------------------------------- modified Kneser-Ney


def modified_kn_discounts(count_of_counts: Sequence[int]) -> Discounts | None:
    """Chen & Goodman's D1, D2, D3+ from n1..n4 (n-grams seen exactly 1..4 times); None if undefined.

    Y = n1 / (n1 + 2 n2);  D1 = 1 - 2Y n2/n1;  D2 = 2 - 3Y n3/n2;  D3+ = 3 - 4Y n4/n3.
    Undefined when some n_k is 0 or a discount comes out <= 0 (small corpora).
    """
    n1, n2, n3, n4 = (int(x) for x in count_of_counts[:4])
    if min(n1, n2, n3, n4) <= 0:
        return None
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return d if all(x > 0 for x in d) else None


def _discount(d: Discounts, count: int) -> float:
    """The discount for an n-gram with (adjusted) count `count`."""
    return 0.0 if count <= 0 else d[min(count, 3) - 1]


def _resolve_discounts(discounts: Sequence[float] | Sequence[Sequence[float]] | None,
                       adjusted: list[dict[tuple[int, ...], int]]) -> list[Discounts]:
    """Discounts per order: estimated from count-of-counts, or the user's (one triple, or one per order)."""
    order = len(adjusted)
    if discounts is not None:
        items: list[float | Sequence[float]] = list(discounts)
        numbers = [float(x) for x in items if isinstance(x, (int, float))]
        if len(items) == 3 and len(numbers) == 3:
            return [(numbers[0], numbers[1], numbers[2])] * order
        triples = [x for x in items if not isinstance(x, (int, float))]
        if len(items) != order or len(triples) != order or any(len(x) != 3 for x in triples):
            raise ValueError(f"discounts must be (D1, D2, D3+) or one such triple per order ({order})")
        return [(float(x[0]), float(x[1]), float(x[2])) for x in triples]
    out: list[Discounts] = []
    for table in adjusted:
        coc = Counter(c for c in table.values() if c <= 4)
        out.append(modified_kn_discounts([coc[1], coc[2], coc[3], coc[4]]) or DEFAULT_DISCOUNTS)
    return out


def build_kneser_ney(sentences: Iterable[str], order: int = 3,
                     discounts: Sequence[float] | Sequence[Sequence[float]] | None = None) -> NGramLM:
    """Interpolated modified Kneser-Ney n-gram model of normalised, upper-case word sentences.

    Each sentence is normalised (:func:`asr.text.normalize_text`) and padded as `<s> w1 .. wn </s>`.
    The highest order uses raw counts; lower orders use continuation counts N1+(. w), except n-grams
    starting with <s> (nothing precedes them), which keep raw counts. Per order and history h:

        P(w|h) = max(c(hw) - D(c(hw)), 0) / c(h.) + gamma(h) P(w|h'),
        gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h.)

    and the 1-grams interpolate with the uniform distribution over the vocabulary (all words,
    </s> and <unk>; not <s>), so <unk> gets gamma() / |V|, the mass left by discounting. gamma(h) is
    the ARPA backoff of h. Discounts come from count-of-counts per order; where they are undefined
    (tiny corpora), (0.5, 1.0, 1.5) is used. `discounts` overrides: one (D1, D2, D3+) for all
    orders, or one triple per order.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    corpus = [s.split() for s in (normalize_text(x) for x in sentences) if s]
    if not corpus:
        raise ValueError("no words in the training text")
    vocab = [UNK, BOS, EOS, *sorted({w for s in corpus for w in s})]
    ids = {w: i for i, w in enumerate(vocab)}
    bos, eos = ids[BOS], ids[EOS]

    raw: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order)]  # raw[n-1]: n-gram counts
    for sentence in corpus:
        padded = [bos, *(ids[w] for w in sentence), eos]
        for n in range(1, order + 1):
            for i in range(1 if n == 1 else 0, len(padded) - n + 1):
                raw[n - 1][tuple(padded[i:i + n])] += 1

    adjusted: list[dict[tuple[int, ...], int]] = [dict() for _ in range(order)]
    adjusted[order - 1] = dict(raw[order - 1])
    for n in range(order - 1, 0, -1):  # continuation counts for order n from the (n+1)-grams
        continuation: Counter[tuple[int, ...]] = Counter(g[1:] for g in raw[n])
        adjusted[n - 1] = {g: (c if g[0] == bos else continuation[g]) for g, c in raw[n - 1].items()}
    disc = _resolve_discounts(discounts, adjusted)

    probs: list[dict[tuple[int, ...], float]] = [dict() for _ in range(order)]
    backoffs: list[dict[tuple[int, ...], float]] = [dict() for _ in range(order)]
    # 1-grams: interpolate with uniform over the predictable vocabulary.
    table = adjusted[0]
    total = sum(table.values())
    gamma0 = sum(_discount(disc[0], c) for c in table.values()) / total
    uniform = gamma0 / (len(vocab) - 1)
    for w in range(len(vocab)):
        if w != bos:
            c = table.get((w,), 0)
            probs[0][(w,)] = max(c - _discount(disc[0], c), 0.0) / total + uniform
    # Higher orders: per history, discounted counts plus gamma times the lower-order probability.
    for n in range(2, order + 1):
        denom: defaultdict[tuple[int, ...], float] = defaultdict(float)
        mass: defaultdict[tuple[int, ...], float] = defaultdict(float)
        for g, c in adjusted[n - 1].items():
            denom[g[:-1]] += c
            mass[g[:-1]] += _discount(disc[n - 1], c)
        gamma = {h: mass[h] / denom[h] for h in denom}
        for g, c in adjusted[n - 1].items():
            h = g[:-1]
            probs[n - 1][g] = max(c - _discount(disc[n - 1], c), 0.0) / denom[h] + gamma[h] * probs[n - 2][g[1:]]
        backoffs[n - 2] = gamma

    ngrams = []
    for n in range(1, order + 1):
        grams = [(bos,)] + list(probs[0]) if n == 1 else list(probs[n - 1])
        logp = [NO_PROB_LOG10 if g == (bos,) else math.log10(probs[n - 1][g]) for g in grams]
        bow = [math.log10(backoffs[n - 1][g]) if g in backoffs[n - 1] else 0.0 for g in grams]
        ngrams.append((np.array(grams, dtype=np.int64).reshape(len(grams), n), np.array(logp), np.array(bow)))
    return NGramLM(vocab, ngrams, discounts=disc)


# ----------------------------------------------------------------------------- ARPA files


def write_arpa(lm: NGramLM, path: str | os.PathLike) -> None:
    """Write `lm` as an ARPA file (gzip-compressed if the name ends in .gz), atomically and reproducibly.

    Values are written with Python's shortest round-trip float repr, so loading the file gives
    bit-identical log-probabilities. Backoffs are written for every order below the highest.
    """
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as raw:
        # gzip without a file name or time stamp in its header: the same LM gives the same bytes
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) \
            if path.suffix == ".gz" else raw
        with stream, io.TextIOWrapper(stream, encoding="utf-8") as handle:
            handle.write("\n\\data\\\n")
            for k, count in enumerate(lm.counts, start=1):
                handle.write(f"ngram {k}={count}\n")
            for k in range(1, lm.order + 1):
                handle.write(f"\n\\{k}-grams:\n")
                ids, logp, bow = lm.ngrams(k)
                words = lm.vocab
                for lo in range(0, len(logp), 100_000):  # (n_k, k) ids, written in chunks
                    grams = [" ".join([words[i] for i in row]) for row in ids[lo:lo + 100_000].tolist()]
                    probs = logp[lo:lo + 100_000].tolist()
                    if k < lm.order:
                        backs = bow[lo:lo + 100_000].tolist()
                        handle.writelines([f"{p!r}\t{g}\t{b!r}\n" for p, g, b in zip(probs, grams, backs)])
                    else:
                        handle.writelines([f"{p!r}\t{g}\n" for p, g in zip(probs, grams)])
            handle.write("\n\\end\\\n")


def _open_text(path: Path) -> IO[str]:
    """Open plain or gzip text (detected by magic bytes, not the name)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8")


def _canonical(word: str) -> str:
    """<s>, </s>, <unk> in any letter case -> the canonical spelling; other words unchanged."""
    return _SPECIAL.get(word.lower(), word) if word.startswith("<") else word


def load_arpa(path: str | os.PathLike) -> NGramLM:
    """Read an ARPA n-gram file, plain or gzip-compressed.

    Anything before `\\data\\` is ignored; the backoff column is optional; <s>, </s> and <unk> are
    recognised in any letter case (LibriSpeech's files use upper-case words). Raises
    FileNotFoundError if the file is missing and ValueError naming file and line on malformed
    input (bad numbers, wrong field counts, counts that disagree with the header, n-grams with
    words missing from the 1-grams, a missing `\\end\\`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ARPA file not found")
    lineno = 0

    def fail(message: str) -> ValueError:
        return ValueError(f"{path}:{lineno}: {message}")

    expected: list[int] = []
    vocab: list[str] = []
    word_ids: dict[str, int] = {}
    orders: list[tuple[array, array, array]] = []  # per order: flat ids, log10 probs, log10 backoffs
    try:
        with _open_text(path) as handle:
            lines = iter(handle)
            # Header: skip to \data\, then "ngram k=count" lines.
            for raw in lines:
                lineno += 1
                if raw.strip() == "\\data\\":
                    break
            else:
                raise fail("no \\data\\ line: not an ARPA file")
            section = 0
            for raw in lines:
                lineno += 1
                line = raw.strip()
                if not line:
                    continue
                if line.startswith("ngram "):
                    try:
                        k_text, count_text = line[6:].split("=")
                        k, count = int(k_text), int(count_text)
                    except ValueError:
                        raise fail(f"bad count line {line!r} (expected 'ngram N=COUNT')") from None
                    if k != len(expected) + 1 or count < 0:
                        raise fail(f"bad count line {line!r} (orders must be listed 1, 2, ...)")
                    expected.append(count)
                    continue
                if line == "\\1-grams:":
                    section = 1
                    break
                raise fail(f"unexpected line {line!r} in the \\data\\ header")
            if not expected or section != 1:
                raise fail("missing 'ngram N=COUNT' header or \\1-grams: section")

            ended = False
            while section:
                k = section
                grams = array("q")  # (n_k * k,) word ids, flat: compact for files with millions of lines
                logps = array("d")
                bows = array("d")
                section = 0
                for raw in lines:
                    lineno += 1
                    line = raw.strip()
                    if not line:
                        continue
                    if line[0] == "\\":
                        if line == "\\end\\":
                            ended = True
                        elif line == f"\\{k + 1}-grams:" and k + 1 <= len(expected):
                            section = k + 1
                        else:
                            raise fail(f"unexpected section line {line!r} after the {k}-grams")
                        break
                    parts = line.split()
                    if len(parts) not in (k + 1, k + 2):
                        raise fail(f"expected 'log10prob {k} word(s) [backoff]', got {len(parts)} fields: {line!r}")
                    try:
                        logps.append(float(parts[0]))
                        bows.append(float(parts[k + 1]) if len(parts) == k + 2 else 0.0)
                    except ValueError:
                        raise fail(f"not a number in {line!r}") from None
                    if k == 1:
                        word = _canonical(parts[1])
                        if word in word_ids:
                            raise fail(f"duplicate 1-gram {word!r}")
                        word_ids[word] = len(vocab)
                        vocab.append(word)
                        grams.append(word_ids[word])
                    else:
                        try:
                            grams.extend([word_ids[_canonical(w)] for w in parts[1:k + 1]])
                        except KeyError as err:
                            raise fail(f"word {err.args[0]!r} is not in the 1-grams") from None
                if len(logps) != expected[k - 1]:
                    raise fail(f"header announces {expected[k - 1]} {k}-grams, found {len(logps)}")
                orders.append((grams, logps, bows))
                if not section and not ended:
                    lineno += 1
                    raise fail("unexpected end of file (no \\end\\)")
            if len(orders) != len(expected):
                raise fail(f"header announces {len(expected)} orders, found {len(orders)}")
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{path}: cannot read ARPA file ({type(err).__name__}: {err})") from None
    ngrams = [(np.frombuffer(g, dtype=np.int64).reshape(len(p), k), np.frombuffer(p), np.frombuffer(b))
              for k, (g, p, b) in enumerate(orders, start=1)]
    try:
        return NGramLM(vocab, ngrams)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# ----------------------------------------------------------------------------- `asr lm build`


def _read_sentences(text: Path) -> list[str]:
    """One normalised sentence per non-empty line of a plain or gzip text file, or the `text` column of
    a manifest (a TSV that starts with the manifest header)."""
    from asr.manifest import COLUMNS

    if not text.is_file():
        raise FileNotFoundError(f"{text}: text file not found")
    with _open_text(text) as handle:
        lines = iter(handle)
        first = next(lines, "")
        if first.rstrip("\r\n").split("\t") == list(COLUMNS):  # a manifest: its transcripts, not its columns
            column = COLUMNS.index("text")
            return [s for s in (normalize_text(line.rstrip("\r\n").split("\t")[column])
                                for line in lines if line.count("\t") >= column) if s]
        return [s for s in (normalize_text(line) for line in [first, *lines]) if s]


def cmd_lm_build(text: Path, order: int, out: Path) -> dict:
    """`asr lm build`: estimate a modified Kneser-Ney model from `text` and write it to `out` (ARPA).

    Returns a summary: sentences, word tokens, vocabulary size, n-gram counts per order, the
    discounts used, output path and seconds taken.
    """
    start = time.perf_counter()
    sentences = _read_sentences(Path(text))
    if not sentences:
        raise ValueError(f"{text}: no sentences (one per line expected)")
    lm = build_kneser_ney(sentences, order=order)
    write_arpa(lm, out)
    return {"text": str(text), "out": str(out), "order": order, "sentences": len(sentences),
            "words": sum(len(s.split()) for s in sentences), "vocab": len(lm.vocab),
            "ngrams": {str(k): c for k, c in enumerate(lm.counts, start=1)},
            "discounts": [list(d) for d in lm.discounts or []], "seconds": round(time.perf_counter() - start, 3)}
