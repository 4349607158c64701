"""Training of the segment autoencoder: `asr train --config X.yaml` with `task: autoencoder`.

YAML sections (see recipes/search/conf/*.yaml):

    task: autoencoder
    out_dir: exp/search/contrastive
    data:   {train: [segments.tsv, ...], valid: [segments.tsv, ...], am_model: null, max_seconds: 2.0,
             speed_factors: [0.9, 1.1]}
    model:  {input: am+logmel, hidden_size: 256, num_layers: 2, embed_dim: 128, ...}   (AutoencoderConfig)
    objective: {variant: contrastive, recon_weight: 1.0, ...}                    (ObjectiveConfig)
    optim:  {epochs: 30, lr: 2.0e-3, words_per_batch: 32, per_word: 4, ...}      (OptimConfig)

Segment features are computed once (two views per segment: the segment cut out and run through
the front end alone, and the segment's slice of its whole recording's features, which is what
the index sees) and cached in `out_dir/cache/`; each of `speed_factors` adds both views of the
segment in its recording played that much faster (one more cache each). Batches hold
`words_per_batch` words with `per_word` instances each, every instance in a random view. Each
epoch writes `last.pt` (with optimiser state, for `--resume`) and a line of `metrics.jsonl` (with
the same-different AP of the `valid` segments when given, words of at least `valid_min_chars`
letters); the end of the run writes `model.pt`, the search model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.checkpoint import CheckpointError, atomic_torch_save
from asr.fileio import atomic_output
from asr.search.features import SegmentFeaturizer, file_sha256, load_featurizer
from asr.search.model import (AutoencoderConfig, SegmentAutoencoder, contrastive_loss, mask_frames,
                              reconstruction_loss, save_search_model)
from asr.search.segments import Segment, read_segments

log = logging.getLogger(__name__)

VARIANTS = {  # default loss weights of each training variant
    "plain": {"recon_weight": 1.0, "correspondence_weight": 0.0, "contrastive_weight": 0.0, "mask_prob": 0.0},
    "denoising": {"recon_weight": 1.0, "correspondence_weight": 0.0, "contrastive_weight": 0.0, "mask_prob": 0.2},
    "correspondence": {"recon_weight": 0.0, "correspondence_weight": 1.0, "contrastive_weight": 0.0,
                       "mask_prob": 0.0},
    "contrastive": {"recon_weight": 1.0, "correspondence_weight": 0.0, "contrastive_weight": 1.0, "mask_prob": 0.0},
}


@dataclass
class ObjectiveConfig:
    """What the autoencoder is trained to do; unset weights take the variant's defaults."""

    variant: str = "contrastive"
    recon_weight: float | None = None
    correspondence_weight: float | None = None
    contrastive_weight: float | None = None
    mask_prob: float | None = None
    temperature: float = 0.1

    def weights(self) -> dict[str, float]:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown objective variant {self.variant!r} (expected one of {', '.join(VARIANTS)})")
        return {k: float(getattr(self, k) if getattr(self, k) is not None else v) for k, v in VARIANTS[self.variant].items()}


@dataclass
class DataSection:
    """Segment manifests and feature options."""

    train: list[str] = field(default_factory=list)
    valid: list[str] = field(default_factory=list)
    valid_speakers: list[str] = field(default_factory=list)  # moved from train to valid (for monitoring)
    am_model: str | None = None  # acoustic model for `am` input and the alignment (default: bundled)
    max_seconds: float = 2.0  # longer training segments are skipped
    context_views: bool = True  # also train on slices of whole-recording features
    speed_factors: list[float] = field(default_factory=list)  # extra speed-perturbed views, e.g. [0.9, 1.1]
    valid_min_chars: int = 3  # valid AP over words of at least this many letters (as bench/search_eval.py)


@dataclass
class OptimSection:
    epochs: int = 30
    lr: float = 2e-3
    final_lr_ratio: float = 0.05
    weight_decay: float = 1e-2
    grad_clip: float = 5.0
    words_per_batch: int = 32
    per_word: int = 4


@dataclass
class AutoencoderTrainConfig:
    out_dir: str = "exp/search/ae"
    seed: int = 0
    data: DataSection = field(default_factory=DataSection)
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimSection = field(default_factory=OptimSection)

    @classmethod
    def from_dict(cls, raw: dict) -> "AutoencoderTrainConfig":
        from asr.train import expand_env

        raw = expand_env(dict(raw))
        raw.pop("task", None)
        sections: dict[str, type[DataSection | AutoencoderConfig | ObjectiveConfig | OptimSection]] = {
            "data": DataSection, "model": AutoencoderConfig, "objective": ObjectiveConfig, "optim": OptimSection}
        unknown = set(raw) - set(sections) - {"out_dir", "seed"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in raw.items() if k in ("out_dir", "seed")}
        for name, kind in sections.items():
            section = raw.get(name) or {}
            known = set(kind.__dataclass_fields__)
            if set(section) - known:
                raise ValueError(f"unknown keys in {name}: {', '.join(sorted(set(section) - known))}")
            values[name] = kind(**section)
        config = cls(**values)
        config.objective.weights()  # validates the variant
        speeds = config.data.speed_factors
        if not isinstance(speeds, list) or not all(isinstance(f, (int, float)) and 0.5 <= f <= 2.0 for f in speeds):
            raise ValueError(f"data.speed_factors must be a list of speeds between 0.5 and 2.0, got {speeds!r}")
        config.data.speed_factors = sorted({float(f) for f in speeds} - {1.0})  # 1.0 is always there
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "AutoencoderTrainConfig":
        """Read a `task: autoencoder` YAML, then apply `overrides` ("section.key=value", as `asr train --set`)."""
        from asr.train import read_yaml_config

        return cls.from_dict(read_yaml_config(path, overrides))


@dataclass
class SegmentSet:
    """Features of segments: per segment an isolated view and a whole-recording (context) view."""

    segments: list[Segment]
    isolated: list[np.ndarray]  # (T_i, D) float32 each
    context: list[np.ndarray]


def cut(wave: np.ndarray, start: float, end: float) -> np.ndarray:
    """Samples of `[start, end)` seconds."""
    return wave[int(start * SAMPLE_RATE): max(int(start * SAMPLE_RATE) + 1, int(end * SAMPLE_RATE))]


def compute_features(segments: list[Segment], featurizer: SegmentFeaturizer, files_per_batch: int = 16,
                     speed: float = 1.0) -> SegmentSet:
    """Both views of every segment; files are read once (segments of unreadable files are dropped).

    `speed` ≠ 1 plays every recording that many times faster first (speed perturbation: tempo and
    pitch change together, as in Kaldi); segment times are scaled to match.
    """
    from asr.augment import speed_perturb
    from asr.transcribe import band_cutoff

    by_file: dict[Path, list[int]] = defaultdict(list)
    for i, seg in enumerate(segments):
        by_file[Path(seg.source)].append(i)
    isolated: dict[int, np.ndarray] = {}
    context: dict[int, np.ndarray] = {}
    files = sorted(by_file)
    for first in range(0, len(files), files_per_batch):
        waves, cutoffs, names = [], [], []
        for path in files[first: first + files_per_batch]:
            try:
                waves.append(speed_perturb(load_audio(path), speed))
            except AudioError as exc:
                log.warning("skipped: %s", exc)
                continue
            cutoffs.append(band_cutoff(path))  # not scaled by `speed`: the band edge the index will see
            names.append(path)
        whole = featurizer.files(waves, cutoffs)
        pieces, piece_cutoffs, piece_ids = [], [], []
        for path, wave, cutoff, feats in zip(names, waves, cutoffs, whole):
            for i in by_file[path]:
                start, end = segments[i].start / speed, segments[i].end / speed
                context[i] = featurizer.slice_frames(feats, start, end)
                pieces.append(cut(wave, start, end))
                piece_cutoffs.append(cutoff)
                piece_ids.append(i)
        for i, piece_feats in zip(piece_ids, featurizer.segments(pieces, piece_cutoffs)):
            isolated[i] = piece_feats
    keep = sorted(isolated)
    return SegmentSet([segments[i] for i in keep], [isolated[i] for i in keep], [context[i] for i in keep])


def _pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, D) → concatenated (ΣT, D) float16 and (N+1,) offsets."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    return np.concatenate(arrays).astype(np.float16), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [data[offsets[i]: offsets[i + 1]].astype(np.float32) for i in range(len(offsets) - 1)]


def cached_features(paths: list[str], featurizer: SegmentFeaturizer, cache_dir: Path, am_sha: str,
                    speed: float = 1.0) -> SegmentSet:
    """`compute_features` of the segments in `paths` (at `speed`), cached (npz, no pickle) by content hash."""
    segments = [s for p in paths for s in read_segments(p)]
    key = hashlib.sha256()
    for p in paths:
        key.update(Path(p).read_bytes())
    key.update(f"{featurizer.kind}:{am_sha if featurizer.kind.startswith('am') else ''}".encode())
    if speed != 1.0:
        key.update(f":speed={speed}".encode())
    cache = cache_dir / f"{featurizer.kind}-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            keep = npz["keep"]
            return SegmentSet([segments[i] for i in keep], _unpack(npz["iso"], npz["iso_off"]),
                              _unpack(npz["ctx"], npz["ctx_off"]))
    started = time.time()
    index = {id(s): i for i, s in enumerate(segments)}
    result = compute_features(segments, featurizer, speed=speed)
    iso, iso_off = _pack(result.isolated)
    ctx, ctx_off = _pack(result.context)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(cache) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, keep=np.array([index[id(s)] for s in result.segments], dtype=np.int64), iso=iso,
                 iso_off=iso_off, ctx=ctx, ctx_off=ctx_off)
    log.info("features of %d segments (%s) in %.0f s → %s", len(result.segments), featurizer.kind,
             time.time() - started, cache)
    return result


def pad_batch(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, D) → (B, T_max, D) zero-padded float tensor and (B,) lengths."""
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    batch = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
    for i, a in enumerate(arrays):
        batch[i, : len(a)] = torch.from_numpy(a)
    return batch, lengths


@torch.no_grad()
def embed_arrays(model: SegmentAutoencoder, arrays: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """(T_i, D) feature arrays → (N, E) L2-normalised float32 embeddings (batched by length)."""
    if not arrays:
        return np.zeros((0, model.config.embed_dim), dtype=np.float32)
    order = np.argsort([len(a) for a in arrays], kind="stable")
    out = np.zeros((len(arrays), model.config.embed_dim), dtype=np.float32)
    for first in range(0, len(order), batch_size):
        chunk = order[first: first + batch_size]
        feats, lengths = pad_batch([arrays[i] for i in chunk])
        out[chunk] = torch.nn.functional.normalize(model.embed(feats, lengths), dim=-1).numpy()
    return out


def same_different_ap(vectors: np.ndarray, words: list[str]) -> float:
    """Average precision of ranking all segment pairs by cosine similarity (same word = relevant)."""
    from asr.metrics import average_precision

    labels = np.unique(np.asarray(words), return_inverse=True)[1]
    upper = np.triu_indices(len(words), k=1)
    scores = (vectors @ vectors.T)[upper]
    return average_precision(scores, labels[upper[0]] == labels[upper[1]])


class WordBatchSampler:
    """Batches of `words` distinct words × `per_word` instances (with replacement when a word is rarer).

    Words are drawn with probability ∝ sqrt(instances) among words seen at least twice.
    """

    def __init__(self, labels: np.ndarray, words: int, per_word: int, seed: int) -> None:
        self.groups = [np.flatnonzero(labels == w) for w in np.unique(labels)]
        self.groups = [g for g in self.groups if len(g) >= 2]
        weights = np.sqrt([len(g) for g in self.groups])
        self.prob = weights / weights.sum()
        self.words = min(words, len(self.groups))
        self.per_word = per_word
        self.rng = np.random.default_rng(seed)
        self.batches = max(1, math.ceil(len(labels) / (self.words * per_word)))

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            chosen = self.rng.choice(len(self.groups), size=self.words, replace=False, p=self.prob)
            yield np.concatenate([self.rng.choice(self.groups[g], size=self.per_word,
                                                  replace=len(self.groups[g]) < self.per_word) for g in chosen])


def partners(labels: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each batch item, another item of the same word, from another speaker when there is one. (B,) → (B,)."""
    out = np.arange(len(labels))
    for i in range(len(labels)):
        same = np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))
        other = same[speakers[same] != speakers[i]]
        pool = other if len(other) else same
        if len(pool):
            out[i] = rng.choice(pool)
    return out


def perturbed_views(plain: SegmentSet, paths: list[str], featurizer: SegmentFeaturizer, cache_dir: Path,
                    am_sha: str, speed: float) -> SegmentSet:
    """The segments of `plain` again, from recordings played `speed` times faster (same order)."""
    views = cached_features(paths, featurizer, cache_dir, am_sha, speed=speed)
    if [(s.source, s.start) for s in views.segments] != [(s.source, s.start) for s in plain.segments]:
        raise ValueError(f"speed {speed}: the perturbed recordings did not all read back; check the audio files")
    return views


def pick_view(iso: list[list[np.ndarray]], ctx: list[list[np.ndarray]], i: int, rng: np.random.Generator) -> np.ndarray:
    """Segment `i` in a random view: a random speed (when there are several), then cut-out or in-context."""
    speed = int(rng.integers(len(iso))) if len(iso) > 1 else 0
    return ctx[speed][i] if rng.random() < 0.5 else iso[speed][i]


def train_autoencoder(config: AutoencoderTrainConfig, resume: bool = False) -> Path:
    """Train and write `out_dir/model.pt`; returns its path."""
    torch.manual_seed(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = config.objective.weights()
    featurizer = (load_featurizer("am", config.data.am_model) if config.model.input.startswith("am") or config.data.am_model
                  else SegmentFeaturizer(config.model.input))
    if featurizer.kind != config.model.input:
        featurizer = SegmentFeaturizer(config.model.input, featurizer.transcriber)
    am_path = featurizer.transcriber.loaded.path if featurizer.transcriber else None
    am_sha = file_sha256(am_path) if am_path else ""
    if not config.data.train:
        raise ValueError("data.train lists no segment files")
    train_set = cached_features(config.data.train, featurizer, out_dir / "cache", am_sha)
    valid_set = cached_features(config.data.valid, featurizer, out_dir / "cache", am_sha) if config.data.valid else None
    held = set(config.data.valid_speakers)
    if held:
        moved = [i for i, s in enumerate(train_set.segments) if s.speaker in held]
        if not moved:
            raise ValueError(f"valid_speakers {' '.join(sorted(held))} have no training segments")
        extra = SegmentSet(*([getattr(train_set, k)[i] for i in moved] for k in ("segments", "isolated", "context")))
        valid_set = extra if valid_set is None else SegmentSet(
            valid_set.segments + extra.segments, valid_set.isolated + extra.isolated, valid_set.context + extra.context)
    scored = [] if valid_set is None else [i for i, s in enumerate(valid_set.segments)
                                           if len(s.word.replace("'", "")) >= config.data.valid_min_chars]
    if valid_set is not None and len(scored) < 2:  # too few long words: score them all
        scored = list(range(len(valid_set.segments)))
    max_frames = int(config.data.max_seconds / featurizer.frame_shift_s)
    keep = [i for i, x in enumerate(train_set.isolated) if len(x) <= max_frames and train_set.segments[i].speaker not in held]
    view_sets = [train_set] + [perturbed_views(train_set, config.data.train, featurizer, out_dir / "cache", am_sha, f)
                               for f in config.data.speed_factors]
    iso = [[views.isolated[i] for i in keep] for views in view_sets]  # [speed][segment] (T, D)
    ctx = [[views.context[i] for i in keep] for views in view_sets] if config.data.context_views else iso
    del view_sets  # the held-out and over-long segments' features are not needed any more
    words = [train_set.segments[i].word for i in keep]
    vocab = {w: i for i, w in enumerate(sorted(set(words)))}
    labels = np.array([vocab[w] for w in words])
    speakers = np.unique([train_set.segments[i].speaker for i in keep], return_inverse=True)[1]
    log.info("training on %d segments (%d words, %d speakers); %s", len(keep), len(vocab), speakers.max() + 1, weights)

    config.model.input_dim = featurizer.dim
    model = SegmentAutoencoder(config.model)
    frames = np.concatenate(iso[0])
    model.set_stats(torch.from_numpy(frames.mean(0)), torch.from_numpy(frames.std(0)))
    opt = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    sampler = WordBatchSampler(labels, config.optim.words_per_batch, config.optim.per_word, config.seed)
    total_steps = config.optim.epochs * len(sampler)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: config.optim.final_lr_ratio + (
        1 - config.optim.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    start_epoch = 0
    if resume and (out_dir / "last.pt").is_file():
        state = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        sampler.rng = np.random.default_rng(config.seed + start_epoch)
        log.info("resumed from epoch %d", start_epoch)
    rng = np.random.default_rng(config.seed + 1000 + start_epoch)
    metrics_path = out_dir / "metrics.jsonl"
    if start_epoch == 0:
        metrics_path.unlink(missing_ok=True)
    # am_model as configured (None: the bundled model), not resolved, so no local path is stored
    info = {"am_sha256": am_sha, "am_model": config.data.am_model, "objective": asdict(config.objective),
            "train": config.data.train, "data": asdict(config.data), "train_segments": len(keep), "seed": config.seed}
    for epoch in range(start_epoch + 1, config.optim.epochs + 1):
        model.train()
        started, steps = time.time(), 0
        sums: defaultdict[str, float] = defaultdict(float)
        for batch in sampler:
            views = [pick_view(iso, ctx, i, rng) for i in batch]
            feats, lengths = pad_batch(views)  # (B, T, D)
            clean = model.normalize(feats, lengths)
            z = model.embed(mask_frames(clean, weights["mask_prob"]) if model.training else clean, lengths,
                            normalized=True)  # (B, E)
            loss = torch.zeros(())
            if weights["recon_weight"] > 0:
                part = reconstruction_loss(model.reconstruct(z, lengths), clean, lengths)
                loss, sums["recon"] = loss + weights["recon_weight"] * part, sums["recon"] + part.item()
            if weights["correspondence_weight"] > 0:
                other = partners(labels[batch], speakers[batch], rng)
                target, target_lengths = clean[other], lengths[other]
                part = reconstruction_loss(model.reconstruct(z, target_lengths)[:, : target.shape[1]],
                                           target[:, : int(target_lengths.max())], target_lengths)
                loss, sums["correspondence"] = loss + weights["correspondence_weight"] * part, sums["correspondence"] + part.item()
            if weights["contrastive_weight"] > 0:
                part = contrastive_loss(z, torch.from_numpy(labels[batch]), config.objective.temperature)
                loss, sums["contrastive"] = loss + weights["contrastive_weight"] * part, sums["contrastive"] + part.item()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            opt.step()
            schedule.step()
            sums["loss"] += loss.item()
            steps += 1
        model.eval()
        row = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}, "lr": schedule.get_last_lr()[0],
               "seconds": round(time.time() - started, 1)}
        if valid_set is not None:
            row["valid_ap"] = same_different_ap(embed_arrays(model, [valid_set.isolated[i] for i in scored]),
                                                [valid_set.segments[i].word for i in scored])
        log.info(json.dumps(row))
        with open(metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": schedule.state_dict(), "epoch": epoch}, out_dir / "last.pt")
    final = out_dir / "model.pt"
    save_search_model(final, model, {**info, "epochs": config.optim.epochs})
    return final


def train_from_args(args: argparse.Namespace) -> int:
    """The `asr train` entry point for `task: autoencoder`."""
    from asr.cli import UserError
    from asr.train import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        config = AutoencoderTrainConfig.from_yaml(args.config, getattr(args, "set", None) or ())
    except ConfigError:
        raise  # its message already names the file
    except (ValueError, TypeError) as exc:
        raise UserError(f"{args.config}: {exc}") from None
    if getattr(args, "out_dir", None):
        config.out_dir = args.out_dir
    try:
        final = train_autoencoder(config, resume=getattr(args, "resume", False))
    except (ValueError, CheckpointError) as exc:
        raise UserError(str(exc)) from None
    print(final)
    return 0
