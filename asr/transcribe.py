"""Inference: audio files → text with timed words, batched, on CPU or GPU.

    >>> from asr.transcribe import Transcriber
    >>> transcriber = Transcriber.from_pretrained()          # the bundled model
    >>> [result] = transcriber.transcribe_files(["examples/audio/an4_digits.flac"])
    >>> result.text, result.words[0]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch

from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.checkpoint import LoadedModel, load_model
from asr.decoding.align import WordSpan, align_words
from asr.decoding.greedy import greedy_decode
from asr.features import LogMel, pad_waves

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
                 max_batch_seconds: float = 120.0) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.frontend = LogMel(loaded.feature_config).to(self.device)
        self.decoder = decoder or GreedyDecoder(self.tokenizer)
        self.max_batch_seconds = max_batch_seconds

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
        log_probs, out_lengths = self.model(self.model.cmvn(feats, frames), frames)
        return log_probs.float().cpu(), out_lengths.cpu()

    def transcribe_waves(self, waves: list[np.ndarray], names: list[str], cutoffs: list[float] | None = None,
                         with_words: bool = True) -> list[Transcript]:
        """Decode one batch of waveforms (names are reported as paths)."""
        log_probs, lengths = self.log_probs(waves, cutoffs)
        texts = self.decoder.decode(log_probs, lengths)
        results = []
        for i, text in enumerate(texts):
            duration = len(waves[i]) / SAMPLE_RATE
            words = []
            if with_words and text:
                words = align_words(log_probs[i, : lengths[i]], text, self.tokenizer, self.frame_shift_s)
                words = clamp_words(words, duration)
            results.append(Transcript(names[i], text, duration, words))
        return results

    def transcribe_files(self, paths: list[str | os.PathLike], with_words: bool = True
                         ) -> Iterator[Transcript | AudioError]:
        """Yield a Transcript or an AudioError per path, in input order; bad files never stop the rest."""
        loaded: list[tuple[int, np.ndarray, float]] = []
        outcome: dict[int, Transcript | AudioError] = {}
        for index, path in enumerate(paths):
            try:
                loaded.append((index, load_audio(path), band_cutoff(path)))
            except AudioError as exc:
                outcome[index] = exc
        loaded.sort(key=lambda item: len(item[1]))
        for batch in self._batches(loaded):
            results = self.transcribe_waves([w for _, w, _ in batch], [str(paths[i]) for i, _, _ in batch],
                                            [c for _, _, c in batch], with_words)
            outcome.update({i: r for (i, _, _), r in zip(batch, results)})
        for index in range(len(paths)):
            yield outcome[index]

    def _batches(self, items: list[tuple[int, np.ndarray, float]]) -> Iterator[list[tuple[int, np.ndarray, float]]]:
        """Group length-sorted items so that padded batch duration stays under max_batch_seconds."""
        batch: list[tuple[int, np.ndarray, float]] = []
        for item in items:
            longest = len(item[1]) / SAMPLE_RATE
            if batch and longest * (len(batch) + 1) > self.max_batch_seconds:
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch
