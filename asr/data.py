"""Datasets, length-bucketed batching and collation for CTC training.

Training reads either audio (`SpeechDataset` → `Example`: a waveform, features computed on the
device) or precomputed log-mel from a feature cache (`asr.featcache.CachedFeatureDataset` →
`FeatureExample`). `collate` turns a list of either kind into a `Batch`; a batch of cached
features carries `feats`/`feat_lengths` and an empty `waves`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch.utils.data import Dataset

from asr.audio import SAMPLE_RATE, load_audio
from asr.augment import AugmentConfig, pad_with_noise, random_gain, speed_perturb
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
class FeatureExample:
    """One training item read from a feature cache: raw log-mel frames (before CMVN) and targets."""

    utt_id: str
    feats: np.ndarray  # (T, n_mels) float16 or float32
    targets: list[int]
    num_samples: int  # length of the (speed-perturbed) audio the frames came from, at 16 kHz


@dataclass
class Batch:
    """A padded batch ready for the front end (waves) or, from a feature cache, past it (feats)."""

    utt_ids: list[str]
    waves: torch.Tensor  # (B, N_max); (B, 0) when `feats` is given
    wave_lengths: torch.Tensor  # (B,) samples at 16 kHz (also for cached features: the audio they stand for)
    targets: torch.Tensor  # (sum L,) concatenated
    target_lengths: torch.Tensor  # (B,)
    cutoff_hz: torch.Tensor  # (B,) 0 = full band
    feats: torch.Tensor | None = None  # (B, T_max, n_mels) raw log-mel, padded frames 0
    feat_lengths: torch.Tensor | None = None  # (B,) frames

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """Page-locked copies, so `to(cuda, non_blocking=True)` overlaps with compute (DataLoader hook)."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        """A copy with `fn` applied to every tensor (an absent `feats`/`feat_lengths` stays None)."""
        return Batch(self.utt_ids, fn(self.waves), fn(self.wave_lengths), fn(self.targets), fn(self.target_lengths),
                     fn(self.cutoff_hz), None if self.feats is None else fn(self.feats),
                     None if self.feat_lengths is None else fn(self.feat_lengths))


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
        # A narrow-band file keeps its own Nyquist cutoff after speed perturbation (not scaled by the
        # speed): inference masks such files at that frequency, so training sees the same band edge.
        cutoff = float(utt.sample_rate) / 2 if utt.sample_rate < SAMPLE_RATE else 0.0
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            wave = speed_perturb(wave, float(rng.choice(self.augment.speed_factors)))
            wave = random_gain(wave, rng, self.augment.gain_db, self.augment.min_gain_db)
            if cutoff == 0.0 and rng.random() < self.augment.bandlimit_prob:
                cutoff = float(rng.choice(self.augment.bandlimit_hz))
            # Drawn last, and only when enabled, so runs without padding keep their random streams.
            if self.augment.pad_prob > 0 and rng.random() < self.augment.pad_prob:
                wave = pad_with_noise(wave, rng, self.augment.pad_max_s, self.augment.pad_noise_db)
        return Example(utt.utt_id, wave, self.targets[index], cutoff)


def collate(examples: Sequence[Example | FeatureExample]) -> Batch:
    """Pad waveforms (or cached features) and concatenate targets; all examples are of one kind."""
    if examples and isinstance(examples[0], FeatureExample):
        return collate_features(cast("Sequence[FeatureExample]", examples))
    examples = cast("Sequence[Example]", examples)  # one kind: that of the first
    wave_lengths = torch.tensor([len(e.wave) for e in examples], dtype=torch.long)
    waves = torch.zeros(len(examples), int(wave_lengths.max()))
    for i, e in enumerate(examples):
        waves[i, : len(e.wave)] = torch.from_numpy(e.wave)
    targets = torch.tensor([t for e in examples for t in e.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(e.targets) for e in examples], dtype=torch.long)
    cutoff = torch.tensor([e.cutoff_hz for e in examples], dtype=torch.float32)
    return Batch([e.utt_id for e in examples], waves, wave_lengths, targets, target_lengths, cutoff)


def collate_features(examples: Sequence[FeatureExample]) -> Batch:
    """Pad cached log-mel frames into (B, T_max, D) float32 and concatenate targets."""
    feat_lengths = torch.tensor([len(e.feats) for e in examples], dtype=torch.long)
    dim = examples[0].feats.shape[1]
    feats = torch.zeros(len(examples), int(feat_lengths.max()), dim)
    for i, e in enumerate(examples):
        feats[i, : len(e.feats)] = torch.from_numpy(np.asarray(e.feats, dtype=np.float32))
    targets = torch.tensor([t for e in examples for t in e.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(e.targets) for e in examples], dtype=torch.long)
    wave_lengths = torch.tensor([e.num_samples for e in examples], dtype=torch.long)
    return Batch([e.utt_id for e in examples], torch.zeros(len(examples), 0), wave_lengths, targets, target_lengths,
                 torch.zeros(len(examples)), feats, feat_lengths)


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar duration whose padded size stays under `max_batch_seconds` per replica.

    Utterances are sorted by duration and cut into *global* batches; the batch order is shuffled
    per epoch (seeded by `seed + epoch`, the same on every rank). With `num_replicas = W > 1`
    (DDP) a global batch holds up to W × `max_batch_seconds` and W × `max_batch_size`, at least
    W utterances, and rank r takes its items r, r+W, … (sorted by duration, so every rank gets a
    nearly equal share of similar lengths). All ranks therefore run the same number of steps, and
    one step of W ranks trains on exactly the batch a single process gets with
    `max_batch_seconds × W` — which is what makes DDP and single-process training equivalent.
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
        """Global batches of indices, each sorted by duration (ascending)."""
        replicas = self.num_replicas
        if len(self.durations) < replicas:
            raise ValueError(f"{len(self.durations)} utterances cannot feed {replicas} DDP ranks")
        limit_s, limit_n = self.max_batch_seconds * replicas, self.max_batch_size * replicas
        order = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = self.durations[index]  # sorted ascending, so the newest item is the longest
            full = longest * (len(current) + 1) > limit_s or len(current) >= limit_n
            if full and len(current) >= replicas:
                batches.append(current)
                current = []
            current.append(index)
        if len(current) >= replicas or not batches:
            batches.append(current)
        else:  # too few left for every rank: the longest batch takes them
            batches[-1].extend(current)
        return batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = list(range(len(self.batches)))
        if self.shuffle:
            order = torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for position in order:
            yield self.batches[position][self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self.batches)
