"""Training-time augmentation: SpecAugment, speed perturbation, gain, band-limiting, silence padding."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, resample


@dataclass
class AugmentConfig:
    """Augmentation settings (all off when `enabled` is False)."""

    enabled: bool = True
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    bandlimit_prob: float = 0.3  # chance a 16 kHz utterance is low-passed like 8 kHz audio
    bandlimit_hz: list[float] = field(default_factory=lambda: [3400.0, 4000.0])
    freq_masks: int = 2
    freq_mask_width: int = 15
    time_masks: int = 2
    time_mask_fraction: float = 0.05  # each time mask covers at most this fraction of the utterance
    gain_db: float = 6.0  # random gain ± this many dB
    min_gain_db: float | None = None  # lowest random gain in dB (default −gain_db): quiet recordings, no clipping
    # Chance an utterance gets quiet noise before and after it (off by default). Batching counts the
    # manifest durations, so a padded batch can hold up to 2 × pad_max_s more audio per utterance.
    pad_prob: float = 0.0
    pad_max_s: float = 0.5  # each side's padding is uniform in [0, pad_max_s] seconds
    pad_noise_db: list[float] = field(default_factory=lambda: [-55.0, -35.0])  # its level vs the utterance's RMS

    def to_dict(self) -> dict:
        return asdict(self)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `wave` `factor` times faster (pitch changes too, like Kaldi/ESPnet speed perturbation)."""
    if factor == 1.0:
        return wave
    return resample(wave, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def spec_augment(
    feats: torch.Tensor, lengths: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero random frequency bands and time spans of normalised features (B, T, D) → (B, T, D)."""
    batch, frames, dim = feats.shape
    out = feats.clone()
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    bins = torch.arange(dim)[None, :]
    for _ in range(config.freq_masks):
        width = (rand(batch) * (config.freq_mask_width + 1)).long()  # (B,)
        start = (rand(batch) * (dim - width).clamp_min(1)).long()
        mask = (bins >= start[:, None]) & (bins < (start + width)[:, None])  # (B, D)
        out = out.masked_fill(mask[:, None, :].to(out.device), 0.0)
    steps = torch.arange(frames)[None, :]
    max_width = (lengths.cpu().float() * config.time_mask_fraction).long()
    for _ in range(config.time_masks):
        width = (rand(batch) * (max_width + 1)).long()
        start = (rand(batch) * (lengths.cpu() - width).clamp_min(1)).long()
        mask = (steps >= start[:, None]) & (steps < (start + width)[:, None])  # (B, T)
        out = out.masked_fill(mask[:, :, None].to(out.device), 0.0)
    return out


def gain_range(max_db: float, min_db: float | None = None) -> tuple[float, float] | None:
    """The random gain's range in dB, (min_db, max_db) with min_db defaulting to −max_db; None = no gain."""
    low = -max_db if min_db is None else min_db
    return None if max_db <= 0 and low >= 0 else (low, max_db)


def random_gain(wave: np.ndarray, rng: np.random.Generator, max_db: float, min_db: float | None = None) -> np.ndarray:
    """Scale by a random gain drawn uniformly from [min_db, max_db] dB (min_db defaults to −max_db),
    clipped to [-1, 1]."""
    bounds = gain_range(max_db, min_db)
    if bounds is None:
        return wave
    gain = 10.0 ** (rng.uniform(*bounds) / 20.0)
    return np.clip(wave * gain, -1.0, 1.0).astype(np.float32)


def surround_with_noise(wave: np.ndarray, before: int, after: int, noise_db: float,
                        rng: np.random.Generator) -> np.ndarray:
    """`before` and `after` samples of white noise around `wave` (N,) → (before + N + after,) float32.

    The noise's RMS is the wave's plus `noise_db` dB (−inf: digital silence).
    """
    level = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    noise_rms = level * 10.0 ** (noise_db / 20.0)
    noise = (rng.standard_normal(before + after) * noise_rms).astype(np.float32)  # (before + after,)
    return np.concatenate([noise[:before], wave.astype(np.float32, copy=False), noise[before:]])


def pad_with_noise(wave: np.ndarray, rng: np.random.Generator, max_seconds: float,
                   noise_db: tuple[float, float] | list[float]) -> np.ndarray:
    """Add 0…`max_seconds` of white noise before and after a 16 kHz `wave` (N,) → (N + pads,).

    Tightly trimmed clips (the digit corpus starts and stops on the word) teach a model that a
    word fills its whole input; a user's recording has room noise around it. The noise sits at the
    utterance's RMS level plus a gain drawn from `noise_db` (dB, e.g. −55…−35): a quiet room.
    """
    before, after = (int(rng.uniform(0.0, max_seconds) * SAMPLE_RATE) for _ in range(2))
    return surround_with_noise(wave, before, after, rng.uniform(*noise_db), rng)
