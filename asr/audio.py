"""Audio loading: any libsndfile-readable file → float32 mono at 16 kHz.

Constants of the front end live here so every module agrees on them. `stream_audio` reads a
file in bounded blocks (long recordings never sit in memory whole); `load_audio` is the same
stream joined into one array, so both give identical samples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000  # outside this a header is corrupt, not exotic
BLOCK_SECONDS = 10.0  # stream_audio reads this much audio per block ...
BLOCK_MAX_VALUES = 1 << 21  # ... but never more than this many samples over all channels (8 MiB float32)


class AudioError(ValueError):
    """A file could not be turned into audio; the message names the file and the problem."""


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality band-limited resampling (soxr HQ) of a 1-D float32 signal."""
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    import soxr  # installed with librosa

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (libsndfile errors can span several)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _open(path: Path) -> sf.SoundFile:
    """Open `path` for reading after the checks that give a clearer message than libsndfile."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        handle = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{path}: not a readable audio file ({_reason(exc)})") from None
    if not MIN_SAMPLE_RATE <= handle.samplerate <= MAX_SAMPLE_RATE or handle.channels < 1:
        handle.close()
        raise AudioError(f"{path}: implausible header ({handle.samplerate} Hz, {handle.channels} channels)")
    return handle


def native_sample_rate(path: str | os.PathLike) -> int:
    """The file's own sample rate (AudioError if it cannot be opened)."""
    with _open(Path(path)) as handle:
        return int(handle.samplerate)


def audio_duration(path: str | os.PathLike) -> float:
    """Seconds of audio in the file, from its header (AudioError if it cannot be opened)."""
    with _open(Path(path)) as handle:
        return handle.frames / handle.samplerate


def stream_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield `path` as consecutive float32 mono blocks at `sample_rate`, each (n_i,), n_i ≥ 1.

    Memory stays bounded whatever the file's length: one block of the file plus the resampler's
    state. Channels are averaged; other rates are resampled with soxr HQ (the same samples as
    one-shot `soxr.resample`). Raises AudioError naming the file for a missing, empty,
    unreadable, truncated or corrupt file, for NaN/inf samples and for a file without samples;
    blocks already yielded stay valid, so callers decide what a late error means.
    """
    path = Path(path)
    with _open(path) as handle:
        orig_sr, channels = int(handle.samplerate), int(handle.channels)
        frames_per_block = max(1, min(int(block_seconds * orig_sr), BLOCK_MAX_VALUES // channels))
        resampler = None
        if orig_sr != sample_rate:
            import soxr  # installed with librosa

            resampler = soxr.ResampleStream(orig_sr, sample_rate, 1, dtype="float32", quality="HQ")
        position = produced = 0  # frames read so far (file rate), samples yielded (target rate)
        while True:
            try:
                data = handle.read(frames_per_block, dtype="float32", always_2d=True)  # (n, C)
            except Exception as exc:
                raise AudioError(f"{path}: truncated or corrupt ({_reason(exc)}); "
                                 f"{position / orig_sr:.2f} s decoded before the error") from None
            last = len(data) < frames_per_block
            if len(data):
                mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]  # (n,)
                finite = np.isfinite(mono)
                if not finite.all():
                    at = (position + int(np.argmin(finite))) / orig_sr
                    raise AudioError(f"{path}: contains NaN or infinite samples (first at {at:.2f} s)")
                position += len(data)
            else:
                mono = np.zeros(0, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                produced += len(mono)
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
        if position == 0:
            raise AudioError(f"{path}: contains no audio samples")
        if produced == 0:
            raise AudioError(f"{path}: too short ({position} samples at {orig_sr} Hz, none left at {sample_rate} Hz)")


def to_model_rate(samples: np.ndarray, sample_rate: int | None, name: str = "<array>",
                  target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """In-memory samples → float32 mono at `target_sr`, shape (N,), N ≥ 1, as `load_audio` gives for a file.

    `samples` is (N,) or (N, C) as soundfile returns them; integer samples are scaled to [-1, 1).
    Raises AudioError naming `name` for a missing rate, a wrong shape, no samples or NaN/inf.
    """
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: needs its sample rate, an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz "
                         f"(got {sample_rate!r})")
    array = np.asarray(samples)
    if array.ndim not in (1, 2) or not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
        raise AudioError(f"{name}: expected real samples of shape (N,) or (N, channels), got {array.dtype} "
                         f"{array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    mono = array.astype(np.float32, copy=False) if array.ndim == 1 else array.mean(axis=1, dtype=np.float32)
    if mono.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(mono).all():
        at = int(np.argmin(np.isfinite(mono))) / sample_rate
        raise AudioError(f"{name}: contains NaN or infinite samples (first at {at:.2f} s)")
    wave = resample(mono, int(sample_rate), target_sr)
    if wave.size == 0:
        raise AudioError(f"{name}: too short ({mono.size} samples at {sample_rate} Hz, none left at {target_sr} Hz)")
    return np.ascontiguousarray(wave)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` into a float32 mono signal at `sample_rate`, shape (N,), N ≥ 1.

    Integer formats give values in [-1, 1); float files are passed through unscaled.
    Multi-channel audio is averaged; other rates are resampled with soxr.
    Raises AudioError (naming the file) for missing, empty, unreadable, non-finite or sample-less input.
    """
    blocks = list(stream_audio(path, sample_rate))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


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
