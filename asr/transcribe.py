"""Inference: audio files → text with timed words, batched, on CPU or GPU.

    >>> from asr.transcribe import Transcriber
    >>> transcriber = Transcriber.from_pretrained()          # the bundled model
    >>> [result] = transcriber.transcribe_files(["examples/audio/an4_mfaa_enter_ninety_eight_twenty_eight.flac"])
    >>> result.text, result.words[0]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch

from asr.audio import SAMPLE_RATE, AudioError, stream_audio, to_model_rate
from asr.checkpoint import LoadedModel, load_model
from asr.decoding.align import WordSpan, align_words
from asr.decoding.greedy import greedy_decode
from asr.features import LogMel, pad_waves
from asr.model import phase_averaged_log_probs
from asr.segment import Piece, SegmentConfig, Segmenter, Span, stitch_words

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = PRETRAINED_DIR / "model.pt"


class ModelNotFoundError(FileNotFoundError):
    """The requested (or bundled) model file does not exist."""


@dataclass
class Transcript:
    """What `asr transcribe` reports for one file."""

    path: str
    text: str
    duration: float
    words: list[WordSpan] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(w).items()}
                          for w in self.words]}


class Decoder(Protocol):
    """Anything that turns a batch of log-probs into text."""

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """(B, T, V) log-probs and (B,) lengths → one string per utterance."""


class GreedyDecoder:
    """Argmax per frame, collapse repeats, drop blanks."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.tokenizer.decode(ids) for ids in greedy_decode(log_probs, lengths, self.tokenizer.blank_id)]


def clamp_words(words: list[WordSpan], duration: float) -> list[WordSpan]:
    """Keep word times inside the audio: the last model step (hop × subsampling) can reach past its end."""
    return [WordSpan(w.word, min(w.start, duration), min(w.end, duration), w.conf) for w in words]


def spread_words(text: str, duration: float) -> list[WordSpan]:
    """Words laid evenly over `duration` with confidence 0: the fallback when the text cannot be aligned."""
    words = text.split()
    step = duration / max(1, len(words))
    return [WordSpan(w, i * step, (i + 1) * step, 0.0) for i, w in enumerate(words)]


def band_cutoff(path: str | os.PathLike) -> float:
    """Nyquist frequency of a file recorded below 16 kHz (its missing band is masked), else 0."""
    try:
        rate = sf.info(str(path)).samplerate
    except Exception:
        return 0.0
    return rate / 2 if rate < SAMPLE_RATE else 0.0


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """`None` → the bundled model; raise ModelNotFoundError with a helpful message if absent."""
    path = Path(model) if model is not None else DEFAULT_MODEL
    if not path.is_file():
        hint = " (the bundled model is built by recipes/default/run.sh)" if model is None else ""
        raise ModelNotFoundError(f"{path}: model file not found{hint}")
    return path


class Transcriber:
    """A loaded acoustic model plus a decoder, with batching over files."""

    def __init__(self, loaded: LoadedModel, decoder: Decoder | None = None, device: str | None = None,
                 max_batch_seconds: float = 120.0, segment_config: SegmentConfig | None = None,
                 pool_seconds: float | None = None, phase_average: bool = False) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.frontend = LogMel(loaded.feature_config).to(self.device)
        self.decoder = decoder or GreedyDecoder(self.tokenizer)
        self.max_batch_seconds = max_batch_seconds
        self.segment_config = segment_config or SegmentConfig()
        self.pool_seconds = pool_seconds if pool_seconds is not None else 2 * max_batch_seconds
        self.phase_average = phase_average  # average the posteriors over the frame-stacking phases

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, **kwargs) -> "Transcriber":
        return cls(load_model(resolve_model_path(model)), **kwargs)

    @property
    def frame_shift_s(self) -> float:
        """Seconds per model output step (hop × subsampling)."""
        c = self.loaded.feature_config
        return c.hop_length / c.sample_rate * self.model.config.subsampling

    @torch.no_grad()
    def log_probs(self, waves: list[np.ndarray], cutoffs: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz waveforms → (B, T', V) log-probs and (B,) lengths, on CPU."""
        batch, lengths = pad_waves(waves)  # (B, N)
        cutoff = torch.tensor(cutoffs if cutoffs is not None else [0.0] * len(waves))
        feats, frames = self.frontend(batch.to(self.device), lengths.to(self.device), cutoff.to(self.device))
        normalised = self.model.cmvn(feats, frames)  # (B, T, D)
        if self.phase_average:
            log_probs, out_lengths = phase_averaged_log_probs(self.model, normalised, frames)
        else:
            log_probs, out_lengths = self.model(normalised, frames)
        return log_probs.float().cpu(), out_lengths.cpu()

    def decode_waves(self, waves: list[np.ndarray], cutoffs: list[float] | None = None,
                     with_words: bool | list[bool] = True) -> list[tuple[str, list[WordSpan]]]:
        """One batch of 16 kHz waveforms → (text, words relative to each wave) per wave."""
        log_probs, lengths = self.log_probs(waves, cutoffs)  # (B, T', V), (B,)
        wanted = with_words if isinstance(with_words, list) else [with_words] * len(waves)
        return self.decode_log_probs(log_probs, lengths, [len(wave) / SAMPLE_RATE for wave in waves], wanted)

    def decode_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor, durations: list[float],
                         wanted: list[bool]) -> list[tuple[str, list[WordSpan]]]:
        """(B, T', V) log-probs of B pieces lasting `durations` seconds → (text, words) per piece.

        Words (times relative to the piece) are found only where `wanted`; otherwise they are [].
        """
        if hasattr(self.decoder, "decode_words"):  # the decoder times its own words (hybrid Viterbi)
            decoded = self.decoder.decode_words(log_probs, lengths, self.tokenizer, self.frame_shift_s, wanted)
            return [(text, clamp_words(words, duration)) for (text, words), duration in zip(decoded, durations)]
        texts = self.decoder.decode(log_probs, lengths)
        results = []
        for i, text in enumerate(texts):
            words = []
            if wanted[i] and text:
                duration = durations[i]
                try:
                    words = align_words(log_probs[i, : lengths[i]], text, self.tokenizer, self.frame_shift_s)
                except ValueError:  # a decoder may output more labels than the CTC frames can hold
                    words = spread_words(text, duration)
                words = clamp_words(words, duration)
            results.append((text, words))
        return results

    def transcribe_waves(self, waves: list[np.ndarray], names: list[str], cutoffs: list[float] | None = None,
                         with_words: bool = True) -> list[Transcript]:
        """Decode one batch of waveforms as they are, unsegmented (names are reported as paths)."""
        decoded = self.decode_waves(waves, cutoffs, with_words)
        return [Transcript(name, text, len(wave) / SAMPLE_RATE, words)
                for name, wave, (text, words) in zip(names, waves, decoded)]

    def transcribe_files(self, paths: Sequence[str | os.PathLike], with_words: bool = True
                         ) -> Iterator[Transcript | AudioError]:
        """Yield a Transcript or an AudioError per path, in input order; bad files never stop the rest.

        Files are read lazily as streams and cut into pieces (`asr.segment`): a file up to
        `segment.whole_file_s` is one piece, a longer one is cut at pauses into pieces of at most
        `segment.max_chunk_s`, silence is skipped. Pieces of consecutive files are pooled, sorted by
        length and decoded in batches, so memory stays bounded by the pool (`pool_seconds` of audio)
        whatever the number and length of the files.
        """
        sources = ((str(path), band_cutoff(path), lambda path=path: stream_audio(path)) for path in paths)
        return self._transcribe_sources(sources, with_words)

    def transcribe(self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None,
                   with_words: bool = True) -> Transcript:
        """One file, or one in-memory signal, → its Transcript; a bad input raises AudioError.

        `audio` is a path, or an array of samples: (N,) mono or (N, C) channels, with its
        `sample_rate` (required for arrays; downmixed and resampled like a file). Long signals are
        cut into pieces at pauses exactly like files.
        """
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise ValueError(f"{audio}: sample_rate is for arrays only (a file's own rate is read from it)")
            [result] = self.transcribe_files([audio], with_words)
        else:
            name = "<array>"
            wave = to_model_rate(audio, sample_rate, name)  # (N,) float32 at 16 kHz
            assert sample_rate is not None  # to_model_rate refused a missing rate
            cutoff = sample_rate / 2 if sample_rate < SAMPLE_RATE else 0.0
            [result] = self._transcribe_sources([(name, cutoff, lambda: [wave])], with_words)
        if isinstance(result, AudioError):
            raise result
        return result

    def _transcribe_sources(self, sources: Iterable[tuple[str, float, Callable[[], Iterable[np.ndarray]]]],
                            with_words: bool) -> Iterator[Transcript | AudioError]:
        """(name, band cutoff, callable giving 16 kHz blocks) per input → its result, in input order."""
        jobs: dict[int, _FileJob] = {}
        pool: list[tuple[_FileJob, int, Piece]] = []
        pooled = 0  # samples in the pool
        next_out = 0
        for index, (name, cutoff, blocks) in enumerate(sources):
            job = jobs[index] = _FileJob(name, cutoff)
            try:
                for seq, piece in enumerate(self._pieces(blocks(), job)):
                    job.pending += 1
                    pool.append((job, seq, piece))
                    pooled += len(piece.wave)
                    if pooled >= self.pool_seconds * SAMPLE_RATE:
                        self._decode_pool(pool, with_words)
                        pool, pooled = [], 0
            except AudioError as exc:
                job.error = exc
                pool = [item for item in pool if item[0] is not job]
                pooled = sum(len(p.wave) for _, _, p in pool)
            job.reading = False
            while next_out in jobs and jobs[next_out].done:
                yield jobs.pop(next_out).result(with_words)
                next_out += 1
        self._decode_pool(pool, with_words)
        while next_out in jobs:
            yield jobs.pop(next_out).result(with_words)
            next_out += 1

    def _pieces(self, blocks: Iterable[np.ndarray], job: "_FileJob") -> Iterator[Piece]:
        """Stream 16 kHz blocks through the segmenter; the job learns the input's duration at the end."""
        segmenter = Segmenter(self.segment_config)
        for block in blocks:
            yield from segmenter.feed(block)
        job.duration = segmenter.total_samples / SAMPLE_RATE
        yield from segmenter.finish()

    def _decode_pool(self, pool: list[tuple["_FileJob", int, Piece]], with_words: bool) -> None:
        """Decode pooled pieces in length-sorted batches of at most max_batch_seconds padded audio."""
        pool = sorted(pool, key=lambda item: len(item[2].wave))
        for batch in self._batches(pool):
            decoded = self.decode_waves([p.wave for _, _, p in batch], [job.cutoff for job, _, _ in batch],
                                        [with_words or p.overlaps for _, _, p in batch])
            for (job, seq, piece), (text, words) in zip(batch, decoded):
                job.parts[seq] = (piece.span, text, words)  # the samples are not kept
                job.pending -= 1

    def _batches(self, items: list) -> Iterator[list]:
        """Group length-sorted (job, seq, piece) items so that padded batch duration stays under max_batch_seconds."""
        batch: list = []
        for item in items:
            longest = len(item[2].wave) / SAMPLE_RATE
            if batch and longest * (len(batch) + 1) > self.max_batch_seconds:
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch


@dataclass
class _FileJob:
    """One input file on its way through `transcribe_files`."""

    path: str
    cutoff: float = 0.0
    duration: float = 0.0
    reading: bool = True
    pending: int = 0  # pieces handed to the pool and not decoded yet
    error: AudioError | None = None
    parts: dict[int, tuple[Span, str, list[WordSpan]]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not self.reading and (self.error is not None or self.pending == 0)

    def result(self, with_words: bool) -> Transcript | AudioError:
        """The file's transcript: its pieces' words on one timeline (or its error)."""
        if self.error is not None:
            return self.error
        ordered = [self.parts[seq] for seq in sorted(self.parts)]
        words = stitch_words([(span, words) for span, _, words in ordered], self.duration) if with_words else []
        return Transcript(self.path, join_pieces(ordered, self.duration), self.duration, words)


def join_pieces(parts: list[tuple[Span, str, list[WordSpan]]], duration: float) -> str:
    """The text of a recording from its decoded pieces, in order: (span, text, words relative to the piece).

    A piece that overlaps a neighbour says only the words it keeps (so it needs its words); the
    others say their whole text.
    """
    texts = [" ".join(w.word for w in stitch_words([(span, words)], duration)) if span.overlaps else text
             for span, text, words in parts]
    return " ".join(t for t in texts if t)
