"""Property-based tests: arbitrary bytes and lines never crash the readers with anything but
their documented error (AudioError, ManifestError, CheckpointError), and the segmenter keeps
its invariants on arbitrary signals.

Examples are derandomized (the same ones every run, so CI cannot flake) and bounded in number
so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import AudioError, load_audio
from asr.checkpoint import CheckpointError, read_checkpoint
from asr.manifest import COLUMNS, ManifestError, read_manifest
from asr.segment import SegmentConfig, segment_stream

DATA = Path(__file__).parent / "data"
FLAC_BYTES = (DATA / "an4" / "an1-mblw-b.flac").read_bytes()
WAV_BYTES = (DATA / "fsdd_3_jackson_0_8khz.wav").read_bytes()

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_audio(path: Path) -> None:
    """load_audio either returns a finite float32 signal or raises AudioError naming the file in one line."""
    try:
        audio = load_audio(path)
    except AudioError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) >= 1
    assert np.isfinite(audio).all()


# --- audio ----------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".ogg", ".sph", ".bin"]))
def test_random_bytes_to_load_audio(scratch, data, suffix):
    path = scratch / f"random{suffix}"
    path.write_bytes(data)
    check_audio(path)


def riff_wav(rate: int, channels: int, bits: int, fmt_tag: int, declared: int, payload: bytes) -> bytes:
    """A RIFF/WAVE file with arbitrary (possibly lying) header fields."""
    block = channels * max(1, bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@FUZZ
@given(rate=st.sampled_from([0, 1, 8000, 16000, 44100, 96000, 2**31 - 1]), channels=st.integers(0, 300),
       bits=st.sampled_from([0, 8, 16, 24, 32, 64, 7]), fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0]),
       declared=st.sampled_from([0, 1, 100, 2**31, 2**32 - 1]), payload=st.binary(max_size=2048))
def test_lying_wav_headers(scratch, rate, channels, bits, fmt_tag, declared, payload):
    path = scratch / "header.wav"
    path.write_bytes(riff_wav(rate, channels, bits, fmt_tag, declared, payload))
    check_audio(path)


@FUZZ
@given(source=st.sampled_from(["flac", "wav"]), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=8))
def test_damaged_real_files(scratch, source, cut, flips):
    data = bytearray(FLAC_BYTES if source == "flac" else WAV_BYTES)
    for where, mask in flips:
        data[min(len(data) - 1, int(where * len(data)))] ^= mask
    path = scratch / f"damaged.{source}"
    path.write_bytes(bytes(data[: max(0, int(cut * len(data)))]))
    check_audio(path)


# --- manifests ------------------------------------------------------------------------------------

FIELD = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-1", "0", "1e400", "16000", "16000.5", "1.5", "", " ", "an4/an1-mblw-b.flac",
                     "/dev/null", "a\x00b", "x" * 300, "\u2028", "\x85", "\r"]),
)
ROW = st.one_of(st.lists(FIELD, min_size=0, max_size=8).map("\t".join), st.text(max_size=60))


@FUZZ
@given(rows=st.lists(ROW, max_size=8), check_audio=st.booleans(), ending=st.sampled_from(["\n", "\r\n"]))
def test_random_manifest_lines(scratch, rows, check_audio, ending):
    path = scratch / "random.tsv"
    path.write_text(ending.join(["\t".join(COLUMNS), *rows]) + ending, encoding="utf-8", newline="")
    try:
        utterances = read_manifest(path, check_audio=check_audio)
    except ManifestError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc) and "\r" not in str(exc).replace("'\\r'", "")
        assert exc.problems and all(str(path) in p for p in exc.problems)
        return
    ids = [u.utt_id for u in utterances]
    assert len(ids) == len(set(ids))
    for utt in utterances:
        assert utt.duration_s > 0 and np.isfinite(utt.duration_s) and utt.sample_rate > 0
        if check_audio:
            assert utt.audio_path.is_file()


@FUZZ
@given(data=st.binary(max_size=2048), with_header=st.booleans())
def test_random_bytes_manifest(scratch, data, with_header):
    path = scratch / "bytes.tsv"
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() + data if with_header else data)
    try:
        read_manifest(path)
    except ManifestError as exc:
        assert str(path) in str(exc)


# --- checkpoints ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), zip_magic=st.booleans())
def test_random_bytes_checkpoint(scratch, data, zip_magic):
    path = scratch / "random.pt"
    path.write_bytes((b"PK\x03\x04" if zip_magic else b"") + data)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- segmentation ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), seconds=st.floats(0.0, 40.0), block_s=st.floats(0.01, 12.0),
       level=st.sampled_from([0.0, 1e-4, 0.01, 0.3]), bursts=st.integers(0, 12))
def test_segmenter_invariants(seed, seconds, block_s, level, bursts):
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    wave = (rng.standard_normal(n) * level).astype(np.float32)
    for _ in range(bursts):  # loud stretches of random length standing in for speech
        start, length = rng.integers(0, max(1, n)), rng.integers(100, 16000 * 12)
        wave[start : start + length] += rng.standard_normal(len(wave[start : start + length])).astype(np.float32) * 0.2
    config = SegmentConfig(max_chunk_s=6.0, overlap_s=1.0, whole_file_s=8.0)
    block = max(1, int(block_s * 16000))
    pieces = list(segment_stream((wave[i : i + block] for i in range(0, n, block)), config))
    previous_end, previous_keep = 0, -np.inf
    for piece in pieces:
        assert 0 <= piece.start < piece.end <= n
        assert len(piece.wave) <= max(config.max_chunk_s, config.whole_file_s if len(pieces) == 1 else 0) * 16000
        np.testing.assert_array_equal(piece.wave, wave[piece.start : piece.end])
        assert piece.start >= previous_end - config.overlap_s * 16000  # ordered, overlapping by at most overlap_s
        assert piece.keep_start >= previous_keep and piece.keep_start < piece.keep_end
        previous_end, previous_keep = piece.end, piece.keep_end
