"""Long recordings: streaming reads, voice activity, chunking and stitching, on real clips.

A recording of several minutes is built from the real AN4 clips of tests/data with silences
between them; transcribed as one file with the bundled model it must give the same words in
the same order as the clips transcribed one by one, with each word's time inside its clip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr

from asr.audio import SAMPLE_RATE, load_audio, stream_audio
from asr.cli import main
from asr.decoding.align import WordSpan
from asr.segment import Piece, SegmentConfig, Segmenter, frame_db, segment_stream, speech_regions, stitch_words
from asr.transcribe import DEFAULT_MODEL, Transcriber

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "audio"
# The bundled model's output for most clips changes when the input is shifted by a few milliseconds
# (an1-mblw-b "X I SIXTY ONE" also reads "X IV SIXTY ONE"), a property of the model rather than of
# the chunking: `python bench/shift_stability.py --model asr/pretrained/model.pt` finds 4 of the 8 clips
# below varying over 0–30 ms shifts (2 of 8 for the model bundled before it). So the exact comparison
# uses two clips whose transcripts do not depend on such shifts with either model; the tolerant
# comparison below uses every clip.
STABLE = [DATA / "an4" / "an3-mblw-b.flac", DATA / "an4" / "an4-mblw-b.flac"]
ALL_CLIPS = sorted((DATA / "an4").glob("*.flac")) + sorted(EXAMPLES.glob("an4_*.flac"))
TIME_TOLERANCE = 0.07  # s: two 30 ms output steps plus the sub-step phase of the clip in the long file
OUTPUT_STEP = 0.03  # s: the model's output step (10 ms hop × 3 stacked frames)
CENTRE_TOLERANCE = 0.2  # s: how far a word's centre may move when its first or last letter is clipped

needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model asr/pretrained/model.pt absent")


@dataclass
class LongRecording:
    path: Path
    clips: list[int]  # which clip is played at each position
    spans: list[tuple[float, float]]  # (start, end) seconds of each position


def build_recording(path: Path, clips: list[np.ndarray], repeats: int, seed: int,
                    long_silence_s: float = 25.0) -> LongRecording:
    """Clips in shuffled rounds, separated by 0.7–3 s of digital silence or low room-like noise
    (−70 dBFS), with one `long_silence_s` gap in the middle; written as 16-bit FLAC."""
    rng = np.random.default_rng(seed)
    parts, order, spans, position = [], [], [], 0
    for round_ in range(repeats):
        for index in rng.permutation(len(clips)):
            gap = int(rng.uniform(0.7, 3.0) * SAMPLE_RATE)
            noise = rng.random() < 0.5
            parts.append((rng.standard_normal(gap) * 3e-4).astype(np.float32) if noise else np.zeros(gap, np.float32))
            position += gap
            order.append(int(index))
            spans.append((position / SAMPLE_RATE, (position + len(clips[index])) / SAMPLE_RATE))
            parts.append(clips[index])
            position += len(clips[index])
        if round_ == repeats // 2:
            parts.append(np.zeros(int(long_silence_s * SAMPLE_RATE), np.float32))
            position += int(long_silence_s * SAMPLE_RATE)
    parts.append(np.zeros(SAMPLE_RATE // 2, np.float32))
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return LongRecording(path, order, spans)


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    if not DEFAULT_MODEL.is_file():
        pytest.skip("bundled model asr/pretrained/model.pt absent")
    return Transcriber.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def stable_recording(tmp_path_factory) -> LongRecording:
    clips = [sf.read(p, dtype="float32")[0] for p in STABLE]
    return build_recording(tmp_path_factory.mktemp("long") / "stable.flac", clips, repeats=60, seed=1)


# --- the bundled model on a recording of several minutes ----------------------------------------


@needs_model
def test_long_recording_matches_clip_by_clip(transcriber, stable_recording):
    rec = stable_recording
    duration = sf.info(rec.path).duration
    assert duration > 300, duration  # several minutes
    one_by_one = list(transcriber.transcribe_files(STABLE))
    [long] = transcriber.transcribe_files([rec.path])
    assert long.duration == pytest.approx(duration, abs=1e-3)
    expected = [w for c in rec.clips for w in one_by_one[c].words]
    assert [w.word for w in long.words] == [w.word for w in expected]
    assert long.text == " ".join(one_by_one[c].text for c in rec.clips)
    assert len(long.words) >= 250
    position = [k for k, c in enumerate(rec.clips) for _ in one_by_one[c].words]  # word → place in the file
    for word, alone, k in zip(long.words, expected, position):
        start, end = rec.spans[k]
        assert start - TIME_TOLERANCE <= word.start < word.end <= end + TIME_TOLERANCE, (word, rec.spans[k])
        # the same place as in the lone clip; CTC puts an utterance's first and last letters early or
        # late into the surrounding silence, which the long file clips to the voice-active stretch
        shift = (word.start + word.end) / 2 - (start + (alone.start + alone.end) / 2)
        assert abs(shift) <= CENTRE_TOLERANCE, (word, alone, start)
    shifts = [abs(w.start - s - a.start) for w, a, s in zip(long.words, expected, (rec.spans[k][0] for k in position))]
    # most words start where they do in the lone clip, up to the clip's phase against the 30 ms output
    # grid of the long file (a chunking or stitching offset would be a whole piece's worth)
    assert np.median(shifts) <= OUTPUT_STEP, shifts


@needs_model
def test_every_clip_including_fragile_ones(transcriber, tmp_path):
    clips = [load_audio(p) for p in ALL_CLIPS]
    rec = build_recording(tmp_path / "all.flac", clips, repeats=6, seed=2)
    one_by_one = list(transcriber.transcribe_files(ALL_CLIPS))
    [long] = transcriber.transcribe_files([rec.path])
    reference = " ".join(one_by_one[c].text for c in rec.clips)
    assert jiwer.wer(reference, long.text) <= 0.12, (reference, long.text)
    for word in long.words:  # no word in the silences (models hallucinate there when fed silence)
        centre = (word.start + word.end) / 2
        assert any(a - TIME_TOLERANCE <= centre <= b for a, b in rec.spans), word


@needs_model
def test_cli_on_a_long_recording(stable_recording, capsys):
    code = main(["transcribe", "--format", "jsonl", str(stable_recording.path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    [obj] = [json.loads(line) for line in out.splitlines()]
    assert obj["duration"] == pytest.approx(sf.info(stable_recording.path).duration, abs=1e-3)
    assert " ".join(w["word"] for w in obj["words"]) == obj["text"]
    starts = [w["start"] for w in obj["words"]]
    assert starts == sorted(starts)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(obj["words"], obj["words"][1:]))


# --- streaming and segmentation ------------------------------------------------------------------


def test_stream_blocks_equal_one_shot_resampling(tmp_path):
    clip = load_audio(DATA / "an4" / "an1-mblw-b.flac")
    long = np.tile(clip, 30)  # 45 s, several 10 s blocks
    high = soxr.resample(long, SAMPLE_RATE, 44100, quality="VHQ")
    path = tmp_path / "long_44k1.wav"
    sf.write(path, np.stack([high, high], axis=1), 44100, subtype="FLOAT")
    blocks = list(stream_audio(path, block_seconds=3.0))
    assert len(blocks) >= 15 and max(len(b) for b in blocks) <= 3.0 * SAMPLE_RATE + 64
    joined = np.concatenate(blocks)
    np.testing.assert_array_equal(joined, soxr.resample(high, 44100, SAMPLE_RATE, quality="HQ"))
    np.testing.assert_array_equal(joined, load_audio(path))


def test_segmenter_memory_is_bounded(stable_recording):
    """Ten-second blocks of a > 5 min recording: the buffer never holds much more than a chunk."""
    config = SegmentConfig()
    segmenter = Segmenter(config)
    pieces = []
    for block in stream_audio(stable_recording.path):
        pieces += segmenter.feed(block)
    pieces += segmenter.finish()
    bound = max(config.whole_file_s, config.max_chunk_s + config.pad_s + config.min_silence_s + 0.1) + 10.0
    assert segmenter.max_buffered <= bound * SAMPLE_RATE
    assert segmenter.total_samples == pytest.approx(sf.info(stable_recording.path).frames)
    assert len(pieces) == len(stable_recording.clips)  # one utterance-like piece per clip
    for piece, (start, end) in zip(pieces, stable_recording.spans):
        assert piece.start / SAMPLE_RATE <= start + 0.5 and piece.end / SAMPLE_RATE >= end - 0.3
        assert not piece.overlaps


def continuous_speech() -> np.ndarray:
    """About 56 s of real speech without pauses of 0.5 s: the clips' own silences cut off, 50 ms apart."""
    names = ("an1-mblw-b", "an3-mblw-b", "an4-mblw-b", "cen2-mblw-b", "an2-mblw-b")
    clips = [load_audio(DATA / "an4" / f"{name}.flac") for name in names]
    rng = np.random.default_rng(0)
    parts = []
    for _ in range(8):
        for index in rng.permutation(len(clips)):
            db = frame_db(clips[index])
            speech = np.flatnonzero(db > db.max() - 30)
            parts.append(clips[index][speech[0] * 160 : (speech[-1] + 3) * 160])
            parts.append(np.zeros(800, np.float32))
    return np.concatenate(parts)


@pytest.mark.parametrize("block_s", [1.0, 10.0, 1000.0])
def test_forced_cuts_overlap_and_keep_ranges_tile(block_s):
    wave = continuous_speech()
    config = SegmentConfig(max_chunk_s=8.0, overlap_s=2.0, whole_file_s=8.0, min_pause_s=100.0)
    block = int(block_s * SAMPLE_RATE)
    pieces = list(segment_stream((wave[i : i + block] for i in range(0, len(wave), block)), config))
    assert len(pieces) >= 7
    assert all(len(p.wave) <= config.max_chunk_s * SAMPLE_RATE for p in pieces)
    for a, b in zip(pieces, pieces[1:]):
        np.testing.assert_array_equal(a.wave[len(a.wave) - (a.end - b.start):], b.wave[: a.end - b.start])
        if a.end > b.start:  # cut inside speech: overlap_s shared, the keep boundary in its middle
            assert a.end - b.start == config.overlap_s * SAMPLE_RATE
            assert a.keep_end == b.keep_start == pytest.approx((a.end + b.start) / 2 / SAMPLE_RATE)
        else:
            assert a.keep_end <= b.keep_start
    assert any(p.overlaps for p in pieces)
    # every speech frame of the recording lies in some piece
    db = frame_db(wave)
    starts, ends = speech_regions(db > db.max() - 30, 10, 50)
    covered = np.zeros(len(wave), bool)
    for p in pieces:
        covered[p.start : p.end] = True
    for a, b in zip(starts, ends):
        assert covered[a * 160 : b * 160].all()


def test_pieces_do_not_depend_on_block_size(stable_recording):
    wave = load_audio(stable_recording.path)
    results = []
    for block_s in (0.5, 10.0, 600.0):
        block = int(block_s * SAMPLE_RATE)
        pieces = list(segment_stream(wave[i : i + block] for i in range(0, len(wave), block)))
        results.append(np.array([(p.start, p.end) for p in pieces]))
    # The noise floor is estimated from the frames seen so far, so where a pause ends can move by
    # a frame or two with the block size; the pieces stay the same.
    for other in results[1:]:
        assert other.shape == results[0].shape
        assert np.abs(other - results[0]).max() <= 0.1 * SAMPLE_RATE


@needs_model
def test_forced_cuts_end_to_end(transcriber):
    """Pieces cut inside speech are stitched without lost or doubled words at the seams."""
    wave = continuous_speech()
    config = SegmentConfig(max_chunk_s=8.0, overlap_s=2.0, whole_file_s=8.0, min_pause_s=100.0)
    pieces = list(segment_stream([wave], config))
    decoded = transcriber.decode_waves([p.wave for p in pieces], None, True)
    words = stitch_words([(p, w) for p, (_, w) in zip(pieces, decoded)], len(wave) / SAMPLE_RATE)
    assert len(words) >= 60
    # doubled: a word of an overlap taken from both pieces would overlap its twin in time
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:])), "a word taken from both pieces"
    # lost: the speech is continuous, so a hole of a second between words means words were dropped
    gaps = [b.start - a.end for a, b in zip(words, words[1:])]
    assert max(gaps) < 1.0, max(gaps)
    assert words[0].start < 1.0 and words[-1].end > len(wave) / SAMPLE_RATE - 1.0
    boundaries = [a.keep_end for a, b in zip(pieces, pieces[1:]) if a.end > b.start]
    assert len(boundaries) >= 6


# --- stitching, unit level -----------------------------------------------------------------------


def test_stitch_words_takes_each_overlap_word_once():
    rate = SAMPLE_RATE
    left = Piece(0, np.zeros(8 * rate, np.float32), 0.0, 7.0)  # [0, 8) s, keeps centres < 7
    right = Piece(6 * rate, np.zeros(8 * rate, np.float32), 7.0, 14.0)  # [6, 14) s, keeps centres ≥ 7
    left_words = [WordSpan("ONE", 1.0, 1.5, 0.9), WordSpan("TWO", 6.2, 6.6, 0.9), WordSpan("THREE", 6.8, 7.4, 0.8),
                  WordSpan("FO", 7.7, 8.0, 0.4)]  # cut off by the piece end
    right_words = [WordSpan("WO", 0.0, 0.5, 0.3), WordSpan("THREE", 0.8, 1.4, 0.9), WordSpan("FOUR", 1.7, 2.2, 0.9),
                   WordSpan("FIVE", 7.0, 7.9, 0.9)]
    words = stitch_words([(left, left_words), (right, right_words)], duration=13.5)
    assert [w.word for w in words] == ["ONE", "TWO", "THREE", "FOUR", "FIVE"]
    assert [w.start for w in words] == [1.0, 6.2, 6.8, 7.7, 13.0]
    assert words[2].conf == 0.9  # THREE's centre (7.1 s) is right of the boundary: the right piece's copy
    assert words[-1].end == 13.5  # clamped to the recording


def test_stitch_words_without_overlap_keeps_everything():
    piece = Piece(16000, np.zeros(16000, np.float32), 1.0, 2.0)
    words = stitch_words([(piece, [WordSpan("YES", 0.5, 1.0, 1.0)])], duration=2.0)
    assert [(w.word, w.start, w.end) for w in words] == [("YES", 1.5, 2.0)]  # a last word ending with the audio
