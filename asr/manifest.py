"""Manifest files: TSV with header `utt_id speaker path duration_s sample_rate text`.

`path` is relative to the manifest's folder (absolute paths are allowed). Every problem is
reported as `ManifestError` naming the file and the line number.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from asr.fileio import atomic_write_text, path_from_folder

COLUMNS: tuple[str, ...] = ("utt_id", "speaker", "path", "duration_s", "sample_rate", "text")


class ManifestError(ValueError):
    """A manifest is malformed; the message names the file and line.

    `problems` lists every problem found (one `file:line: what` string each); `str()` is one line.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass(frozen=True)
class Utterance:
    """One manifest row; `audio_path` is resolved to an absolute path."""

    utt_id: str
    speaker: str
    audio_path: Path
    duration_s: float
    sample_rate: int
    text: str


def _parse_row(fields: list[str], where: str, base: Path) -> Utterance:
    """One data row → Utterance; ManifestError naming `where` (file:line) if it is malformed."""
    if len(fields) != len(COLUMNS):
        raise ManifestError(f"{where}: expected {len(COLUMNS)} tab-separated columns, found {len(fields)}")
    utt_id, speaker, rel_path, duration, rate, text = fields
    if not utt_id.strip() or not rel_path.strip():
        raise ManifestError(f"{where}: empty utt_id or path")
    if "\0" in rel_path:
        raise ManifestError(f"{where}: path contains a NUL character")
    try:
        duration_s = float(duration)
        rate_f = float(rate)
    except ValueError:
        raise ManifestError(f"{where}: duration_s {duration!r} / sample_rate {rate!r} are not numbers") from None
    if not (math.isfinite(duration_s) and duration_s > 0 and math.isfinite(rate_f) and rate_f > 0):
        raise ManifestError(f"{where}: duration_s and sample_rate must be positive finite numbers")
    if rate_f != int(rate_f):
        raise ManifestError(f"{where}: sample_rate {rate!r} is not a whole number of Hz")
    audio = Path(rel_path)
    return Utterance(utt_id, speaker, audio if audio.is_absolute() else base / audio, duration_s, int(rate_f), text)


def _lines(path: Path) -> list[str]:
    """The file's lines without line endings; a line that is not UTF-8 raises ManifestError naming it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    lines = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(chunk.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")  # a byte-order mark some editors write
    return lines


def _is_file(path: Path) -> bool:
    """`path.is_file()`, False also for names the OS refuses (too long, …)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_manifest(path: str | os.PathLike, check_audio: bool = False) -> list[Utterance]:
    """Read and validate a manifest; every row is checked before anything is returned.

    Malformed rows, missing columns, duplicate ids and (with `check_audio`) missing audio files
    raise one ManifestError: the first problem as `file:line: what`, plus how many more there
    are (all of them are in its `problems` attribute).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    lines = _lines(path)
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(f"{path}:1: header must be {' '.join(COLUMNS)} (tab-separated)")
    utterances: list[Utterance] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            utt = _parse_row(line.split("\t"), where, base)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        if utt.utt_id in seen:
            problems.append(f"{where}: duplicate utt_id {utt.utt_id!r} (first on line {seen[utt.utt_id]})")
            continue
        seen[utt.utt_id] = number
        if check_audio and not _is_file(utt.audio_path):
            problems.append(f"{where}: audio file {utt.audio_path} does not exist")
            continue
        utterances.append(utt)
    if problems:
        more = f" (and {len(problems) - 1} more problems in this manifest)" if len(problems) > 1 else ""
        raise ManifestError(problems[0] + more, problems)
    return utterances


def write_manifest(path: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write atomically (temp file + rename); paths are stored relative to the manifest if possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    rows = ["\t".join(COLUMNS)]
    for utt in utterances:
        stored = path_from_folder(utt.audio_path, base)
        rows.append("\t".join([utt.utt_id, utt.speaker, stored, f"{utt.duration_s:.3f}", str(utt.sample_rate), utt.text]))
    atomic_write_text(path, "\n".join(rows) + "\n")
