"""Tests for CTC prefix beam search, shallow fusion and the n-gram LM (Kneser-Ney, ARPA)."""

from __future__ import annotations

import gzip
import itertools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.cli import main as cli_main
from asr.decoding.beam import BeamSearchDecoder
from asr.decoding.greedy import greedy_decode
from asr.decoding.lm import (
    EOS,
    build_kneser_ney,
    cmd_lm_build,
    load_arpa,
    modified_kn_discounts,
    write_arpa,
)
from asr.text import CharTokenizer

TOK = CharTokenizer()
NO_PRUNING = {"token_prune": 1.0, "blank_skip": None}


def random_log_probs(rng: np.random.Generator, frames: int, vocab: int, scale: float = 2.0) -> np.ndarray:
    """(T, V) float32 log-softmax of random logits."""
    logits = rng.normal(size=(frames, vocab)) * scale
    return torch.log_softmax(torch.from_numpy(logits), dim=-1).float().numpy()


def frames(*spec: str | dict[str, float], tok: CharTokenizer = TOK) -> np.ndarray:
    """(T, V) log-probs: a frame is a char ('-' blank, '_' space, 0.9 prob) or a {char: prob} dict;
    the rest of each frame's probability is spread evenly over the other labels."""
    vocab = tok.vocab_size
    out = np.zeros((len(spec), vocab))
    def label(c: str) -> int:
        return 0 if c == "-" else tok.space_id if c == "_" else tok.chars.index(c) + 1

    for t, item in enumerate(spec):
        dist = {item: 0.9} if isinstance(item, str) else item
        ids = {label(c): p for c, p in dist.items()}
        rest = (1.0 - sum(ids.values())) / (vocab - len(ids))
        out[t] = rest
        for i, p in ids.items():
            out[t, i] = p
    return np.log(out).astype(np.float32)


def spell(text: str) -> list[str]:
    """One frame per character of `text` (' ' -> '_'), with a blank after every character."""
    return [x for c in text for x in ("_" if c == " " else c, "-")]


# ----------------------------------------------------------------------------- search without an LM


def brute_force_labellings(log_probs: np.ndarray, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(labelling) for every labelling reachable from a (T, V) emission matrix, by enumerating
    all V^T frame paths, collapsing each (merge repeats, drop blanks) and summing probabilities."""
    probs = np.exp(log_probs.astype(np.float64))
    total: dict[tuple[int, ...], float] = defaultdict(float)
    n_frames, vocab = probs.shape
    for path in itertools.product(range(vocab), repeat=n_frames):
        labels, prev = [], None
        for x in path:
            if x != prev and x != blank:
                labels.append(x)
            prev = x
        total[tuple(labels)] += float(np.prod(probs[np.arange(n_frames), path]))
    return {k: math.log(v) for k, v in total.items()}


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_finds_most_probable_labelling(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chars = ("A", "B") if seed % 2 else ("A",)  # 3 or 2 symbols including the blank
    tok = CharTokenizer(chars=chars)
    lp = random_log_probs(rng, frames=int(rng.integers(3, 7)), vocab=tok.vocab_size)  # (T<=6, V)
    truth = brute_force_labellings(lp)
    best = max(truth, key=truth.get)
    decoder = BeamSearchDecoder(tok, beam_size=256, **NO_PRUNING)
    [hyps] = decoder.decode_nbest(torch.from_numpy(lp)[None])
    assert hyps[0].tokens == list(best)
    assert hyps[0].score == pytest.approx(truth[best], abs=1e-5)
    # The wide beam holds every labelling, each scored with its exact probability.
    assert {tuple(h.tokens): h.score for h in hyps} == pytest.approx(truth, abs=1e-5)


def reference_prefix_search(lp: np.ndarray, beam: int) -> dict[tuple[int, ...], float]:
    """Plain-Python CTC prefix beam search (blank 0, no pruning): final prefixes -> log score."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}  # prefix -> (pb, pnb)
    for t in range(lp.shape[0]):
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-np.inf, -np.inf])
        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            nxt[prefix][0] = np.logaddexp(nxt[prefix][0], total + lp[t, 0])
            if prefix:
                nxt[prefix][1] = np.logaddexp(nxt[prefix][1], pnb + lp[t, prefix[-1]])
            for c in range(1, lp.shape[1]):
                src = pb if prefix and c == prefix[-1] else total
                nxt[prefix + (c,)][1] = np.logaddexp(nxt[prefix + (c,)][1], src + lp[t, c])
        best = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam]
        beams = {p: (s[0], s[1]) for p, s in best}
    return {p: float(np.logaddexp(*s)) for p, s in beams.items()}


@pytest.mark.parametrize("seed", range(4))
def test_narrow_beam_matches_reference_implementation(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    tok = CharTokenizer(chars=("A", "B", "C", "D"))
    lp = random_log_probs(rng, frames=20, vocab=tok.vocab_size, scale=1.5)  # (20, 5)
    expected = reference_prefix_search(lp.astype(np.float64), beam=4)
    [hyps] = BeamSearchDecoder(tok, beam_size=4, **NO_PRUNING).decode_nbest(lp[None])
    assert {tuple(h.tokens): h.score for h in hyps} == pytest.approx(expected, abs=1e-6)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    lp = torch.from_numpy(random_log_probs(rng, frames=50, vocab=TOK.vocab_size, scale=3.0))[None]  # (1, 50, 29)
    greedy_ids = greedy_decode(lp)[0]
    for options in ({}, NO_PRUNING):  # default pruning never drops the argmax
        decoder = BeamSearchDecoder(TOK, beam_size=1, **options)  # width 1 merges by max by default
        [[hyp]] = decoder.decode_nbest(lp, n=1)
        assert hyp.tokens == greedy_ids
        assert decoder.decode(lp) == [TOK.decode(greedy_ids)]


def test_sum_merge_beats_best_path_when_alignments_add_up() -> None:
    """Best path says "AB" (0.9 * 0.4); "A" has 0.9 * 0.3 (A-) + 0.9 * 0.3 (AA) + ... more in total."""
    tok = CharTokenizer(chars=("A", "B"))
    lp = np.log(np.array([[0.05, 0.9, 0.05], [0.3, 0.3, 0.4]])).astype(np.float32)  # (2, 3)
    truth = brute_force_labellings(lp)
    assert max(truth, key=truth.get) == (1,)
    assert tok.decode(greedy_decode(torch.from_numpy(lp)[None])[0]) == "AB"
    assert BeamSearchDecoder(tok, beam_size=1, **NO_PRUNING).decode(lp[None]) == ["AB"]  # greedy
    assert BeamSearchDecoder(tok, beam_size=1, merge="sum", **NO_PRUNING).decode(lp[None]) == ["A"]


def test_pruning_keeps_clear_answers_and_batch_lengths() -> None:
    long = frames(*spell("HELLO WORLD"))  # (22, V)
    short = frames(*spell("NO"))  # (4, V)
    batch = np.full((2, len(long), TOK.vocab_size), np.log(1 / TOK.vocab_size), dtype=np.float32)
    batch[0], batch[1, : len(short)] = long, short
    decoder = BeamSearchDecoder(TOK, beam_size=8, token_prune=0.99, token_topk=5, blank_skip=0.95)
    assert decoder.decode(torch.from_numpy(batch), torch.tensor([len(long), len(short)])) == ["HELLO WORLD", "NO"]
    assert decoder.decode(torch.from_numpy(batch[:0]), torch.tensor([], dtype=torch.long)) == []
    assert decoder.decode(batch[:1, :0]) == [""]


# ----------------------------------------------------------------------------- the n-gram LM

HAND = ["A B", "A C", "B"]
CORPUS = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the cat", "I saw the dog on a mat"]


def test_bigram_probability_by_hand() -> None:
    """Order 2, D = (0.5, 1, 1.5). Bigrams: <s>A 2, AB 1, AC 1, B</s> 2, C</s> 1, <s>B 1.
    Continuation counts: A 1 (<s>), B 2 (A, <s>), C 1 (A), </s> 2 (B, C), <unk> 0; total 6.
    gamma() = (0.5*2 + 1*2) / 6 = 1/2, shared uniformly over |V| = 5 (A B C </s> <unk>):
    P(B) = (2 - 1)/6 + 0.1 = 4/15.  History A: c = 2, two singletons, gamma(A) = 0.5*2/2 = 1/2:
    P(B | A) = (1 - 0.5)/2 + 1/2 * 4/15 = 23/60."""
    lm = build_kneser_ney(HAND, order=2, discounts=(0.5, 1.0, 1.5))
    assert 10 ** lm.log10_prob("B", ("A",)) == pytest.approx(23 / 60, abs=1e-12)
    assert 10 ** lm.log10_prob("B") == pytest.approx(4 / 15, abs=1e-12)
    assert 10 ** lm.log10_prob("<unk>") == pytest.approx(0.1, abs=1e-12)
    assert 10 ** lm.log10_prob("ZEBRA", ("A",)) == pytest.approx(0.5 * 0.1, abs=1e-12)  # OOV -> <unk>, backoff
    assert lm.log10_prob("<s>") == -99.0


def test_discount_estimates() -> None:
    # n1..n4 = 10, 5, 3, 2: Y = 10/20; D1 = 1 - 2*.5*5/10; D2 = 2 - 3*.5*3/5; D3+ = 3 - 4*.5*2/3.
    assert modified_kn_discounts([10, 5, 3, 2]) == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    assert modified_kn_discounts([10, 5, 3, 0]) is None


def contexts(lm) -> list[tuple[str, ...]]:
    """Every stored n-gram below the top order that can be a history, plus the empty and an unseen one."""
    out: list[tuple[str, ...]] = [(), ("NEVER", "SEEN")]
    for k in range(1, lm.order):
        ids = lm.ngrams(k)[0]
        out += [tuple(lm.vocab[i] for i in row) for row in ids.tolist() if lm.vocab[row[-1]] != EOS]
    return out


@pytest.mark.parametrize("discounts", [(0.5, 1.0), [0.5, (0.4, 0.9, 1.3)], [(0.4, 0.9, 1.3), (0.4, 0.9)]])
def test_malformed_discounts_are_a_value_error(discounts) -> None:
    """Two numbers, or numbers mixed with triples, used to fail with TypeError ("float has no len()")."""
    with pytest.raises(ValueError, match="discounts must be"):
        build_kneser_ney(HAND, order=2, discounts=discounts)


def test_discounts_per_order_are_used() -> None:
    one = build_kneser_ney(CORPUS, order=2, discounts=(0.4, 0.9, 1.3))
    per_order = build_kneser_ney(CORPUS, order=2, discounts=[(0.4, 0.9, 1.3), (0.4, 0.9, 1.3)])
    assert per_order.discounts == one.discounts == [(0.4, 0.9, 1.3)] * 2


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("discounts", [None, (0.4, 0.9, 1.3)])
def test_kneser_ney_distributions_sum_to_one(order: int, discounts) -> None:
    lm = build_kneser_ney(CORPUS, order=order, discounts=discounts)
    predictable = [w for w in lm.vocab if w != "<s>"]
    for context in contexts(lm):
        total = sum(10 ** lm.log10_prob(w, context) for w in predictable)
        assert total == pytest.approx(1.0, abs=1e-6), context


def test_state_api_matches_log10_prob_and_score_sentence() -> None:
    lm = build_kneser_ney(CORPUS, order=3)
    words = "THE CAT SAT ON A DOG".split()
    state, total, history = lm.start_state(), 0.0, ["<s>"]
    for word in [*words, EOS]:
        state, ln_p = lm.advance(state, lm.word_id(word))
        assert ln_p == pytest.approx(math.log(10) * lm.log10_prob(word, tuple(history)), abs=1e-12)
        total += ln_p
        history.append(word)
    assert lm.score_sentence(words) == pytest.approx(total, abs=1e-12)
    assert lm.score_sentence("THE CAT SAT") > lm.score_sentence("SAT CAT THE")


def all_log10(lm) -> list[float]:
    return [lm.log10_prob(w, c) for c in contexts(lm) for w in lm.vocab]


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip(tmp_path: Path, name: str) -> None:
    lm = build_kneser_ney(CORPUS, order=3)
    path = tmp_path / name
    write_arpa(lm, path)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    loaded = load_arpa(path)
    assert loaded.vocab == lm.vocab and loaded.counts == lm.counts and loaded.order == 3
    assert all_log10(loaded) == all_log10(lm)  # bit-identical
    again = tmp_path / "again" / name
    write_arpa(lm, again)
    assert again.read_bytes() == path.read_bytes()  # no file name or time stamp in a gzip header


LIBRISPEECH_STYLE = """\
Built by some toolkit; text before \\data\\ is ignored.

\\data\\
ngram 1=5
ngram 2=4
ngram 3=3

\\1-grams:
-1.0\t<UNK>\t0
-99\t<s>\t-0.3
-0.7\t</s>
-0.5\tHELLO\t-0.2
-0.6 WORLD -0.25

\\2-grams:
-0.3\t<s> HELLO\t-0.1
-0.4\tHELLO WORLD\t-0.15
-0.2\tWORLD </s>
-0.9\tHELLO </s>

\\3-grams:
-0.05\t<s> HELLO WORLD
-0.02\tHELLO WORLD </s>
-0.07\tWORLD HELLO WORLD

\\end\\
"""


def test_load_librispeech_style_arpa(tmp_path: Path) -> None:
    """Upper-case words, <UNK>, missing backoff columns, and a 3-gram whose 2-gram prefix
    (WORLD HELLO) was pruned away, as SRILM-pruned files have."""
    path = tmp_path / "3-gram.arpa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(LIBRISPEECH_STYLE)
    lm = load_arpa(path)
    assert lm.order == 3 and lm.word_id("<unk>") == lm.word_id("FOO") == lm.vocab.index("<unk>")
    cases = {
        ("WORLD", ("<s>", "HELLO")): -0.05,
        ("HELLO", ("<s>",)): -0.3,
        ("WORLD", ("<s>",)): -0.3 - 0.6,  # bow(<s>) + P(WORLD)
        ("HELLO", ("HELLO", "WORLD")): -0.15 - 0.25 - 0.5,  # bow(HELLO WORLD) + bow(WORLD) + P(HELLO)
        ("HELLO", ("WORLD",)): -0.25 - 0.5,  # the missing prefix still means what backoff says
        ("WORLD", ("WORLD", "HELLO")): -0.07,
        ("FOO", ()): -1.0,
    }
    for (word, context), expected in cases.items():
        assert lm.log10_prob(word, context) == pytest.approx(expected, abs=1e-12), (word, context)
    assert lm.score_sentence("HELLO WORLD") == pytest.approx(math.log(10) * (-0.3 - 0.05 - 0.02))


@pytest.mark.parametrize("broken, line", [
    (("-0.5\tHELLO\t-0.2", "oops\tHELLO\t-0.2"), 12),  # not a number
    (("-0.4\tHELLO WORLD\t-0.15", "-0.4\tHELLO WORLD -0.15 7"), 17),  # too many fields
    (("-0.2\tWORLD </s>", "-0.2\tWORLD MARS"), 18),  # word missing from the 1-grams
    (("ngram 2=4", "ngram 2=5"), 21),  # fewer 2-grams than announced: reported where the section ends
    (("\\end\\\n", ""), 26),  # truncated file
])
def test_malformed_arpa_names_file_and_line(tmp_path: Path, broken: tuple[str, str], line: int) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text(LIBRISPEECH_STYLE.replace(*broken))
    with pytest.raises(ValueError, match=f"bad.arpa:{line}: "):
        load_arpa(path)


def test_not_an_arpa_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="notes.txt:1: no \\\\data\\\\"):
        load_arpa(path)
    with pytest.raises(FileNotFoundError):
        load_arpa(tmp_path / "missing.arpa")


def test_lm_build_command(tmp_path: Path, capsys) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(CORPUS) + "\n\n")
    summary = cmd_lm_build(text, 3, tmp_path / "out" / "lm.arpa")
    assert summary["sentences"] == 5 and summary["vocab"] == 13 and summary["ngrams"]["1"] == 13
    assert load_arpa(tmp_path / "out" / "lm.arpa").counts == [summary["ngrams"][k] for k in "123"]
    assert cli_main(["lm", "build", "--order", "2", "--text", str(text), "-o", str(tmp_path / "lm2.arpa")]) == 0
    assert '"order": 2' in capsys.readouterr().out
    assert cli_main(["lm", "build", "--text", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "x.arpa")]) == 1
    err = capsys.readouterr().err
    assert "nope.txt" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- shallow fusion and lexicon

FUSION_CORPUS = ["THE CAT SAT", "A CAT", "THE CAT RAN", "I DRINK BEER", "I SEE A BEAR", "THE BEAR RAN", "I DRINK"]
CAT_OR_KAT = frames({"K": 0.5, "C": 0.4}, "-", "A", "-", "T", "-")  # acoustically "KAT"


def test_lm_picks_the_word_it_knows() -> None:
    lm = build_kneser_ney(FUSION_CORPUS, order=2)
    assert BeamSearchDecoder(TOK, beam_size=8).decode(CAT_OR_KAT[None]) == ["KAT"]
    with_lm = BeamSearchDecoder(TOK, lm=lm, beam_size=8)
    [hyps] = with_lm.decode_nbest(CAT_OR_KAT[None])
    assert hyps[0].text == "CAT"
    kat = next(h for h in hyps if h.text == "KAT")  # open vocabulary: the OOV word is still there
    assert kat.acoustic > hyps[0].acoustic and kat.lm < hyps[0].lm
    assert kat.lm == pytest.approx(0.5 * (lm.score_sentence(["<unk>"])) + 1.0)
    # A fixed OOV penalty replaces alpha * ln P(<unk>).
    [hyps] = BeamSearchDecoder(TOK, lm=lm, beam_size=8, oov_penalty=0.0, alpha=0.5, beta=1.0).decode_nbest(
        CAT_OR_KAT[None])
    kat = next(h for h in hyps if h.text == "KAT")
    assert kat.lm == pytest.approx(1.0 + 0.5 * lm.advance(lm.advance(lm.start_state(), lm.unk_id)[0], lm.eos_id)[1])


def test_lm_context_decides_between_vocabulary_words() -> None:
    # "I DRINK BE?R" with A (BEAR) slightly ahead of E (BEER) on the third letter.
    spec = spell("I DRINK BE") + [{"A": 0.5, "E": 0.4}, "-", "R", "-"]
    lp = frames(*spec)[None]
    assert BeamSearchDecoder(TOK, beam_size=8).decode(lp) == ["I DRINK BEAR"]
    lm = build_kneser_ney(FUSION_CORPUS, order=3)
    assert BeamSearchDecoder(TOK, lm=lm, beam_size=8).decode(lp) == ["I DRINK BEER"]
    # The same letters after "I SEE A" go the other way.
    lp2 = frames(*(spell("I SEE A BE") + [{"E": 0.5, "A": 0.4}, "-", "R", "-"]))[None]
    assert BeamSearchDecoder(TOK, beam_size=8).decode(lp2) == ["I SEE A BEER"]
    assert BeamSearchDecoder(TOK, lm=lm, beam_size=8).decode(lp2) == ["I SEE A BEAR"]


def test_lexicon_mode_only_outputs_vocabulary_words() -> None:
    lm = build_kneser_ney(FUSION_CORPUS, order=2)
    vocab = set(lm.vocab)
    assert BeamSearchDecoder(TOK, lexicon=["CAT", "THE"], beam_size=8).decode(CAT_OR_KAT[None]) == ["CAT"]
    decoders = [BeamSearchDecoder(TOK, lm=lm, lexicon=True, beam_size=8),
                BeamSearchDecoder(TOK, lm=lm, lexicon=True, beam_size=4, alpha=0.0, beta=0.0),
                BeamSearchDecoder(TOK, lexicon=sorted(vocab - {"<s>", "</s>", "<unk>"}), beam_size=8)]
    rng = np.random.default_rng(7)
    lengths = torch.tensor([40, 25, 12, 3])
    batch = torch.from_numpy(np.stack([random_log_probs(rng, 40, TOK.vocab_size, scale=1.5) for _ in range(4)]))
    for decoder in decoders:
        texts = decoder.decode(batch, lengths)
        assert len(texts) == 4
        for text in texts:
            assert set(text.split()) <= vocab, text
    # Open vocabulary on the same emissions does produce non-words.
    open_texts = BeamSearchDecoder(TOK, lm=lm, beam_size=8).decode(batch, lengths)
    assert any(not set(t.split()) <= vocab for t in open_texts)


def test_decoder_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="lexicon=True"):
        BeamSearchDecoder(TOK, lexicon=True)
    with pytest.raises(ValueError, match="merge"):
        BeamSearchDecoder(TOK, merge="mean")
    with pytest.raises(ValueError, match=r"\(T, 29\)"):
        BeamSearchDecoder(TOK).search(np.zeros((3, 5), dtype=np.float32))


def test_batch_threads_change_nothing_but_speed() -> None:
    """Utterances of a batch are searched in parallel threads; the n-best lists are the same as one by one."""
    lm = build_kneser_ney(FUSION_CORPUS, order=2)
    rng = np.random.default_rng(3)
    lengths = [12, 30, 7, 25, 18, 30]
    logits = rng.normal(size=(len(lengths), 30, TOK.vocab_size)) * 3  # (B, T, V)
    batch = torch.from_numpy(logits).log_softmax(-1).float()
    results = {}
    for threads in (1, 3):
        decoder = BeamSearchDecoder(TOK, lm=lm, beam_size=8, alpha=0.5, beta=0.5, num_threads=threads)
        assert decoder.threads() == threads
        results[threads] = decoder.decode_nbest(batch, torch.tensor(lengths), n=4)
    for one, many in zip(results[1], results[3]):
        assert [(h.text, h.score) for h in one] == [(h.text, h.score) for h in many]
    assert len({hyps[0].text for hyps in results[1]}) > 1  # distinct utterances, decoded as such
    assert BeamSearchDecoder(TOK).threads() == torch.get_num_threads()
    with pytest.raises(ValueError, match="num_threads"):
        BeamSearchDecoder(TOK, num_threads=0)
