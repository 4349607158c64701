"""Log-mel and MFCC features in torch (batched, CPU or GPU), deltas, and global CMVN (optionally after
per-utterance mean removal).

`LogMel` turns padded waveforms (B, N) at 16 kHz into (B, T, 80) natural-log mel energies with
25 ms Hann windows every 10 ms, matching `librosa.feature.melspectrogram(center=True,
pad_mode="constant", htk=False, norm="slaney")` followed by `log(max(x, floor))`. `MFCC` is the
orthonormal DCT-II of those (librosa.feature.mfcc's transform; librosa takes it of dB values, i.e.
10/ln 10 times ours), and `deltas` the Savitzky-Golay derivatives of librosa.feature.delta
(mode="nearest"), each utterance padded by its own edge frames. The acoustic models read log-mel;
MFCC + deltas are the classic features of the DTW baseline and the search models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import overload

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from asr.audio import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH

LOG_FLOOR = 1e-6


@dataclass
class FeatureConfig:
    """Front-end settings stored in every checkpoint."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    win_length: int = WIN_LENGTH
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = 20.0
    f_max: float = 7600.0

    def to_dict(self) -> dict:
        return asdict(self)


def hz_to_slaney_mel(hz: npt.ArrayLike) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def slaney_mel_to_hz(mels: npt.ArrayLike) -> np.ndarray:
    """Inverse of `hz_to_slaney_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), (200.0 / 3) * mels)


def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft/2 + 1) float32 triangular filters, area-normalised ("slaney"): the values of
    `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` computed here, so that building the front end
    does not import librosa's signal-processing stack (about a second of every command's start)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)  # (F,)
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(f_min), hz_to_slaney_mel(f_max), n_mels + 2))  # (M+2,)
    widths = np.diff(edges)  # (M+1,)
    ramps = edges[:, None] - fft_freqs[None, :]  # (M+2, F)
    rising = -ramps[:-2] / widths[:-1, None]  # (M, F)
    falling = ramps[2:] / widths[1:, None]  # (M, F)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@overload
def num_frames(num_samples: torch.Tensor, hop_length: int = HOP_LENGTH) -> torch.Tensor: ...


@overload
def num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int: ...


def num_frames(num_samples: torch.Tensor | int, hop_length: int = HOP_LENGTH) -> torch.Tensor | int:
    """Frames produced by a centred STFT for `num_samples` samples."""
    return num_samples // hop_length + 1


class LogMel(nn.Module):
    """Batched log-mel filterbank: (B, N) waveforms → (B, T, n_mels) features and (B,) frame counts."""

    mel_basis: torch.Tensor  # buffers registered in __init__
    window: torch.Tensor
    bin_freqs: torch.Tensor

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureConfig()
        c = self.config
        mel = slaney_mel_filters(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max)  # (M, F)
        self.register_buffer("mel_basis", torch.from_numpy(mel.T.astype(np.float32)), persistent=False)  # (F, M)
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=True), persistent=False)
        freqs = torch.linspace(0, c.sample_rate / 2, c.n_fft // 2 + 1)
        self.register_buffer("bin_freqs", freqs, persistent=False)  # (F,)

    def power_spectrum(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, N) → (B, T, F) power spectrum, F = n_fft/2 + 1."""
        c = self.config
        spec = torch.stft(
            waves, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )  # (B, F, T)
        return spec.abs().pow(2).transpose(1, 2)

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor, cutoff_hz: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """waves (B, N) float, lengths (B,) samples → feats (B, T, M), frame lengths (B,).

        `cutoff_hz` (B,) optionally zeroes spectrum bins above a per-utterance frequency
        (band-limit augmentation: makes 16 kHz speech look like telephone or 8 kHz audio);
        a cutoff of 0 (or less) means full band, as in `Batch.cutoff_hz`.
        Frames past each utterance's length are set to 0.
        """
        power = self.power_spectrum(waves.float())  # (B, T, F)
        if cutoff_hz is not None:
            cutoff = cutoff_hz[:, None].to(power)  # (B, 1)
            keep = (self.bin_freqs[None, :] <= cutoff) | (cutoff <= 0)  # (B, F)
            power = power * keep[:, None, :]
        mel = power @ self.mel_basis  # (B, T, M)
        feats = torch.log(mel.clamp_min(LOG_FLOOR))
        frame_lengths = num_frames(lengths, self.config.hop_length).clamp_max(feats.shape[1])
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]  # (B, T)
        return feats * mask[..., None], frame_lengths


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_in, n_out) orthonormal DCT-II basis: `feats @ dct_matrix(80, 13)` keeps the first 13 cepstra."""
    import scipy.fft  # imported here: the recognizer itself does not need scipy

    basis = scipy.fft.dct(np.eye(n_in), type=2, norm="ortho", axis=0)[:n_out]  # (n_out, n_in)
    return torch.from_numpy(np.ascontiguousarray(basis.T).astype(np.float32))


class MFCC(nn.Module):
    """Batched MFCC: (B, N) waveforms → (B, T, n_ceps) cepstra of `LogMel`'s features, (B,) frame counts."""

    dct: torch.Tensor  # buffer registered in __init__

    def __init__(self, n_ceps: int = 13, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.logmel = LogMel(config)
        if not 0 < n_ceps <= self.logmel.config.n_mels:
            raise ValueError(f"n_ceps must be in 1..{self.logmel.config.n_mels}, got {n_ceps}")
        self.register_buffer("dct", dct_matrix(self.logmel.config.n_mels, n_ceps), persistent=False)  # (M, C)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, cutoff_hz: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """waves (B, N), lengths (B,) samples → cepstra (B, T, C) (0 past each length), frame lengths (B,)."""
        feats, frames = self.logmel(waves, lengths, cutoff_hz)  # (B, T, M), padded frames are 0
        return feats @ self.dct, frames


def deltas(feats: torch.Tensor, lengths: torch.Tensor, width: int = 9, order: int = 1) -> torch.Tensor:
    """(B, T, D) → (B, T, D) order-th time derivative, as `librosa.feature.delta(x, width=width,
    order=order, axis=0, mode="nearest")` of each utterance alone: a Savitzky-Golay filter whose window
    repeats the utterance's first and last frames at its edges. Frames past each length stay 0.
    """
    if width < 3 or width % 2 == 0:
        raise ValueError(f"width must be odd and at least 3, got {width}")
    if order < 1 or order >= width:
        raise ValueError(f"order must be in 1..{width - 1}, got {order}")
    import scipy.signal  # imported here: the recognizer itself does not need scipy

    weights = scipy.signal.savgol_coeffs(width, polyorder=order, deriv=order, use="dot")  # (W,), over t-half..t+half
    half = width // 2
    frames = torch.arange(feats.shape[1], device=feats.device)  # (T,)
    last = (lengths.to(feats.device) - 1).clamp_min(0)[:, None]  # (B, 1)
    out = torch.zeros_like(feats)
    for offset, weight in zip(range(-half, half + 1), weights.tolist()):  # W shifted copies, not a loop over frames
        index = (frames[None, :] + offset).clamp_min(0).minimum(last)  # (B, T): the neighbour, edge-repeated
        out += weight * torch.gather(feats, 1, index[..., None].expand(-1, -1, feats.shape[2]))
    valid = frames[None, :] < lengths.to(feats.device)[:, None]  # (B, T)
    return out * valid[..., None]


class GlobalCMVN(nn.Module):
    """Global mean/variance normalisation with statistics stored as buffers (saved in checkpoints).

    With `utterance_mean`, each utterance's own mean log-mel vector is subtracted first
    (cepstral mean normalisation: a fixed microphone or channel colouring is an additive offset
    in the log domain), and the global statistics describe features after that subtraction.
    With `mean_within_db` > 0 that mean is taken over the frames whose energy lies within that many
    dB of the utterance's loudest frame, so that pauses (silence, low noise) do not move it.
    """

    mean: torch.Tensor  # buffers registered in __init__
    inv_std: torch.Tensor

    def __init__(self, dim: int = N_MELS, utterance_mean: bool = False, mean_within_db: float = 0.0) -> None:
        super().__init__()
        self.utterance_mean = utterance_mean
        self.mean_within_db = float(mean_within_db)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    @torch.no_grad()
    def set_stats(self, total: torch.Tensor, total_sq: torch.Tensor, count: int) -> None:
        """Set statistics from feature sums (D,), sums of squares (D,) and a frame count."""
        mean = total / count
        var = (total_sq / count - mean.pow(2)).clamp_min(1e-8)
        self.mean.copy_(mean)
        self.inv_std.copy_(var.rsqrt())

    def centre(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D) with each utterance's mean over its valid (or, with `mean_within_db`,
        its loud enough) frames removed if `utterance_mean` is set (else unchanged); the statistics are
        gathered after this step."""
        if not self.utterance_mean:
            return feats
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]  # (B, T)
        counted = valid & self.loud_frames(feats, valid) if self.mean_within_db > 0 else valid  # (B, T)
        weights = counted[..., None].to(feats)  # (B, T, 1)
        means = (feats * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, D)
        return (feats - means) * valid[..., None]

    def loud_frames(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T) mask of frames whose mean log-mel energy is within `mean_within_db` of the loudest
        valid frame of their utterance (log-mel is a natural log of power: 10 dB = ln 10)."""
        energy = feats.mean(-1).masked_fill(~valid, float("-inf"))  # (B, T)
        loudest = energy.max(1, keepdim=True).values  # (B, 1)
        return energy >= loudest - self.mean_within_db * math.log(10.0) / 10.0

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) → (B, T, D) normalised; padded frames stay 0."""
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]
        return (self.centre(feats, lengths) - self.mean) * self.inv_std * mask[..., None]


def accumulate_stats(feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sums, sums of squares (D,) and frame count of the valid frames of a (B, T, D) batch."""
    mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]
    valid = feats[mask].double()  # (frames, D)
    return valid.sum(0), valid.pow(2).sum(0), int(valid.shape[0])


def pad_waves(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (N_i,) float32 arrays → padded (B, N_max) tensor and (B,) lengths."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for i, wave in enumerate(waves):
        batch[i, : len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    return batch, lengths
