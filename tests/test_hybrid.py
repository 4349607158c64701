"""Hybrid HMM/Viterbi mode: topology, alignments, Viterbi decoder against brute force, end to end."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from asr.decoding.lm import build_kneser_ney
from asr.hybrid.alignments import ctc_path_to_states, estimate_priors, estimate_transitions, forced_align
from asr.hybrid.topology import Topology
from asr.hybrid.viterbi import ViterbiDecoder, build_graph
from asr.text import CharTokenizer

LEXICON = ["A", "AB", "BA", "B"]


def small_topology(kind: str, states: int = 1, silence: bool = True, rng: np.random.Generator | None = None
                   ) -> Topology:
    """A topology over the characters A and B only, with random transition scores."""
    topo = Topology(kind=kind, states_per_char=states, silence=silence, chars=("A", "B"),
                    char_ids=(3, 4) if kind == "ctc" else ())
    if rng is not None:
        loop = rng.uniform(0.1, 0.9, topo.num_states)
        topo = topo.with_transitions(np.log(loop), np.log1p(-loop))
    return topo


def brute_force(topo: Topology, em: np.ndarray, lm, lm_weight: float, bonus: float) -> tuple[float, list[str]]:
    """Best total score over every word sequence and every state path, by plain enumeration."""
    n_frames = em.shape[0]
    loops, exits = topo.loops(), topo.exits()
    best = (-math.inf, [])
    for n_words in range(0, n_frames + 1):
        for words in itertools.product(LEXICON, repeat=n_words):
            if sum(len(w) for w in words) > n_frames:
                continue
            states, skippable = topo.utterance_states(" ".join(words))
            if states.size == 0:
                continue
            lm_score = 0.0
            if lm is not None:
                lm_score = lm_weight * lm.score_sentence(list(words)) + bonus * len(words)
            else:
                lm_score = bonus * len(words)

            def paths(pos: int, left: int):
                """Durations (one per chain position, 0 = skipped) that fill `left` frames."""
                if pos == len(states):
                    if left == 0:
                        yield ()
                    return
                low = 0 if skippable[pos] else 1
                for d in range(low, left + 1):
                    for rest in paths(pos + 1, left - d):
                        yield (d, *rest)

            for durations in paths(0, n_frames):
                score, t, visited = 0.0, 0, []
                for pos, d in enumerate(durations):
                    if d:
                        s = states[pos]
                        score += em[t:t + d, topo.column[s]].sum() + (d - 1) * loops[s]
                        visited.append(s)
                        t += d
                score += sum(exits[s] for s in visited[:-1])
                if score + lm_score > best[0]:
                    best = (score + lm_score, list(words))
    return best


@pytest.mark.parametrize("kind,states,silence,use_lm", [
    ("hmm", 1, True, True), ("hmm", 2, True, False), ("hmm", 1, False, True), ("ctc", 1, True, True)])
def test_decoder_matches_brute_force(kind, states, silence, use_lm):
    rng = np.random.default_rng(7)
    topo = small_topology(kind, states, silence, rng)
    lm = build_kneser_ney(["A AB", "AB A A", "B", "BA B"], order=2) if use_lm else None
    graph = build_graph(topo, LEXICON)
    decoder = ViterbiDecoder(graph, lm=lm, lm_weight=0.7, word_bonus=0.3, beam=1e9, max_active=10**6)
    for trial in range(4):
        em = rng.normal(0, 2, size=(5, topo.num_columns))
        result = decoder.decode(em)
        expected, words = brute_force(topo, em, lm, 0.7, 0.3)
        assert result.complete
        assert result.score == pytest.approx(expected, abs=1e-9), (trial, result.words, words)


def sample_utterance(topo: Topology, words: list[str], rng: np.random.Generator, silence_prob: float = 0.5
                     ) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Frame state path of `words` under the topology's loop probabilities, plus true (word, start, end)."""
    loops = np.exp(topo.loops())
    path: list[int] = []
    truth = []

    def visit(state: int) -> None:
        path.append(state)
        while rng.random() < loops[state] and len(path) < 10_000:
            path.append(state)

    for word in words:
        if topo.silence and rng.random() < silence_prob:
            visit(topo.unit_states[0][0])
        start = len(path)
        for unit in topo.spell(word):
            for state in topo.unit_states[unit]:
                visit(state)
        truth.append((word, start, len(path)))
    if topo.silence and rng.random() < silence_prob:
        visit(topo.unit_states[0][0])
    return np.asarray(path), truth


def test_decoding_a_sampled_hmm_path_recovers_it():
    rng = np.random.default_rng(3)
    topo = Topology(kind="hmm", states_per_char=2, silence=True, chars=("A", "B", "C"))
    loop = rng.uniform(0.3, 0.8, topo.num_states)
    topo = topo.with_transitions(np.log(loop), np.log1p(-loop))
    lexicon = ["AB", "CA", "BCA", "C"]  # no word sequence spells another (no ties without silence)
    decoder = ViterbiDecoder(build_graph(topo, lexicon), lm=None, beam=20.0, max_active=500)
    for _ in range(5):
        words = list(rng.choice(lexicon, size=4))
        path, truth = sample_utterance(topo, words, rng)
        logits = 4.0 * np.eye(topo.num_columns)[path] + rng.normal(0, 1, (len(path), topo.num_columns))
        em = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # (T, S) log-posteriors
        result = decoder.decode(em)
        assert result.complete
        assert list(zip(result.words, result.starts, result.ends)) == truth


def test_pruned_search_agrees_with_exhaustive_on_real_sized_beam():
    rng = np.random.default_rng(5)
    topo = small_topology("hmm", 1, True, rng)
    lm = build_kneser_ney(["A AB", "AB A A", "B", "BA B"], order=3)
    graph = build_graph(topo, LEXICON)
    wide = ViterbiDecoder(graph, lm=lm, lm_weight=0.5, beam=1e9, max_active=10**6)
    narrow = ViterbiDecoder(graph, lm=lm, lm_weight=0.5, beam=12.0, max_active=50)
    em = np.log(rng.dirichlet(np.ones(topo.num_columns) * 0.3, size=60))
    assert narrow.decode(em).words == wide.decode(em).words


def test_ctc_path_to_states_splits_blank_gaps_at_midpoints():
    tokenizer = CharTokenizer()
    topo = Topology(kind="hmm", states_per_char=1, silence=True)
    a, b, c, space = tokenizer.encode("A")[0], tokenizer.encode("B")[0], tokenizer.encode("C")[0], tokenizer.space_id
    path = np.array([0, 0, a, 0, 0, 0, b, b, 0, space, 0, c, 0, 0])
    states = ctc_path_to_states(path, tokenizer, topo)
    sa, sb, sc = (topo.unit_states[topo.unit_of_char[ch]][0] for ch in "ABC")
    sil = topo.unit_states[0][0]
    assert states.tolist() == [sil, sil, sa, sa, sb, sb, sb, sb, sil, sil, sc, sc, sil, sil]
    three = Topology(kind="hmm", states_per_char=3, silence=True)
    s3 = ctc_path_to_states(path, tokenizer, three)
    first_b = three.unit_states[three.unit_of_char["B"]]
    assert s3[4:8].tolist() == [first_b[0], first_b[0], first_b[1], first_b[2]]  # floor(offset * 3 / 4)


def test_forced_align_and_statistics():
    topo = Topology(kind="hmm", states_per_char=1, silence=True)
    text = "AB C"
    want = [0, 0, *[topo.unit_states[topo.unit_of_char["A"]][0]] * 3, *[topo.unit_states[topo.unit_of_char["B"]][0]] * 2,
            *[topo.unit_states[topo.unit_of_char["C"]][0]] * 4, 0]
    em = np.full((len(want), topo.num_columns), -8.0)
    em[np.arange(len(want)), want] = 0.0
    states, score = forced_align(em, text, topo)
    assert states.tolist() == want
    with pytest.raises(ValueError):
        forced_align(em[:2], text, topo)
    priors = estimate_priors([states], topo.num_states)
    assert priors.sum() == pytest.approx(1.0) and priors[0] > priors[5]
    loop, exit_ = estimate_transitions([states], topo.num_states)
    assert np.allclose(np.exp(loop) + np.exp(exit_), 1.0)
    a = topo.unit_states[topo.unit_of_char["A"]][0]
    assert np.exp(loop[a]) == pytest.approx((3 - 1 + 1) / (3 + 2))


# ------------------------------------------------------------------ end to end on real clips

REPO = Path(__file__).resolve().parents[1]
MBLW = REPO / "tests/data/an4_mblw.tsv"
ASSETS = REPO / "asr/pretrained/hybrid.npz"
needs_bundle = pytest.mark.skipif(not (ASSETS.is_file() and (REPO / "asr/pretrained/model.pt").is_file()),
                                  reason="bundled model or hybrid assets missing (recipes/default/run.sh stage 8)")


# 19 words of a training speaker. The state head reads them with 3 errors ("EIGHT OH" → "EIGHTH",
# "R O B" → "R B"): it is the weaker emission source of the bundled assets (13.37 % vs 10.36 % WER on the
# AN4 dev speakers, RESULTS.md); a broken decoder (priors, lexicon, LM) gets most words wrong.
@needs_bundle
@pytest.mark.parametrize("emissions, max_errors", [("trained", 3), ("ctc", 2)])
def test_decode_real_clips_end_to_end(emissions, max_errors, tmp_path, capsys):
    import json

    from asr.cli import main

    assert main(["decode", "--decoder", "hybrid", "--hybrid-emissions", emissions, "--manifest", str(MBLW),
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "wer.json").read_text())
    assert summary["utterances"] == 5 and summary["failed"] == 0
    assert summary["word_counts"]["errors"] <= max_errors, capsys.readouterr().out


@needs_bundle
def test_transcribe_jsonl_has_timed_words(capsys):
    import json

    from asr.cli import main

    clip = REPO / "tests/data/an4/an4-mblw-b.flac"  # "ENTER SEVENTY TWO"
    assert main(["transcribe", "--decoder", "hybrid", "--format", "jsonl", "--device", "cpu", str(clip)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == "ENTER SEVENTY TWO"
    times = [(w["start"], w["end"]) for w in row["words"]]
    assert all(0 <= s < e <= row["duration"] for s, e in times)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(times, times[1:]))
    assert all(0 < w["conf"] <= 1 for w in row["words"]), row["words"]


@needs_bundle
def test_word_times_lie_inside_the_viterbi_boundaries_and_agree_with_ctc_alignment():
    """decode_words reports words inside the Viterbi path's own word frames, starting and ending
    within 0.1 s of where a CTC forced alignment of the whole text puts them."""
    from asr.audio import load_audio
    from asr.decoding.align import align_words
    from argparse import Namespace

    from asr.hybrid.decode import build_hybrid_decoder
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_pretrained(device="cpu")
    decoder = build_hybrid_decoder(Namespace(lm=None), transcriber)  # the CLI's defaults: bundled LM, tuned scales
    log_probs, lengths = transcriber.log_probs([load_audio(REPO / "tests/data/an4/an4-mblw-b.flac")])
    [result] = decoder.decode_results(log_probs, lengths)
    [(text, words)] = decoder.decode_words(log_probs, lengths, transcriber.tokenizer, transcriber.frame_shift_s)
    shift = transcriber.frame_shift_s
    assert text == "ENTER SEVENTY TWO" == " ".join(w.word for w in words)
    for word, start, end in zip(words, result.starts, result.ends):
        assert start * shift - 1e-9 <= word.start < word.end <= end * shift + 1e-9, (word, start, end)
        assert 0 < word.conf <= 1
    ctc = align_words(log_probs[0, : lengths[0]], text, transcriber.tokenizer, shift)
    for ours, ref in zip(words, ctc):
        assert abs(ours.start - ref.start) <= 0.1 and abs(ours.end - ref.end) <= 0.1, (ours, ref)


@needs_bundle
def test_a_batch_decodes_the_same_in_parallel_threads(monkeypatch):
    """The utterances of a batch are decoded in threads (torch's thread count); each result is what
    decoding it alone gives."""
    from argparse import Namespace

    import torch

    from asr.audio import load_audio
    from asr.hybrid.decode import build_hybrid_decoder
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_pretrained(device="cpu")
    decoder = build_hybrid_decoder(Namespace(lm=None), transcriber)
    clips = sorted((REPO / "tests/data/an4").glob("*.flac"))
    log_probs, lengths = transcriber.log_probs([load_audio(p) for p in clips])  # padded (B, T', V)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    together = decoder.decode_results(log_probs, lengths)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    alone = [decoder.decode_results(log_probs[b:b + 1, : lengths[b]], lengths[b:b + 1])[0] for b in range(len(clips))]
    assert [(r.words, r.starts, r.ends, r.score) for r in together] == [(r.words, r.starts, r.ends, r.score) for r in alone]
    assert len({tuple(r.words) for r in together}) == len(clips)


@needs_bundle
def test_head_from_another_encoder_is_refused(tmp_path):
    import argparse

    from asr.cli import UserError
    from asr.hybrid.decode import build_hybrid_decoder
    from asr.hybrid.model import HybridAssets
    from asr.transcribe import Transcriber

    assets = HybridAssets.load(ASSETS)
    assets.fingerprint = "0" * 16
    other = tmp_path / "other.npz"
    assets.save(other)
    args = argparse.Namespace(hybrid_model=str(other), hybrid_emissions="trained", lm="none", lexicon=None,
                              alpha=None, beta=None, acoustic_scale=None, prior_scale=None, viterbi_beam=None,
                              max_active=None)
    with pytest.raises(UserError, match="another encoder"):
        build_hybrid_decoder(args, Transcriber.from_pretrained(device="cpu"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    from asr.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="broken.npz"):
        HybridAssets.load(tmp_path / "broken.npz")


@pytest.mark.parametrize("realign", [-1, "1"])
def test_train_hybrid_refuses_a_bad_realign_count_before_any_work(realign, tmp_path, monkeypatch):
    """realign: -1 used to encode and align the whole corpus, then fail with an AttributeError (no head trained)."""
    import asr.hybrid.train
    from asr.hybrid.train import HybridTrainConfig, train_hybrid
    from asr.train import TrainingDataError

    monkeypatch.setattr(asr.hybrid.train, "load_model", lambda path: pytest.fail("loaded the model"))
    with pytest.raises(TrainingDataError, match="realign must be"):
        train_hybrid(HybridTrainConfig(realign=realign), str(tmp_path))


@needs_bundle
def test_train_hybrid_from_yaml_on_real_clips(tmp_path):
    from asr.cli import main
    from asr.hybrid.model import HybridAssets

    config = tmp_path / "hybrid.yaml"
    config.write_text(f"""task: hybrid
out_dir: {tmp_path / 'out'}
init_from: {REPO / 'asr/pretrained/model.pt'}
data:
  train: ["{MBLW}"]
topology: {{states_per_char: 2, silence: true}}
head: {{hidden: 32}}
optim: {{epochs: 2, batch_frames: 64}}
realign: 1
""")
    assert main(["train", "--config", str(config)]) == 0
    assets = HybridAssets.load(tmp_path / "out/hybrid.npz")
    assert assets.topology.num_states == 1 + 27 * 2
    assert assets.priors.shape == (assets.topology.num_states,) and assets.priors.sum() == pytest.approx(1.0)
    assert set(assets.lexicon) == {"X", "I", "SIXTY", "ONE", "Z", "EIGHT", "OH", "TWO", "ENTER", "SEVENTY", "R", "O",
                                   "B", "E", "T"}
    assert np.all(assets.topology.loops() < 0)


@needs_bundle
def test_default_emissions_follow_the_tuning_record():
    """Without --hybrid-emissions the decoder uses the source that tuned to the lower WER, and "ctc"
    when nothing was tuned or when the state head belongs to another encoder."""
    from asr.hybrid.decode import tuned_emissions
    from asr.hybrid.model import HybridAssets
    from asr.transcribe import Transcriber

    model = Transcriber.from_pretrained(device="cpu").model
    assets = HybridAssets.load(ASSETS)
    for trained_wer, ctc_wer, expected in [(10.0, 12.0, "trained"), (12.0, 10.0, "ctc"), (10.0, 10.0, "ctc")]:
        assets.decode["trained"] = {"tuned": {"best": {"wer": trained_wer}}}
        assets.decode["ctc"] = {"tuned": {"best": {"wer": ctc_wer}}}
        assert tuned_emissions(assets, model) == expected
    assets.decode["trained"]["tuned"]["best"]["wer"] = 1.0
    assets.fingerprint = "0" * 16  # a head trained on another encoder is never the default
    assert tuned_emissions(assets, model) == "ctc"
    assets.decode = {}
    assert tuned_emissions(assets, model) == "ctc"


@needs_bundle
def test_tuning_scores_what_decoding_with_the_chosen_scales_gives(tmp_path, monkeypatch):
    """`python -m asr.hybrid.tune` ranks points by the WER `asr decode --decoder hybrid` then gets,
    also when files are cut into pieces (here pieces of 1 s, some overlapping a neighbour)."""
    import functools
    import json

    import asr.transcribe
    from asr.cli import main
    from asr.hybrid.tune import parse_args, run
    from asr.segment import SegmentConfig

    cutting = functools.partial(SegmentConfig, max_chunk_s=1.0, overlap_s=0.3, whole_file_s=1.2, min_pause_s=0.5)
    monkeypatch.setattr(asr.transcribe, "SegmentConfig", cutting)
    summary = run(parse_args(["--manifest", str(MBLW), "--emissions", "ctc", "--prior-scales", "0,0.5",
                              "--lm-weights", "0.25", "--word-bonuses", "0,1"]))
    assert summary["grid_points"] == 4
    best = summary["best"]
    assert main(["decode", "--decoder", "hybrid", "--hybrid-emissions", "ctc", "--prior-scale", str(best["prior_scale"]),
                 "--alpha", str(best["lm_weight"]), "--beta", str(best["word_bonus"]), "--manifest", str(MBLW),
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    decoded = json.loads((tmp_path / "wer.json").read_text())
    assert decoded["wer"] == pytest.approx(best["wer"], abs=0.01) and decoded["cer"] == pytest.approx(best["cer"], abs=0.01)
