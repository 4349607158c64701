"""Word segments: where each word of a transcribed corpus is spoken.

A segment manifest is a TSV with the header `source word start end speaker`; `source` is an audio
file relative to the TSV's folder (absolute paths are allowed), times are in seconds. Segments
come from CTC forced alignment of each utterance's transcript with the bundled acoustic model
(:func:`asr.decoding.align.align_words`), or, for isolated-word recordings such as the spoken
digits, from the whole file.

    python -m asr.search.segments --manifest exp/default/data/an4/train.tsv -o exp/search/segments/an4_train.tsv
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from asr.fileio import atomic_write_text, path_from_folder
from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.manifest import ManifestError, Utterance, read_manifest
from asr.text import normalize_text

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("source", "word", "start", "end", "speaker")
DEFAULT_PAD_S = 0.06  # CTC spikes sit inside a word; widen aligned spans a little on both sides
TRIM_TOP_DB = 35.0  # frames this far below the utterance's loudest frame count as silence
MIN_SEGMENT_S = 0.1


@dataclass(frozen=True)
class Segment:
    """One spoken word: `source` audio file, `[start, end)` in seconds."""

    source: Path
    word: str
    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_segments(path: str | os.PathLike) -> list[Segment]:
    """Read a segment manifest; a malformed line raises ManifestError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such segment file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(f"{path}:1: header must be {' '.join(COLUMNS)} (tab-separated)")
    base = path.resolve().parent
    segments = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ManifestError(f"{path}:{number}: expected {len(COLUMNS)} tab-separated columns, found {len(fields)}")
        source, word, start, end, speaker = fields
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise ManifestError(f"{path}:{number}: start {start!r} / end {end!r} are not numbers") from None
        if not 0 <= t0 < t1 or not word:
            raise ManifestError(f"{path}:{number}: need a word and 0 <= start < end")
        audio = Path(source)
        segments.append(Segment(audio if audio.is_absolute() else base / audio, word, t0, t1, speaker))
    return segments


def write_segments(path: str | os.PathLike, segments: Sequence[Segment]) -> None:
    """Write atomically (temp file + rename); sources are stored relative to the file when possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    rows = ["\t".join(COLUMNS)]
    for seg in segments:
        stored = path_from_folder(seg.source, base)
        rows.append(f"{stored}\t{seg.word}\t{seg.start:.3f}\t{seg.end:.3f}\t{seg.speaker}")
    atomic_write_text(path, "\n".join(rows) + "\n")


def frame_db(wave: np.ndarray, hop: int = 160) -> np.ndarray:
    """(N,) samples → (N // hop + 1,) frame energies in dB relative to the loudest frame (≤ 0)."""
    rms = librosa.feature.rms(y=wave, frame_length=2 * hop, hop_length=hop, center=True)[0]  # (F,)
    return librosa.amplitude_to_db(rms, ref=np.max, top_db=None)


def trim_span(db: np.ndarray, start: float, end: float, top_db: float = TRIM_TOP_DB, hop_s: float = 0.01,
              min_s: float = MIN_SEGMENT_S) -> tuple[float, float]:
    """Shrink `[start, end)` to its frames louder than `-top_db` (dB re. the utterance's peak).

    CTC models often emit an utterance's first character on its very first frame, so the first
    aligned word can swallow the leading silence; trimming by energy fixes such spans. A span
    that would become shorter than `min_s` is returned unchanged.
    """
    first, last = int(start / hop_s), min(len(db), int(np.ceil(end / hop_s)))
    loud = np.flatnonzero(db[first:last] > -top_db)
    if loud.size == 0:
        return start, end
    new_start, new_end = max(start, (first + loud[0]) * hop_s), min(end, (first + loud[-1] + 1) * hop_s)
    return (new_start, new_end) if new_end - new_start >= min_s else (start, end)


def align_utterances(utterances: Sequence[Utterance], transcriber, pad_s: float = DEFAULT_PAD_S,
                     whole_single_words: bool = True, batch_size: int = 16) -> Iterator[Segment]:
    """Word segments of every utterance, in manifest order.

    Single-word utterances become whole-file segments (minus leading and trailing silence) when
    `whole_single_words` (the digits are recorded one word per file); the others are force-aligned to their transcript and
    each aligned word is widened by `pad_s` on both sides (clipped to the file). Utterances that
    cannot be read or aligned are logged and skipped.
    """
    from asr.decoding.align import align_words
    from asr.transcribe import band_cutoff

    for first in range(0, len(utterances), batch_size):
        batch: list[tuple[Utterance, np.ndarray, float]] = []
        for utt in utterances[first: first + batch_size]:
            try:
                batch.append((utt, load_audio(utt.audio_path), band_cutoff(utt.audio_path)))
            except AudioError as exc:
                log.warning("skipped: %s", exc)
        to_align = [(u, w, c) for u, w, c in batch
                    if not (whole_single_words and len(normalize_text(u.text).split()) == 1)]
        log_probs, lengths = (transcriber.log_probs([w for _, w, _ in to_align], [c for _, _, c in to_align])
                              if to_align else (None, None))
        aligned = {id(u): i for i, (u, _, _) in enumerate(to_align)}
        for utt, wave, _ in batch:
            duration = len(wave) / SAMPLE_RATE
            db = frame_db(wave)
            if id(utt) not in aligned:
                if normalize_text(utt.text):
                    start, end = trim_span(db, 0.0, duration)
                    yield Segment(utt.audio_path, normalize_text(utt.text), round(start, 3), round(end, 3), utt.speaker)
                continue
            i = aligned[id(utt)]
            assert log_probs is not None and lengths is not None  # `to_align` holds `utt`, so it is not empty
            try:
                words = align_words(log_probs[i, : lengths[i]], utt.text, transcriber.tokenizer,
                                    transcriber.frame_shift_s)
            except ValueError as exc:
                log.warning("skipped %s: cannot align (%s)", utt.audio_path, exc)
                continue
            for word in words:
                start, end = max(0.0, word.start - pad_s), min(duration, word.end + pad_s)
                start, end = trim_span(db, start, end)
                if end > start:
                    yield Segment(utt.audio_path, word.word, round(start, 3), round(end, 3), utt.speaker)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m asr.search.segments`: word segments of one or more manifests → one segment TSV."""
    parser = argparse.ArgumentParser(prog="python -m asr.search.segments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", nargs="+", required=True, help="utterance manifests (TSV)")
    parser.add_argument("-o", "--out", required=True, help="segment TSV to write")
    parser.add_argument("--model", help="acoustic model for the alignment (default: the bundled model)")
    parser.add_argument("--pad", type=float, default=DEFAULT_PAD_S, help="seconds added on both sides of a word")
    parser.add_argument("--align-single-words", action="store_true",
                        help="align one-word utterances too instead of taking the whole file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from asr.transcribe import Transcriber

    try:
        transcriber = Transcriber.from_pretrained(args.model, device="cpu")
        segments: list[Segment] = []
        for manifest in args.manifest:
            utterances = read_manifest(manifest, check_audio=True)
            found = list(align_utterances(utterances, transcriber, args.pad, not args.align_single_words))
            log.info("%s: %d utterances → %d word segments", manifest, len(utterances), len(found))
            segments += found
    except (ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"asr: error: {exc}", file=sys.stderr)
        return 1
    write_segments(args.out, segments)
    log.info("wrote %s (%d segments, %d words)", args.out, len(segments), len({s.word for s in segments}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
