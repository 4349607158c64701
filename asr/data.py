"""Datasets, length-bucketed batching and collation for CTC training."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from asr.audio import SAMPLE_RATE, load_audio
from asr.augment import AugmentConfig, random_gain, speed_perturb
from asr.manifest import Utterance
from asr.text import CharTokenizer


@dataclass
class Example:
    """One training item: waveform at 16 kHz, target ids, and the band-limit cutoff to apply (0 = none)."""

    utt_id: str
    wave: np.ndarray  # (N,) float32
    targets: list[int]
    cutoff_hz: float


@dataclass
class Batch:
    """A padded batch ready for the front end."""

    utt_ids: list[str]
    waves: torch.Tensor  # (B, N_max)
    wave_lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (sum L,) concatenated
    target_lengths: torch.Tensor  # (B,)
    cutoff_hz: torch.Tensor  # (B,) 0 = full band

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.utt_ids, self.waves.to(device), self.wave_lengths.to(device), self.targets.to(device),
                     self.target_lengths.to(device), self.cutoff_hz.to(device))


class SpeechDataset(Dataset):
    """Manifest utterances → `Example`s, with optional in-memory audio cache and augmentation.

    Augmentation randomness is derived from (seed, epoch, index), so a resumed run sees exactly
    the same perturbations as an uninterrupted one. Call `set_epoch` before each epoch.
    """

    def __init__(self, utterances: list[Utterance], tokenizer: CharTokenizer, augment: AugmentConfig | None = None,
                 cache_audio: bool = True, seed: int = 0) -> None:
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] = {}
        self.cache_audio = cache_audio
        self.targets = [tokenizer.encode(u.text) for u in utterances]

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def audio(self, index: int) -> np.ndarray:
        """The utterance's 16 kHz waveform, cached in memory when `cache_audio`."""
        if index in self._cache:
            return self._cache[index]
        wave = load_audio(self.utterances[index].audio_path)
        if self.cache_audio:
            self._cache[index] = wave
        return wave

    def plain_example(self, index: int) -> Example:
        """The utterance without augmentation (for statistics and evaluation)."""
        utt = self.utterances[index]
        cutoff = float(utt.sample_rate) / 2 if utt.sample_rate < SAMPLE_RATE else 0.0
        return Example(utt.utt_id, self.audio(index), self.targets[index], cutoff)

    def __getitem__(self, index: int) -> Example:
        utt = self.utterances[index]
        wave = self.audio(index)
        cutoff = float(utt.sample_rate) / 2 if utt.sample_rate < SAMPLE_RATE else 0.0
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            wave = speed_perturb(wave, float(rng.choice(self.augment.speed_factors)))
            wave = random_gain(wave, rng, self.augment.gain_db)
            if cutoff == 0.0 and rng.random() < self.augment.bandlimit_prob:
                cutoff = float(rng.choice(self.augment.bandlimit_hz))
        return Example(utt.utt_id, wave, self.targets[index], cutoff)


def collate(examples: list[Example]) -> Batch:
    """Pad waveforms and concatenate targets."""
    wave_lengths = torch.tensor([len(e.wave) for e in examples], dtype=torch.long)
    waves = torch.zeros(len(examples), int(wave_lengths.max()))
    for i, e in enumerate(examples):
        waves[i, : len(e.wave)] = torch.from_numpy(e.wave)
    targets = torch.tensor([t for e in examples for t in e.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(e.targets) for e in examples], dtype=torch.long)
    cutoff = torch.tensor([e.cutoff_hz for e in examples], dtype=torch.float32)
    return Batch([e.utt_id for e in examples], waves, wave_lengths, targets, target_lengths, cutoff)


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar duration whose padded size stays under `max_batch_seconds`.

    Utterances are sorted by duration and cut into batches; the batch order is shuffled per epoch
    (seeded by `seed + epoch`). With `num_replicas > 1` each rank takes every n-th batch, so DDP
    ranks see disjoint data and the same number of batches.
    """

    def __init__(self, durations: list[float], max_batch_seconds: float, max_batch_size: int = 64,
                 shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.durations = durations
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.batches = self._make_batches()

    def _make_batches(self) -> list[list[int]]:
        order = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = self.durations[index]  # sorted ascending, so the newest item is the longest
            if current and (longest * (len(current) + 1) > self.max_batch_seconds or len(current) >= self.max_batch_size):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = list(range(len(self.batches)))
        if self.shuffle:
            order = torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        per_rank = math.ceil(len(order) / self.num_replicas)
        order = (order * 2)[: per_rank * self.num_replicas]  # pad by wrapping so ranks stay in step
        for position in order[self.rank :: self.num_replicas]:
            yield self.batches[position]

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.num_replicas)
