"""The bundled model on digits from a speaker it never heard, as they are and with pauses around them.

The digit corpus (FSDD) is trimmed to the word. A model trained on such clips can learn that a word
fills its whole input and misread a digit recorded with a pause around it (the model bundled before
silence padding read 69 % of the dev speaker's digits wrongly with 0.5 s of quiet noise on each side,
against 21 % as they are; `bench/padded_wer.py`). These tests keep that from coming back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.augment import surround_with_noise
from asr.manifest import read_manifest
from asr.metrics import wer
from asr.transcribe import DEFAULT_MODEL, Transcriber

DEV_SPEAKER = "yweweler"  # the FSDD speaker held out of the bundled model's training (recipes/default)
PER_DIGIT = 3

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model asr/pretrained/model.pt absent")


@pytest.fixture(scope="module")
def dev_digits(shared_data: Path) -> list[tuple[np.ndarray, int, str]]:
    """(8 kHz samples, rate, reference) for the first PER_DIGIT takes of each digit by the dev speaker."""
    manifest = shared_data / "fsdd" / "manifest.tsv"
    if not manifest.is_file():
        pytest.skip(f"FSDD manifest not found at {manifest}")
    chosen = [u for u in read_manifest(manifest) if u.speaker == DEV_SPEAKER
              and int(u.utt_id.rsplit("_", 1)[1]) < PER_DIGIT]
    assert len(chosen) == 10 * PER_DIGIT, "expected every digit of the dev speaker"
    clips = []
    for utt in chosen:
        samples, rate = sf.read(utt.audio_path, dtype="float32")  # (N,), 8000
        clips.append((samples, rate, utt.text.upper()))
    return clips


def word_error_rate(transcriber: Transcriber, clips, pad_seconds: float) -> float:
    """WER of the transcripts of every clip, each with `pad_seconds` of white noise 45 dB below it on both sides."""
    rng = np.random.default_rng(0)
    refs, hyps = [], []
    for samples, rate, ref in clips:
        count = int(pad_seconds * rate)
        audio = surround_with_noise(samples, count, count, -45.0, rng) if pad_seconds else samples
        hyps.append(transcriber.transcribe(audio, sample_rate=rate, with_words=False).text)
        refs.append(ref)
    return wer(refs, hyps)


def test_bundled_model_reads_unseen_digits_with_pauses_around_them(dev_digits):
    transcriber = Transcriber.from_pretrained(DEFAULT_MODEL, device="cpu")
    as_is = word_error_rate(transcriber, dev_digits, 0.0)
    padded = word_error_rate(transcriber, dev_digits, 0.5)
    assert as_is <= 0.35, f"{as_is:.0%} of the dev speaker's digits misread"
    assert padded <= 0.45, f"{padded:.0%} misread with 0.5 s of quiet noise around them (as is: {as_is:.0%})"
