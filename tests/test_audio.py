"""load_audio / find_audio_files on real recordings and on real audio rewritten in other formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from asr.audio import SAMPLE_RATE, AudioError, find_audio_files, load_audio

DATA = Path(__file__).parent / "data"
FLAC = DATA / "an4" / "an1-mblw-b.flac"  # 1.5 s, 16 kHz, 16-bit mono
WAV_8K = DATA / "fsdd_3_jackson_0_8khz.wav"  # 3886 samples, 8 kHz, 16-bit mono


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """The real 16 kHz clip as float32, read directly with soundfile (the reference)."""
    data, rate = sf.read(FLAC, dtype="float32")
    assert rate == SAMPLE_RATE and data.ndim == 1
    return data


def lowpass_6k(signal: np.ndarray) -> np.ndarray:
    """Band-limit a 16 kHz signal to 6 kHz (down to 12 kHz and back)."""
    return soxr.resample(soxr.resample(signal, SAMPLE_RATE, 12000, quality="VHQ"), 12000, SAMPLE_RATE, quality="VHQ")


def assert_names(exc_info: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc_info.value)
    assert str(path) in message, message
    assert "\n" not in message  # one line for the CLI


# --- real files ----------------------------------------------------------------------------------


def test_flac_16k_loads_unchanged(clip):
    audio = load_audio(FLAC)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 24000  # 1.500 s in the manifest
    np.testing.assert_array_equal(audio, clip)
    assert 0 < np.abs(audio).max() <= 1.0


def test_wav_8k_is_resampled_to_16k():
    original, rate = sf.read(WAV_8K, dtype="float32")
    assert rate == 8000 and len(original) == 3886
    audio = load_audio(WAV_8K)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2 * len(original)) <= 1
    # Band-limited upsampling keeps the signal: taking it back to 8 kHz gives the original samples.
    back = soxr.resample(audio, SAMPLE_RATE, 8000, quality="HQ")
    n = min(len(back), len(original))
    error = np.sqrt(np.mean((back[:n] - original[:n]) ** 2)) / np.sqrt(np.mean(original**2))
    assert error < 0.02, error
    # and the level is preserved (not e.g. int16 counts or a rescaled copy)
    assert np.isclose(np.sqrt(np.mean(audio**2)), np.sqrt(np.mean(original**2)), rtol=0.02)


def test_sample_rate_argument(clip):
    audio = load_audio(FLAC, sample_rate=8000)
    assert abs(len(audio) - len(clip) // 2) <= 1


# --- the real clip rewritten in other layouts ------------------------------------------------------


def test_stereo_identical_channels_equals_mono(tmp_path, clip):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([clip, clip], axis=1), SAMPLE_RATE, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.ndim == 1 and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, clip)


def test_stereo_channels_are_averaged(tmp_path, clip):
    path = tmp_path / "stereo_float.wav"
    sf.write(path, np.stack([clip, 0.5 * clip], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.75 * clip, atol=1e-7)


def test_44k1_is_resampled_with_matching_duration(tmp_path, clip):
    high = soxr.resample(clip, SAMPLE_RATE, 44100, quality="VHQ")
    path = tmp_path / "clip_44k1.wav"
    sf.write(path, high, 44100, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    file_duration = sf.info(path).frames / 44100
    assert abs(len(audio) / SAMPLE_RATE - file_duration) < 1e-3
    assert abs(len(audio) - len(clip)) <= 16  # within 1 ms of the source clip
    # Same signal, not shifted or distorted. The clip holds ~4 % of its energy in noise above
    # 7 kHz, near the resampler's transition band, so compare below 6 kHz.
    n = min(len(audio), len(clip))
    corr = np.corrcoef(lowpass_6k(audio[:n]), lowpass_6k(clip[:n]))[0, 1]
    assert corr > 0.9999, corr


def test_24bit_wav(tmp_path, clip):
    path = tmp_path / "clip_24.wav"
    sf.write(path, clip, SAMPLE_RATE, subtype="PCM_24")
    assert sf.info(path).subtype == "PCM_24"
    np.testing.assert_allclose(load_audio(path), clip, atol=1e-6)


def test_float_wav(tmp_path, clip):
    path = tmp_path / "clip_float.wav"
    sf.write(path, clip, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), clip)


# --- errors: AudioError naming the file -------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


def test_truncated_flac_header_only(tmp_path):
    path = tmp_path / "cut.flac"
    path.write_bytes(FLAC.read_bytes()[:40])
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


def test_directory(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioError) as info:
        load_audio(folder)
    assert_names(info, folder)


def test_wav_without_samples(tmp_path):
    path = tmp_path / "no_frames.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, clip, bad):
    data = clip.copy()
    data[1000] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_names(info, path)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


# --- find_audio_files ------------------------------------------------------------------------------


def test_find_audio_files_walks_recursively_sorted(tmp_path, clip):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    sf.write(tmp_path / "b" / "x.wav", clip, SAMPLE_RATE)
    sf.write(tmp_path / "a" / "deep" / "y.FLAC", clip, SAMPLE_RATE, format="FLAC")
    (tmp_path / "a" / "readme.txt").write_text("not audio")
    found = find_audio_files([tmp_path])
    assert found == [tmp_path / "a" / "deep" / "y.FLAC", tmp_path / "b" / "x.wav"]
    for path in found:
        np.testing.assert_allclose(load_audio(path), clip, atol=1e-4)


def test_find_audio_files_keeps_plain_paths_in_order(tmp_path):
    missing = tmp_path / "missing.wav"
    assert find_audio_files([str(WAV_8K), missing, FLAC]) == [WAV_8K, missing, FLAC]


def test_find_audio_files_directory_without_audio(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    with pytest.raises(AudioError) as info:
        find_audio_files([tmp_path])
    assert_names(info, tmp_path)


def test_find_audio_files_real_fixture_folder():
    found = find_audio_files([DATA / "an4"])
    assert [p.name for p in found] == sorted(p.name for p in (DATA / "an4").glob("*.flac"))
    assert len(found) == 5
