"""data_prep.word_clips: digits cut out of force-aligned real AN4 sentences as isolated clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.decoding.align import WordSpan
from asr.manifest import read_manifest
from data_prep.word_clips import clip_bounds, cut_word_clips, main

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"  # X I SIXTY ONE / Z EIGHT OH TWO / ENTER SIXTY / ENTER SEVENTY TWO / R O B E R T


def span(word: str, start: float, end: float) -> WordSpan:
    return WordSpan(word, start, end, 1.0)


def test_clip_bounds_meet_halfway_and_keep_an_edge_at_the_ends():
    words = [span("ENTER", 0.30, 0.55), span("SIX", 0.70, 0.80), span("TWO", 1.00, 1.06)]
    assert clip_bounds(words, 1, 1.5) == pytest.approx((0.625, 0.90))
    assert clip_bounds(words, 0, 1.5, edge_s=0.1) == pytest.approx((0.20, 0.625))
    assert clip_bounds(words, 2, 1.5, edge_s=0.2) == pytest.approx((0.90, 1.26))
    assert clip_bounds(words, 2, 1.1, edge_s=0.2)[1] == pytest.approx(1.1)  # never past the sentence
    assert clip_bounds([span("OH", 0.05, 0.1)], 0, 1.0, edge_s=0.2)[0] == 0.0


def test_cuts_each_digit_in_order_from_the_sentence(overfit_model, tmp_path):
    """At 16 kHz the clips are exact slices of their sentences: consecutive, in order, the right words."""
    clips = cut_word_clips(MANIFEST, overfit_model, tmp_path, sample_rate=16000)
    assert [(c.utt_id.split("_")[0], c.text) for c in clips] == [
        ("an1-mblw-b", "ONE"), ("an2-mblw-b", "EIGHT"), ("an2-mblw-b", "OH"), ("an2-mblw-b", "TWO"),
        ("an4-mblw-b", "TWO")]
    assert read_manifest(tmp_path / "train.tsv") == clips
    sentence = load_audio(DATA / "an4" / "an2-mblw-b.flac")  # (N,) 16 kHz
    eight, oh, two = (sf.read(c.audio_path, dtype="float32")[0] for c in clips[1:4])
    joined = np.concatenate([eight, oh, two])
    start = next(i for i in range(len(sentence) - len(eight))
                 if np.abs(sentence[i:i + len(eight)] - eight).max() < 1e-4)  # PCM-16 rounding
    assert np.abs(sentence[start:start + len(joined)] - joined).max() < 1e-4  # the three follow each other
    assert all(0.1 < c.duration_s < 1.0 for c in clips)


def test_eight_khz_clips_and_the_command(overfit_model, tmp_path, capsys):
    assert main(["--manifest", str(MANIFEST), "--model", str(overfit_model), "--out-dir", str(tmp_path),
                 "--words", "sixty"]) == 0
    clips = read_manifest(tmp_path / "train.tsv")
    assert [c.text for c in clips] == ["SIXTY", "SIXTY"]
    for clip in clips:
        info = sf.info(clip.audio_path)
        assert info.samplerate == clip.sample_rate == 8000
        assert info.frames / 8000 == pytest.approx(clip.duration_s, abs=1e-3)
    assert main(["--manifest", str(MANIFEST), "--model", str(overfit_model), "--out-dir", str(tmp_path / "none"),
                 "--words", "HUNDRED"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no sentence holds any of HUNDRED" in err
    assert not (tmp_path / "none" / "train.tsv").exists()
