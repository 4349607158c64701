"""Audio loading: any libsndfile-readable file → float32 mono at 16 kHz.

Constants of the front end live here so every module agrees on them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
N_FFT = 512
WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
N_MELS = 80

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".sph", ".nist", ".aiff", ".aif", ".au", ".w64", ".caf"}
)


class AudioError(ValueError):
    """A file could not be turned into audio; the message names the file and the problem."""


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality band-limited resampling (soxr HQ) of a 1-D float32 signal."""
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    import soxr  # installed with librosa

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` into a float32 mono signal at `sample_rate`, shape (N,), values in [-1, 1].

    Multi-channel audio is averaged; other rates are resampled with soxr.
    Raises AudioError (naming the file) for missing, empty, unreadable, non-finite or silent-length input.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        data, orig_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (N,)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(mono, int(orig_sr), sample_rate)


def find_audio_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand directories (recursively, sorted) into audio files; plain paths are kept as given.

    A directory without any audio file raises AudioError naming it.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            inside = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not inside:
                raise AudioError(f"{item}: directory contains no audio files")
            found.extend(inside)
        else:
            found.append(item)
    return found
