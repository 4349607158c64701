"""Manifest files: TSV with header `utt_id speaker path duration_s sample_rate text`.

`path` is relative to the manifest's folder (absolute paths are allowed). Every problem is
reported as `ManifestError` naming the file and the line number.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

COLUMNS: tuple[str, ...] = ("utt_id", "speaker", "path", "duration_s", "sample_rate", "text")


class ManifestError(ValueError):
    """A manifest is malformed; the message names the file and line."""


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
    if len(fields) != len(COLUMNS):
        raise ManifestError(f"{where}: expected {len(COLUMNS)} tab-separated columns, found {len(fields)}")
    utt_id, speaker, rel_path, duration, rate, text = fields
    if not utt_id or not rel_path:
        raise ManifestError(f"{where}: empty utt_id or path")
    try:
        duration_s = float(duration)
        sample_rate = int(float(rate))
    except ValueError:
        raise ManifestError(f"{where}: duration_s {duration!r} / sample_rate {rate!r} are not numbers") from None
    if not duration_s > 0 or sample_rate <= 0:
        raise ManifestError(f"{where}: duration_s and sample_rate must be positive")
    audio = Path(rel_path)
    return Utterance(utt_id, speaker, audio if audio.is_absolute() else base / audio, duration_s, sample_rate, text)


def read_manifest(path: str | os.PathLike, check_audio: bool = False) -> list[Utterance]:
    """Read and validate a manifest. Duplicate ids, bad rows and (optionally) missing audio raise."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(f"{path}:1: header must be {' '.join(COLUMNS)} (tab-separated)")
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        utt = _parse_row(line.split("\t"), where, base)
        if utt.utt_id in seen:
            raise ManifestError(f"{where}: duplicate utt_id {utt.utt_id!r} (first on line {seen[utt.utt_id]})")
        if check_audio and not utt.audio_path.is_file():
            raise ManifestError(f"{where}: audio file {utt.audio_path} does not exist")
        seen[utt.utt_id] = number
        utterances.append(utt)
    return utterances


def write_manifest(path: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write atomically (temp file + rename); paths are stored relative to the manifest if possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    rows = ["\t".join(COLUMNS)]
    for utt in utterances:
        audio = Path(utt.audio_path)
        try:
            stored = os.path.relpath(audio.resolve(), base)
        except ValueError:  # different drive on Windows
            stored = str(audio.resolve())
        rows.append("\t".join([utt.utt_id, utt.speaker, stored, f"{utt.duration_s:.3f}", str(utt.sample_rate), utt.text]))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
