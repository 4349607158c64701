"""Output formats of `asr transcribe`: plain text, JSON lines, SRT and WebVTT subtitles, NIST CTM.

Each renderer takes one `Transcript` and returns its text. SRT and WebVTT are whole documents (one
file per input); text, JSON lines and CTM are lines that can follow each other in one stream.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asr.transcribe imports torch; rendering text does not need it
    from asr.transcribe import Transcript

# --format name → file extension with --output-dir
EXTENSIONS: dict[str, str] = {"text": "txt", "jsonl": "json", "srt": "srt", "vtt": "vtt", "ctm": "ctm"}
# formats whose output is one document per input: several inputs need --output-dir
DOCUMENT_FORMATS: frozenset[str] = frozenset({"srt", "vtt"})

Cue = tuple[float, float, str]  # (start s, end s, text)


def clock_time(seconds: float, decimal_mark: str = ",") -> str:
    """Seconds → `HH:MM:SS,mmm` (SRT) or, with `decimal_mark="."`, `HH:MM:SS.mmm` (WebVTT)."""
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def subtitle_cues(transcript: Transcript, max_words: int = 10, max_seconds: float = 6.0) -> list[Cue]:
    """Group the timed words into cues of at most `max_words` words spanning at most `max_seconds`.

    A transcript with text but no word times (e.g. text output of a decoder without alignment) is one
    cue over the whole file; nothing said gives no cues.
    """
    groups: list[list] = []
    for word in transcript.words:
        if groups and (len(groups[-1]) >= max_words or word.end - groups[-1][0].start > max_seconds):
            groups.append([])
        if not groups:
            groups.append([])
        groups[-1].append(word)
    if not groups and transcript.text:
        return [(0.0, transcript.duration, transcript.text)]
    return [(group[0].start, group[-1].end, " ".join(w.word for w in group)) for group in groups]


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues `N\\nHH:MM:SS,mmm --> HH:MM:SS,mmm\\ntext\\n`, separated by blank lines."""
    return "\n".join(f"{n}\n{clock_time(start)} --> {clock_time(end)}\n{text}\n"
                     for n, (start, end, text) in enumerate(subtitle_cues(transcript), start=1))


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm\\ntext\\n`."""
    cues = [f"{clock_time(start, '.')} --> {clock_time(end, '.')}\n{text}\n"
            for start, end, text in subtitle_cues(transcript)]
    return "WEBVTT\n\n" + "\n".join(cues)


def ctm_recording_id(path: str) -> str:
    """The file's name without its extension, whitespace replaced by `_` (CTM fields are space-separated)."""
    name = re.split(r"[\\/]", path)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return re.sub(r"\s+", "_", stem) or "_"


def to_ctm(transcript: Transcript, channel: str = "1") -> str:
    """NIST CTM, one line a word: `recording channel start duration word confidence` (seconds).

    The format of Kaldi's and sclite's time-marked scoring; the recording id is the file's stem.
    """
    recording = ctm_recording_id(transcript.path)
    return "".join(f"{recording} {channel} {w.start:.3f} {max(w.end - w.start, 0.0):.3f} {w.word} {w.conf:.3f}\n"
                   for w in transcript.words)


def format_transcript(transcript: Transcript, fmt: str) -> str:
    """Render one transcript in `fmt` (a key of EXTENSIONS); `text` is `path<TAB>text`."""
    if fmt == "jsonl":
        return json.dumps(transcript.to_json()) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    if fmt == "ctm":
        return to_ctm(transcript)
    if fmt != "text":
        raise ValueError(f"unknown output format {fmt!r} (expected one of {', '.join(EXTENSIONS)})")
    return f"{transcript.path}\t{transcript.text}\n"
