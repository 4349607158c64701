"""Frame features of audio segments for the autoencoder: MFCC, log-mel, or acoustic-model states.

`SegmentFeaturizer.files(waves)` runs the front end (and, for `am`, the bundled BiLSTM-CTC model)
once over whole recordings; `slice_frames` cuts a segment's frames out of them, so an index of
thousands of overlapping candidate windows costs one acoustic-model pass per file. Features of an
isolated recording (a query) come from the same call on the recording alone.

Kinds (frame shift):
- `mfcc`   (10 ms): 13 cepstra of the 80-band log-mel + Δ + ΔΔ = 39 dims, mean-normalised per segment.
- `logmel` (10 ms): the 80-band log-mel, mean-normalised per segment.
- `am`     (30 ms): the acoustic model's last BiLSTM layer (2 × hidden size dims: 512 for the bundled model).
- `am+logmel` (30 ms): `am` and three stacked log-mel frames (3 × 80), the log-mel part mean-normalised
  per segment. The acoustic model's states carry its confusions (a speaker it misrecognises); the
  spectra keep the acoustic detail that tells such words apart.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.features import LogMel, dct_matrix, deltas, pad_waves
from asr.model import stack_frames

INPUT_KINDS = ("mfcc", "logmel", "am", "am+logmel")
N_CEPS = 13


@dataclass
class FileFeatures:
    """Features of one recording: `frames` (T, D) float32 and, for `am`, `log_probs` (T, V)."""

    frames: np.ndarray
    log_probs: np.ndarray | None
    frame_shift_s: float


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (identifies the acoustic model a search model was trained on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_deltas(feats: np.ndarray) -> np.ndarray:
    """(T, D) → (T, 3D): features, Δ and ΔΔ (`asr.features.deltas`, librosa's filters: width 5, or 3 for
    inputs under 5 frames; none under 3)."""
    width = 5 if feats.shape[0] >= 5 else 3 if feats.shape[0] >= 3 else 1
    if width == 1:
        return np.concatenate([feats, np.zeros_like(feats), np.zeros_like(feats)], axis=1)
    batch, lengths = torch.from_numpy(np.asarray(feats, dtype=np.float32))[None], torch.tensor([feats.shape[0]])
    d1, d2 = (deltas(batch, lengths, width, order)[0].numpy() for order in (1, 2))
    return np.concatenate([feats, d1, d2], axis=1).astype(np.float32)


class SegmentFeaturizer:
    """Turns 16 kHz waveforms into per-frame features of one kind (see the module docstring)."""

    def __init__(self, kind: str, transcriber=None) -> None:
        if kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {kind!r} (expected one of {', '.join(INPUT_KINDS)})")
        self.kind = kind
        self.transcriber = transcriber
        if transcriber is None:
            if kind.startswith("am"):
                raise ValueError(f"input kind {kind!r} needs the acoustic model (a Transcriber)")
            self.frontend = LogMel()
        else:
            self.frontend = transcriber.frontend
        self.dct = dct_matrix(80, N_CEPS)  # (80, 13), as librosa's mfcc

    @property
    def frame_shift_s(self) -> float:
        return self.transcriber.frame_shift_s if self.kind.startswith("am") else 0.01

    @property
    def dim(self) -> int:
        if self.kind.startswith("am"):
            extra = self.transcriber.model.config.subsampling * self.frontend.config.n_mels if self.kind != "am" else 0
            return int(self.transcriber.model.output_dim) + extra
        return 3 * N_CEPS if self.kind == "mfcc" else self.frontend.config.n_mels

    @torch.no_grad()
    def files(self, waves: list[np.ndarray], cutoffs: list[float] | None = None) -> list[FileFeatures]:
        """Features of whole recordings, batched: one FileFeatures per waveform (no normalisation)."""
        batch, lengths = pad_waves(waves)  # (B, N)
        cutoff = torch.tensor(cutoffs if cutoffs is not None else [0.0] * len(waves), dtype=torch.float32)
        feats, frames = self.frontend(batch, lengths, cutoff)  # (B, T, 80)
        if self.kind.startswith("am"):
            model = self.transcriber.model
            hidden, steps = model.encode(model.cmvn(feats, frames), frames)  # (B, T', 2 × hidden)
            log_probs = model.output(hidden).log_softmax(-1)  # (B, T', V)
            if self.kind == "am+logmel":
                stacked, _ = stack_frames(feats, frames, model.config.subsampling)  # (B, T', 3·80)
                hidden = torch.cat([hidden, stacked[:, : hidden.shape[1]]], dim=-1)  # (B, T', 2 × hidden + 240)
            return [FileFeatures(hidden[i, : steps[i]].float().numpy(), log_probs[i, : steps[i]].float().numpy(),
                                 self.frame_shift_s) for i in range(len(waves))]
        out = []
        for i in range(len(waves)):
            logmel = feats[i, : frames[i]]  # (T, 80)
            if self.kind == "mfcc":
                out.append(FileFeatures(add_deltas((logmel @ self.dct).numpy()), None, 0.01))
            else:
                out.append(FileFeatures(logmel.numpy().copy(), None, 0.01))
        return out

    def finish(self, frames: np.ndarray) -> np.ndarray:
        """Per-segment normalisation of sliced frames: mean removal for spectral kinds."""
        if self.kind == "am":
            return frames
        if self.kind == "am+logmel":
            spectral = self.transcriber.model.output_dim
            return np.concatenate([frames[:, :spectral], frames[:, spectral:] - frames[:, spectral:].mean(0)], axis=1)
        return frames - frames.mean(axis=0, keepdims=True)

    def slice_frames(self, feats: FileFeatures, start: float, end: float) -> np.ndarray:
        """Frames of `[start, end)` seconds of a recording (at least one frame), normalised."""
        return self.finish(feats.frames[frame_range(start, end, feats.frame_shift_s, len(feats.frames))])

    def segments(self, waves: list[np.ndarray], cutoffs: list[float] | None = None,
                 batch_size: int = 64) -> list[np.ndarray]:
        """Features of isolated recordings (queries, cut-out segments), batched by length."""
        order = np.argsort([len(w) for w in waves], kind="stable")
        out: list[np.ndarray | None] = [None] * len(waves)
        for first in range(0, len(order), batch_size):
            chunk = order[first: first + batch_size]
            feats = self.files([waves[i] for i in chunk], [cutoffs[i] for i in chunk] if cutoffs else None)
            for i, f in zip(chunk, feats):
                out[i] = self.finish(f.frames)
        return out  # type: ignore[return-value]


def frame_range(start: float, end: float, shift: float, total: int) -> slice:
    """Frames whose centres fall in `[start, end)` seconds, clipped to `total`; never empty."""
    first = min(max(0, int(round(start / shift))), max(0, total - 1))
    last = min(total, max(first + 1, int(round(end / shift))))
    return slice(first, last)


def load_featurizer(kind: str, am_path: str | Path | None = None) -> SegmentFeaturizer:
    """A featurizer of `kind`; loads the acoustic model (bundled unless `am_path`) on CPU."""
    from asr.transcribe import Transcriber

    return SegmentFeaturizer(kind, Transcriber.from_pretrained(am_path, device="cpu"))
