"""The Python API (`asr.load`, `Transcriber.transcribe`) on real clips: files and in-memory signals agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

import asr
from asr.cli import UserError
from asr.manifest import read_manifest

DATA = Path(__file__).parent / "data"
CLIPS = read_manifest(DATA / "an4_mblw.tsv")


@pytest.fixture(scope="module")
def recognizer(overfit_model):
    return asr.load(overfit_model, device="cpu")


def test_import_asr_is_light():
    code = "import sys, asr; print('torch' in sys.modules, 'asr.transcribe' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_file_path_gives_the_cli_transcript(recognizer):
    clip = CLIPS[3]
    result = recognizer.transcribe(clip.audio_path)
    [via_files] = recognizer.transcribe_files([clip.audio_path])
    assert result == via_files
    assert result.text == clip.text  # the overfit model knows these clips
    assert [w.word for w in result.words] == clip.text.split()


def test_array_matches_the_file(recognizer):
    clip = CLIPS[0]
    samples, rate = sf.read(clip.audio_path, dtype="float32")
    from_array = recognizer.transcribe(samples, sample_rate=rate)
    from_file = recognizer.transcribe(clip.audio_path)
    assert from_array.text == from_file.text == clip.text
    assert from_array.path == "<array>" and from_array.duration == pytest.approx(from_file.duration)
    assert [(w.word, w.start, w.end) for w in from_array.words] == [(w.word, w.start, w.end) for w in from_file.words]


def test_int16_stereo_and_8khz_arrays_match_the_same_audio_as_files(recognizer, tmp_path):
    clip = CLIPS[2]
    samples, rate = sf.read(clip.audio_path, dtype="int16")
    stereo = np.stack([samples, samples], axis=1)  # (N, 2) int16
    assert recognizer.transcribe(stereo, sample_rate=rate).text == recognizer.transcribe(clip.audio_path).text

    narrow = tmp_path / "narrow.wav"
    sf.write(narrow, sf.read(clip.audio_path)[0][::2], 8000)  # crude 8 kHz copy, the same samples both ways
    as_file = recognizer.transcribe(narrow)
    as_array = recognizer.transcribe(sf.read(narrow, dtype="float32")[0], sample_rate=8000)
    assert as_array.text == as_file.text  # same resampling and the same 4 kHz band cutoff


@pytest.mark.parametrize("samples, rate, problem", [
    (np.zeros(0, np.float32), 16000, "no audio samples"),
    (np.ones(100, np.float32), None, "sample rate"),
    (np.ones(100, np.float32), 16000.5, "sample rate"),
    (np.array([0.0, np.nan, 0.1] * 100), 16000, "NaN or infinite"),
    (np.zeros((2, 3, 4)), 16000, "shape"),
    (np.array(["a", "b"]), 16000, "shape"),
])
def test_bad_arrays_raise_audio_error(recognizer, samples, rate, problem):
    with pytest.raises(asr.AudioError, match=problem):
        recognizer.transcribe(samples, sample_rate=rate)


def test_bad_paths_raise_audio_error_naming_the_file(recognizer, tmp_path):
    with pytest.raises(asr.AudioError, match="nope.wav: no such file"):
        recognizer.transcribe(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="arrays only"):
        recognizer.transcribe(CLIPS[0].audio_path, sample_rate=16000)


def test_decoder_options_are_the_cli_flags(overfit_model):
    beam = asr.load(overfit_model, decoder="beam", device="cpu", lm="none", beam=4, alpha=0.0)
    assert beam.decoder.beam_size == 4 and beam.decoder.lm is None
    assert beam.transcribe(CLIPS[1].audio_path).text == CLIPS[1].text
    with pytest.raises(ValueError, match="unknown decoder option"):
        asr.load(overfit_model, decoder="beam", bem=4)
    with pytest.raises(ValueError, match="unknown decoder 'viterbi'"):
        asr.load(overfit_model, decoder="viterbi")
    with pytest.raises(UserError, match="missing.arpa: language model file not found"):
        asr.load(overfit_model, decoder="beam", lm=Path("missing.arpa"))


def test_bundled_model_with_its_lm_and_hybrid_assets():
    bundled = Path(asr.__file__).parent / "pretrained" / "model.pt"
    if not bundled.is_file():
        pytest.skip("no bundled model in this checkout")
    clip = CLIPS[3]
    beam = asr.load(decoder="beam", device="cpu")
    assert beam.decoder.lm is not None  # the LM named by model.decode.json
    hybrid = asr.load(decoder="hybrid", device="cpu", hybrid_emissions="ctc")
    for recognizer in (beam, hybrid):
        result = recognizer.transcribe(clip.audio_path)
        assert jiwer.cer(clip.text, result.text) < 0.2  # mblw is a training speaker of the bundled model
        assert [w.word for w in result.words] == result.text.split()


def test_readme_python_example_runs(monkeypatch):
    """The README's Python block, run as written (with `samples` and `paths` supplied)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "asr" / "pretrained" / "model.pt").is_file():
        pytest.skip("no bundled model in this checkout")
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    samples, rate = sf.read(CLIPS[0].audio_path, dtype="float32")
    monkeypatch.chdir(root)
    scope = {"samples": samples[::2], "paths": [c.audio_path for c in CLIPS]}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["result"].text  # the last of `paths`, through transcribe_files
    from asr.decoding.beam import BeamSearchDecoder
    from asr.transcribe import GreedyDecoder

    assert isinstance(scope["recognizer"].decoder, BeamSearchDecoder)  # the bundled model's tuned default
    assert scope["recognizer"].decoder.lm is not None
    assert isinstance(scope["greedy"].decoder, GreedyDecoder)


def test_default_decoder_of_a_model_without_tuned_settings_is_greedy(recognizer):
    from asr.transcribe import GreedyDecoder

    assert isinstance(recognizer.decoder, GreedyDecoder)  # the overfit model has no .decode.json
