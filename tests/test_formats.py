"""Rendering of `asr transcribe` output formats (SRT, WebVTT, CTM, text) from timed words."""

from __future__ import annotations

import pytest

from asr.decoding.align import WordSpan
from asr.formats import clock_time, ctm_recording_id, format_transcript, subtitle_cues, to_ctm, to_srt, to_vtt
from asr.transcribe import Transcript


def transcript(words: list[tuple[str, float, float]], path: str = "/data/talk one.flac") -> Transcript:
    spans = [WordSpan(word, start, end, 0.9) for word, start, end in words]
    return Transcript(path=path, text=" ".join(w for w, _, _ in words), duration=9.0, words=spans)


def test_clock_time_rounds_to_milliseconds_and_carries():
    assert clock_time(0) == "00:00:00,000"
    assert clock_time(3661.0006) == "01:01:01,001"
    assert clock_time(59.9996, ".") == "00:01:00.000"
    assert clock_time(-0.01) == "00:00:00,000"  # an alignment a hair before zero is not a negative time


def test_cues_split_at_word_count_and_span():
    words = [(f"W{i}", i * 0.5, i * 0.5 + 0.4) for i in range(12)]
    assert [len(text.split()) for _, _, text in subtitle_cues(transcript(words), max_words=5)] == [5, 5, 2]
    cues = subtitle_cues(transcript(words), max_words=100, max_seconds=2.0)
    assert all(end - start <= 2.0 for start, end, _ in cues)
    assert " ".join(text for _, _, text in cues) == " ".join(w for w, _, _ in words)


def test_srt_and_vtt_documents():
    t = transcript([("HELLO", 0.5, 0.9), ("WORLD", 1.0, 1.62)])
    assert to_srt(t) == "1\n00:00:00,500 --> 00:00:01,620\nHELLO WORLD\n"
    assert to_vtt(t) == "WEBVTT\n\n00:00:00.500 --> 00:00:01.620\nHELLO WORLD\n"


def test_text_without_word_times_is_one_cue_and_silence_is_empty():
    untimed = Transcript(path="a.wav", text="YES", duration=2.5)
    assert to_srt(untimed) == "1\n00:00:00,000 --> 00:00:02,500\nYES\n"
    silent = Transcript(path="a.wav", text="", duration=2.5)
    assert to_srt(silent) == "" and to_vtt(silent) == "WEBVTT\n\n" and to_ctm(silent) == ""


def test_ctm_lines():
    t = transcript([("HELLO", 0.5, 0.9), ("WORLD", 1.0, 1.62)])
    assert to_ctm(t) == "talk_one 1 0.500 0.400 HELLO 0.900\ntalk_one 1 1.000 0.620 WORLD 0.900\n"


@pytest.mark.parametrize("path, expected", [("a/b/an4-mblw.flac", "an4-mblw"), ("C:\\x\\y.wav", "y"),
                                            (".hidden", ".hidden"), ("two words.v1.wav", "two_words.v1")])
def test_ctm_recording_id(path, expected):
    assert ctm_recording_id(path) == expected


def test_text_format_and_unknown_format():
    t = transcript([("HI", 0.0, 0.3)], path="x.wav")
    assert format_transcript(t, "text") == "x.wav\tHI\n"
    with pytest.raises(ValueError, match="unknown output format 'doc'"):
        format_transcript(t, "doc")
