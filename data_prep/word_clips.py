"""Cut chosen words out of aligned training sentences: isolated-word examples from many speakers.

    python -m data_prep.word_clips --manifest EXP/data/an4/train.tsv --model EXP/an4/train/avg.pt \\
        --out-dir EXP/data/an4_digit_words [--words ZERO OH ONE ... NINE] [--sample-rate 8000]

writes `<out-dir>/clips/*.wav` and `<out-dir>/train.tsv` (one row per clip, the word as its text, the
sentence's speaker). The digit corpus (FSDD) has 3 training speakers, each word alone in a trimmed
8 kHz clip; AN4's 60 training speakers say the same digits inside sentences at 16 kHz. Cut out and
band-limited the same way, their digits become isolated 8 kHz digits from 20 times as many voices.

Each sentence is force-aligned (CTC Viterbi, `asr.decoding.align`) with the given model's posteriors.
CTC puts a word's characters on a few frames inside it, so a clip runs from halfway between the
previous word's last character and this word's first one to halfway between this word's last
character and the next word's first one; a word at the start or end of a sentence gets `edge_s`
beyond its characters. Sentences that do not align are skipped and counted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio, resample
from asr.decoding.align import WordSpan, align_words
from asr.fileio import atomic_output
from asr.manifest import Utterance, read_manifest, write_manifest
from asr.text import normalize_text
from data_prep.common import DataPrepError, run_cli

DIGIT_WORDS = ("ZERO", "OH", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")

log = logging.getLogger(__name__)


def clip_bounds(words: Sequence[WordSpan], index: int, duration_s: float, edge_s: float = 0.15) -> tuple[float, float]:
    """(start, end) in seconds of word `index`: halfway to its neighbours' aligned characters, or
    `edge_s` beyond its own at the sentence's ends (within [0, duration_s])."""
    word = words[index]
    start = (words[index - 1].end + word.start) / 2 if index > 0 else word.start - edge_s
    end = (word.end + words[index + 1].start) / 2 if index + 1 < len(words) else word.end + edge_s
    return max(0.0, start), min(duration_s, end)


def cut_word_clips(manifest: str | Path, model: str | Path, out_dir: str | Path, words: Sequence[str] = DIGIT_WORDS,
                   sample_rate: int = 8000, edge_s: float = 0.15, batch_size: int = 16) -> list[Utterance]:
    """Align every sentence of `manifest` that holds one of `words`; write each such word as a clip at
    `sample_rate` under `out_dir/clips` and the clips' manifest as `out_dir/train.tsv`. Returns the clips."""
    from asr.checkpoint import CheckpointError
    from asr.transcribe import Transcriber

    wanted = {normalize_text(w) for w in words}
    sentences = [u for u in read_manifest(manifest) if wanted & set(normalize_text(u.text).split())]
    if not sentences:
        raise DataPrepError(f"{manifest}: no sentence holds any of {', '.join(sorted(wanted))}")
    try:
        transcriber = Transcriber.from_pretrained(model, device="cpu")
    except CheckpointError as exc:
        raise DataPrepError(str(exc)) from None
    clips_dir = Path(out_dir) / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips: list[Utterance] = []
    unaligned = 0
    for first in range(0, len(sentences), batch_size):
        batch = sentences[first:first + batch_size]
        waves = [load_audio(u.audio_path) for u in batch]  # (N,) at 16 kHz each
        cutoffs = [u.sample_rate / 2 if u.sample_rate < SAMPLE_RATE else 0.0 for u in batch]
        log_probs, lengths = transcriber.log_probs(waves, cutoffs)  # (B, T', V), (B,)
        for utt, wave, lp, length in zip(batch, waves, log_probs, lengths):
            try:
                spans = align_words(lp[: int(length)], utt.text, transcriber.tokenizer, transcriber.frame_shift_s)
            except ValueError:
                unaligned += 1
                continue
            for index, span in enumerate(spans):
                if span.word in wanted:
                    clips.append(_write_clip(utt, wave, spans, index, clips_dir, sample_rate, edge_s))
    log.info("%d clips of %d words from %d sentences (%d did not align) -> %s",
             len(clips), len(wanted), len(sentences), unaligned, out_dir)
    write_manifest(Path(out_dir) / "train.tsv", clips)
    return clips


def _write_clip(utt: Utterance, wave: np.ndarray, spans: Sequence[WordSpan], index: int, folder: Path,
                sample_rate: int, edge_s: float) -> Utterance:
    """Cut word `index` of the 16 kHz `wave`, resample it, write it atomically as 16-bit WAV, describe it."""
    start, end = clip_bounds(spans, index, len(wave) / SAMPLE_RATE, edge_s)
    piece = wave[round(start * SAMPLE_RATE): round(end * SAMPLE_RATE)]  # (n,): neighbours meet without overlap
    if sample_rate != SAMPLE_RATE:
        piece = resample(piece, SAMPLE_RATE, sample_rate)
    word = spans[index].word
    path = folder / f"{utt.utt_id}_{index:02d}_{word.lower()}.wav"
    with atomic_output(path) as tmp:
        sf.write(tmp, np.clip(piece, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Utterance(path.stem, utt.speaker, path, round(len(piece) / sample_rate, 3), sample_rate, word)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="training sentences (TSV manifest)")
    parser.add_argument("--model", required=True, help="acoustic model whose posteriors align the sentences")
    parser.add_argument("--out-dir", required=True, help="writes clips/ and train.tsv here")
    parser.add_argument("--words", nargs="+", default=list(DIGIT_WORDS), help="words to cut (default: the digits)")
    parser.add_argument("--sample-rate", type=int, default=8000, help="clips' sample rate (default 8000, as FSDD)")
    parser.add_argument("--edge", type=float, default=0.15, help="seconds kept beyond a sentence's first/last word")

    def body(args: argparse.Namespace) -> None:
        cut_word_clips(args.manifest, args.model, args.out_dir, args.words, args.sample_rate, args.edge)

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
