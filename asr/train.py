"""Training loop for the BiLSTM-CTC model: single process or torchrun DDP, exact resume, audio or feature cache.

`asr train --config conf.yaml [--resume]`. The config's sections are `data`, `model`, `augment`
and `optim` (see recipes/*/conf/*.yaml). Each epoch writes `epoch{N}.pt` and `last.pt`
atomically, `best.pt` when the dev WER improves, a line of `metrics.jsonl` and `curve.png`;
the run ends by averaging the last `average_last` epochs into `avg.pt`.

Several GPUs or nodes: `torchrun --nproc_per_node N -m asr train --config conf.yaml [--resume]`.
Every rank trains on its share of each global batch (`asr.data.BucketBatchSampler`), the loss is
normalised by the global batch's tokens and CMVN statistics are all-reduced, so N ranks train like
one process with N × `max_batch_seconds`; rank 0 alone writes checkpoints, metrics and logs.
With `data.feature_cache` (folders from `python -m asr.featcache build`) training reads
precomputed log-mel instead of decoding audio; SpecAugment applies either way.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.augment import AugmentConfig, spec_augment
from asr.checkpoint import (atomic_torch_save, average_checkpoints, build_state, model_from_state, read_checkpoint,
                            training_state)
from asr.data import Batch, BucketBatchSampler, SpeechDataset, collate
from asr.featcache import CachedFeatureDataset, FeatureCache, FeatureCacheError
from asr.decoding.greedy import greedy_decode
from asr.features import FeatureConfig, LogMel, accumulate_stats
from asr.fileio import atomic_write_text
from asr.manifest import Utterance, read_manifest
from asr.metrics import cer, wer
from asr.model import BiLSTMCTC, ModelConfig
from asr.text import CharTokenizer


class TrainingDataError(ValueError):
    """The configured data cannot be trained on (reported as one line by the CLI)."""


def expand_env(value):
    """Recursively expand environment variables in every string of a YAML structure."""
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    return value


class ConfigError(ValueError):
    """A training config with an unknown key or a malformed value (reported as one line by the CLI)."""


@dataclass
class OptimConfig:
    """Optimiser, schedule and loss settings."""

    epochs: int = 30
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02  # cosine decay ends at lr × this
    grad_clip: float = 5.0
    average_last: int = 5
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    # intermediate CTC (Lee & Watanabe 2021): loss = (1 - w) · CTC(top) + w · CTC(after inter_ctc_layer
    # recurrent layers, through the same output layer); inference is unchanged. 0 = off.
    inter_ctc_weight: float = 0.0
    inter_ctc_layer: int = 0  # 0 = the middle, (num_layers + 1) // 2


@dataclass
class DataConfig:
    """Which manifests to read and how to batch them."""

    train: list[str] = field(default_factory=list)
    dev: dict[str, str] = field(default_factory=dict)  # name → manifest; WER reported per name
    max_batch_seconds: float = 120.0
    max_batch_size: int = 32
    max_duration: float = 30.0
    cache_audio: bool = True
    num_workers: int = 0
    # precomputed log-mel (asr.featcache folders) holding the train utterances; empty = read audio
    feature_cache: list[str] = field(default_factory=list)
    dev_cache: dict[str, str] = field(default_factory=dict)  # dev name → feature cache folder
    cmvn_max_utterances: int = 0  # CMVN statistics from an evenly spaced subset (0 = all utterances)
    pin_memory: bool = True  # page-locked batches and asynchronous copies on CUDA

    def __post_init__(self) -> None:
        if isinstance(self.feature_cache, str):
            self.feature_cache = [self.feature_cache] if self.feature_cache else []


@dataclass
class TrainConfig:
    """The whole training configuration (one YAML file)."""

    out_dir: str = "exp/run"
    seed: int = 0
    init_from: str = ""  # start from this checkpoint's weights and CMVN (a second training stage)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Read a YAML config, then apply `overrides` ("section.key=value", the value read as YAML).

        `$VAR` / `${VAR}` in strings are expanded from the environment (recipes export `EXP`);
        relative paths are relative to the current directory (the repository root). An unknown
        key (a typo) or a malformed override raises ConfigError naming the file.
        """
        raw = read_yaml_config(path, overrides)
        check_keys(raw, path)
        coerce_scalars(raw, path)
        config = cls.from_dict(expand_env(raw))
        try:
            intermediate_ctc_layer(config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return config

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        return cls(
            out_dir=raw.get("out_dir", "exp/run"),
            seed=int(raw.get("seed", 0)),
            init_from=raw.get("init_from", ""),
            data=DataConfig(**raw.get("data", {})),
            model=ModelConfig.from_dict(raw.get("model", {})),
            augment=AugmentConfig(**raw.get("augment", {})),
            optim=OptimConfig(**raw.get("optim", {})),
        )

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "seed": self.seed, "init_from": self.init_from, "data": vars(self.data), "model": self.model.to_dict(),
                "augment": self.augment.to_dict(), "optim": vars(self.optim)}


CONFIG_SECTIONS = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig, "optim": OptimConfig}
TOP_LEVEL_KEYS = {"out_dir", "seed", "init_from", "task", *CONFIG_SECTIONS}


def check_keys(raw: dict, path: str | os.PathLike) -> None:
    """Raise ConfigError for a key no setting has (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    for section, kind in CONFIG_SECTIONS.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section} must be a mapping of settings")
        known = {f.name for f in fields(kind)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown setting {section}.{unknown[0]} (known in {section}: "
                              f"{', '.join(sorted(known))})")


def _coerce(value, kind: str, name: str, path: str | os.PathLike):
    """`value` as the scalar type `kind` ("float", "int", "bool", or one of them "| None");
    YAML reads `5e-4` as a string."""
    if kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    if kind == "float" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    ok = {"float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "bool": isinstance(value, bool)}.get(kind, True)
    if not ok:
        wanted = {"float": "a number", "int": "a whole number", "bool": "true or false"}[kind]
        raise ConfigError(f"{path}: {name} must be {wanted}, got {value!r}")
    return float(value) if kind == "float" else value


def coerce_scalars(raw: dict, path: str | os.PathLike) -> None:
    """Check (in place) that the float, int and bool settings hold such values; numeric strings become floats."""
    if "seed" in raw:
        raw["seed"] = _coerce(raw["seed"], "int", "seed", path)
    for section, kind in CONFIG_SECTIONS.items():
        values = raw.get(section) or {}
        types = {f.name: str(f.type) for f in fields(kind)}
        for key, value in values.items():
            values[key] = _coerce(value, types[key], f"{section}.{key}", path)


def read_yaml_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """The settings of a training YAML (any task) as a dict, with `overrides` ("section.key=value") applied;
    `$VAR`s are not expanded yet. Invalid YAML or a top level that is not a mapping raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for override in overrides:
        apply_override(raw, override, path)
    return raw


def apply_override(raw: dict, override: str, path: str | os.PathLike) -> None:
    """Set "a.b=value" in the nested dict `raw`; the value is parsed as YAML ("true", "0.5", "[1, 2]")."""
    key, sep, text = override.partition("=")
    names = key.strip().split(".")
    if not sep or not all(names):
        raise ConfigError(f"{path}: override {override!r} is not KEY=VALUE (e.g. model.hidden_size=256)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{path}: override {override!r}: the value is not valid YAML") from None
    target = raw
    for name in names[:-1]:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{path}: override {override!r}: {name} is not a section")
    target[names[-1]] = value


def log(message: str) -> None:
    """Progress messages go to stderr through tqdm so they do not break the bar."""
    tqdm.write(message)


def load_utterances(manifests: list[str], max_duration: float, tokenizer: CharTokenizer,
                    subsampling: int) -> tuple[list[Utterance], dict[str, int]]:
    """Read manifests, dropping (and counting) utterances too long or whose text cannot fit CTC."""
    kept: list[Utterance] = []
    dropped = {"too_long": 0, "empty_text": 0, "text_longer_than_frames": 0}
    for manifest in manifests:
        for utt in read_manifest(manifest, check_audio=True):
            targets = tokenizer.encode(utt.text)
            # model steps at the slowest speed perturbation (1.1×), minus a margin for repeats
            steps = int(utt.duration_s / 1.1 * 100) // subsampling
            repeats = sum(a == b for a, b in zip(targets, targets[1:]))
            if utt.duration_s > max_duration:
                dropped["too_long"] += 1
            elif not targets:
                dropped["empty_text"] += 1
            elif len(targets) + repeats > steps:
                dropped["text_longer_than_frames"] += 1
            else:
                kept.append(utt)
    return kept, dropped


def forget_unfinished_epochs(out_dir: Path, epoch: int) -> None:
    """After a crash: drop metrics rows of epochs after `epoch` (last.pt) and temporary files of killed saves.

    A run killed between writing an epoch's metrics row and its last.pt would otherwise log that
    epoch twice once resumed.
    """
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    metrics = out_dir / "metrics.jsonl"
    if not metrics.is_file():
        return
    lines = metrics.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
        if not isinstance(row, dict):
            continue
        if row.get("kind") == "average" or (row.get("kind") == "epoch" and int(row.get("epoch", 0)) > epoch):
            continue  # written again when the resumed run gets there
        kept.append(line)
    if kept != lines:
        atomic_write_text(metrics, "".join(f"{line}\n" for line in kept))


def lr_lambda(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up then cosine decay to `final_ratio`; a multiplier of the base LR."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def compute_cmvn(model: BiLSTMCTC, dataset: SpeechDataset | CachedFeatureDataset, frontend: LogMel,
                 device: torch.device, batch_size: int = 16, rank: int = 0, world_size: int = 1,
                 max_utterances: int = 0) -> None:
    """Global mean/variance of un-augmented training features into `model.cmvn`.

    `max_utterances > 0` uses an evenly spaced subset. Under DDP each rank reads every
    `world_size`-th batch and the float64 sums are all-reduced, so every rank ends with the same
    statistics as one process reading everything.
    """
    indices = np.arange(len(dataset))
    if 0 < max_utterances < len(indices):
        indices = np.unique(np.linspace(0, len(dataset) - 1, max_utterances).round().astype(np.int64))
    dim = model.cmvn.mean.numel()
    stats = torch.zeros(2 * dim + 1, dtype=torch.float64, device=device)  # sums, sums of squares, count
    starts = list(range(0, len(indices), batch_size))
    for start in starts[rank::world_size]:
        batch = collate([dataset.plain_example(int(i)) for i in indices[start : start + batch_size]]).to(device)
        feats, lengths = frontend_features(frontend, batch)
        s, sq, n = accumulate_stats(model.cmvn.centre(feats, lengths), lengths)
        stats[:dim] += s
        stats[dim : 2 * dim] += sq
        stats[-1] += n
    if world_size > 1:
        torch.distributed.all_reduce(stats)
    model.cmvn.set_stats(stats[:dim].float(), stats[dim : 2 * dim].float(), int(stats[-1]))


def frontend_features(frontend: LogMel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw log-mel (B, T, D) and frame lengths (B,): from the cache when the batch carries them, else LogMel."""
    if batch.feats is not None:
        assert batch.feat_lengths is not None  # `collate_features` sets both
        return batch.feats, batch.feat_lengths
    return frontend(batch.waves, batch.wave_lengths, batch.cutoff_hz)


def features(model: BiLSTMCTC, frontend: LogMel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveform (or cached-feature) batch → normalised features (B, T, D) and frame lengths (B,)."""
    feats, lengths = frontend_features(frontend, batch)
    return model.cmvn(feats, lengths), lengths


@torch.no_grad()
def evaluate(model: BiLSTMCTC, frontend: LogMel, loader: DataLoader, tokenizer: CharTokenizer,
             device: torch.device) -> dict[str, float]:
    """Dev loss, greedy WER and CER over a loader."""
    model.eval()
    refs, hyps, loss_sum, count = [], [], 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        feats, lengths = features(model, frontend, batch)
        log_probs, out_lengths = model(feats, lengths)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1).float(), batch.targets, out_lengths,
                                            batch.target_lengths, zero_infinity=True, reduction="sum")
        loss_sum += float(loss)
        count += int(batch.target_lengths.sum())
        hyps += [tokenizer.decode(ids) for ids in greedy_decode(log_probs.cpu(), out_lengths.cpu())]
        offset = 0
        for n in batch.target_lengths.tolist():
            refs.append(tokenizer.decode(batch.targets[offset : offset + n].tolist()))
            offset += n
    model.train()
    return {"loss": loss_sum / max(1, count), "wer": wer(refs, hyps), "cer": cer(refs, hyps)}


def plot_curve(metrics_path: Path, png_path: Path) -> None:
    """Training/dev loss and dev WER per epoch → PNG (skipped quietly if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == "epoch"]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train")
    for name in rows[-1].get("dev", {}):
        ax_loss.plot(epochs, [r["dev"][name]["loss"] for r in rows], label=f"dev {name}")
        ax_wer.plot(epochs, [100 * r["dev"][name]["wer"] for r in rows], label=f"dev {name}")
    ax_loss.set(xlabel="epoch", ylabel="CTC loss per token", title="loss")
    ax_wer.set(xlabel="epoch", ylabel="greedy WER %", title="dev WER")
    ax_loss.legend()
    ax_wer.legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, png_path)


def intermediate_ctc_layer(config: TrainConfig) -> int:
    """The recurrent layer whose output gets the intermediate CTC loss (0 = none); ConfigError if invalid."""
    weight, layer, layers = config.optim.inter_ctc_weight, config.optim.inter_ctc_layer, config.model.num_layers
    if not 0.0 <= weight < 1.0:
        raise ConfigError(f"optim.inter_ctc_weight must be in [0, 1), got {weight}")
    if weight == 0.0:
        return 0
    if layers < 2:
        raise ConfigError(f"optim.inter_ctc_weight needs model.num_layers >= 2 (a layer below the top), got {layers}")
    layer = layer or (layers + 1) // 2
    if not 0 < layer < layers:
        raise ConfigError(f"optim.inter_ctc_layer must be between 1 and {layers - 1} (model.num_layers - 1), "
                          f"got {layer}")
    return layer


def ctc_losses(outputs: tuple[torch.Tensor, ...], batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed CTC loss of the model's top output and, when `outputs` holds one, of its intermediate output."""
    def ctc(log_probs: torch.Tensor) -> torch.Tensor:  # (B, T', V) → scalar
        return torch.nn.functional.ctc_loss(log_probs.transpose(0, 1).float(), batch.targets, outputs[1],
                                            batch.target_lengths, zero_infinity=True, reduction="sum")
    return ctc(outputs[0]), (ctc(outputs[2]) if len(outputs) > 2 else None)


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class Trainer:
    """Owns model, optimiser, data and the epoch loop for one run."""

    def __init__(self, config: TrainConfig, device: str | None = None) -> None:
        self.config = config
        self.rank, self.world_size, local_rank = distributed_context()
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.owns_process_group = False
        if self.world_size > 1 and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owns_process_group = True
        self.out_dir = Path(config.out_dir)
        self.inter_ctc_layer = intermediate_ctc_layer(config)
        self.last_inter_loss: float | None = None  # the last epoch's mean intermediate CTC loss per token
        self.tokenizer = CharTokenizer()
        config.model.vocab_size = self.tokenizer.vocab_size
        torch.manual_seed(config.seed)
        self.model = BiLSTMCTC(config.model).to(self.device)
        self.frontend = LogMel(FeatureConfig()).to(self.device)
        train_utts, dropped = load_utterances(config.data.train, config.data.max_duration, self.tokenizer,
                                              config.model.subsampling)
        if not train_utts:
            raise TrainingDataError("no usable training utterances in " + ", ".join(config.data.train))
        self.dropped = dropped
        self.train_set = self._dataset(train_utts, config.data.feature_cache, config.augment)
        self.sampler = BucketBatchSampler([u.duration_s for u in train_utts], config.data.max_batch_seconds,
                                          config.data.max_batch_size, shuffle=True, seed=config.seed,
                                          num_replicas=self.world_size, rank=self.rank)
        self.pin_memory = config.data.pin_memory and self.device.type == "cuda"
        workers = config.data.num_workers
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                       num_workers=workers, pin_memory=self.pin_memory,
                                       prefetch_factor=4 if workers > 0 else None)  # not persistent: workers
        # are started per epoch so they see the dataset's set_epoch (augmentation is seeded by epoch)
        self.dev_loaders = {name: self._dev_loader(path, config.data.dev_cache.get(name))
                            for name, path in config.data.dev.items()}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.optim.lr,
                                           weight_decay=config.optim.weight_decay)
        total_steps = config.optim.epochs * len(self.sampler)
        o = config.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_lambda(step, o.warmup_steps, total_steps, o.final_lr_ratio))
        self.epoch = 0
        self.step = 0
        self.best_wer = float("inf")
        self.ddp_model: torch.nn.Module = self.model  # the model itself, or its DistributedDataParallel wrapper
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _dataset(self, utts: list[Utterance], cache_folders: list[str] | str | None,
                 augment: AugmentConfig | None) -> SpeechDataset | CachedFeatureDataset:
        """Audio-backed dataset, or one reading a feature cache when folders are given."""
        if not cache_folders:
            return SpeechDataset(utts, self.tokenizer, augment, self.config.data.cache_audio, self.config.seed)
        try:
            cache = FeatureCache([cache_folders] if isinstance(cache_folders, str) else cache_folders)
            if cache.feature_config != self.frontend.config:
                raise FeatureCacheError(f"{cache_folders}: cached with {cache.feature_config}, the model uses "
                                        f"{self.frontend.config}")
            return CachedFeatureDataset(utts, self.tokenizer, cache, augment, self.config.seed)
        except FeatureCacheError as exc:
            raise TrainingDataError(str(exc)) from None

    def _dev_loader(self, manifest: str, cache_folder: str | None = None) -> DataLoader:
        utts, _ = load_utterances([manifest], self.config.data.max_duration, self.tokenizer,
                                  self.config.model.subsampling)
        dataset = self._dataset(utts, cache_folder, None)
        sampler = BucketBatchSampler([u.duration_s for u in utts], self.config.data.max_batch_seconds,
                                     self.config.data.max_batch_size, shuffle=False)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def info(self, **extra) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best_wer": self.best_wer, "config": self.config.to_dict(),
                "dropped_utterances": self.dropped, **extra}

    def save(self, name: str, metrics: dict | None = None, with_training_state: bool = True) -> Path:
        """Write `name` atomically under out_dir (rank 0 only)."""
        path = self.out_dir / name
        training_state = None
        if with_training_state:
            training_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        state = build_state(self.model, self.tokenizer, self.frontend.config, self.info(metrics=metrics or {}),
                            training_state)
        atomic_torch_save(state, path)
        return path

    def resume(self) -> bool:
        """Continue from out_dir/last.pt if it exists; returns whether it did."""
        path = self.out_dir / "last.pt"
        if not path.exists():
            return False
        state = read_checkpoint(path)
        saved = training_state(state, path)  # CheckpointError if last.pt cannot be resumed from
        self.model.load_state_dict(model_from_state(state, path).model.state_dict())
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.epoch = int(state["info"]["epoch"])
        self.step = int(state["info"]["step"])
        self.best_wer = float(state["info"]["best_wer"])
        if self.is_main:
            forget_unfinished_epochs(self.out_dir, self.epoch)
            log(f"resumed from {path} after epoch {self.epoch}")
        return True

    def load_initial_weights(self, path: Path) -> None:
        """Copy weights and CMVN statistics from a checkpoint of the same architecture."""
        loaded = model_from_state(read_checkpoint(path), path).model
        if loaded.config.to_dict() != self.model.config.to_dict():
            raise ValueError(f"{path}: architecture {loaded.config} differs from the config's {self.model.config}")
        self.model.load_state_dict(loaded.state_dict())
        if self.is_main:
            log(f"initialised from {path}")

    def train_epoch(self) -> tuple[float, int]:
        """One pass over the training data; returns mean loss per token and skipped batches."""
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        self.train_set.set_epoch(self.epoch)
        torch.manual_seed(self.config.seed * 100003 + self.epoch)  # dropout + SpecAugment, resumable
        use_amp = self.config.optim.amp and self.device.type == "cuda"
        inter_weight = self.config.optim.inter_ctc_weight
        loss_sum, inter_loss_sum, tokens, skipped, audio_s = 0.0, 0.0, 0, 0, 0.0
        start = time.time()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}", disable=not self.is_main, leave=False,
                   dynamic_ncols=True)
        for host_batch in bar:
            batch = host_batch.to(self.device, non_blocking=self.pin_memory)
            with torch.no_grad():
                feats, lengths = features(self.model, self.frontend, batch)
                if self.config.augment.enabled:
                    feats = spec_augment(feats, lengths, self.config.augment)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                outputs = self.ddp_model(feats, lengths, intermediate_layer=self.inter_ctc_layer)
            loss, inter_loss = ctc_losses(outputs, batch)
            objective = loss if inter_loss is None else (1.0 - inter_weight) * loss + inter_weight * inter_loss
            n_tokens = int(host_batch.target_lengths.sum())
            global_tokens, finite = self.reduce_step(n_tokens, objective)
            if not finite:
                skipped += 1
                self.optimizer.zero_grad(set_to_none=True)
                continue
            # DDP averages gradients over ranks, so × world size / global tokens = the gradient of
            # (sum of every rank's loss) / (all tokens of the global batch), as in one process.
            (objective * (self.world_size / global_tokens)).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            loss_sum += loss.item()
            inter_loss_sum += 0.0 if inter_loss is None else inter_loss.item()
            tokens += n_tokens
            audio_s += float(host_batch.wave_lengths.sum()) / 16000
            bar.set_postfix(loss=f"{loss_sum / tokens:.3f}", audio_x=f"{audio_s / (time.time() - start):.0f}")
        if self.world_size > 1:  # the epoch's losses over all ranks' tokens
            totals = torch.tensor([loss_sum, inter_loss_sum, float(tokens)], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(totals)
            loss_sum, inter_loss_sum, tokens = float(totals[0]), float(totals[1]), int(totals[2])
        self.last_inter_loss = inter_loss_sum / max(1, tokens) if self.inter_ctc_layer else None
        return loss_sum / max(1, tokens), skipped

    def reduce_step(self, n_tokens: int, loss: torch.Tensor) -> tuple[int, bool]:
        """(target tokens of the global batch, whether every rank's loss is finite) for one step.

        Under DDP this is one all-reduce, so all ranks skip a batch together (a rank that skipped
        alone would leave the others waiting in the gradient all-reduce).
        """
        if self.world_size == 1:
            return n_tokens, bool(torch.isfinite(loss))
        both = torch.stack([torch.tensor(float(n_tokens), device=loss.device), torch.isfinite(loss).float()])
        torch.distributed.all_reduce(both)
        return int(both[0]), int(both[1]) == self.world_size

    def run(self, stop_after_epochs: int | None = None) -> Path:
        """Train until `optim.epochs` (or `stop_after_epochs` more epochs); returns the final model path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out_dir / "metrics.jsonl"
        if self.epoch == 0 and self.config.init_from:
            self.load_initial_weights(Path(self.config.init_from))
        elif self.epoch == 0:
            compute_cmvn(self.model, self.train_set, self.frontend, self.device, rank=self.rank,
                         world_size=self.world_size, max_utterances=self.config.data.cmvn_max_utterances)
            if self.is_main:
                log(f"{len(self.train_set)} training utterances; dropped {self.dropped}; "
                    f"{self.model.num_parameters() / 1e6:.2f} M parameters")
        epochs_run = 0
        while self.epoch < self.config.optim.epochs:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                self._wait_for_all_ranks()  # rank 0 has written last.pt
                return self.out_dir / "last.pt"
            started = time.time()
            train_loss, skipped = self.train_epoch()
            self.epoch += 1
            epochs_run += 1
            if not self.is_main:
                continue
            dev = {name: evaluate(self.model, self.frontend, loader, self.tokenizer, self.device)
                   for name, loader in self.dev_loaders.items()}
            row = {"kind": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": train_loss,
                   "skipped_nonfinite_batches": skipped, "lr": self.scheduler.get_last_lr()[0],
                   "seconds": time.time() - started, "dev": dev}
            if self.last_inter_loss is not None:
                row["train_inter_ctc_loss"] = self.last_inter_loss
            with open(metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            dev_summary = " ".join(f"{n}: wer {m['wer']:.3f} cer {m['cer']:.3f}" for n, m in dev.items())
            log(f"epoch {self.epoch}: train loss {train_loss:.3f} skipped {skipped} | {dev_summary} "
                f"| {row['seconds']:.0f}s")
            self.save(f"epoch{self.epoch}.pt", row)
            mean_wer = float(np.mean([m["wer"] for m in dev.values()])) if dev else -self.epoch
            if mean_wer < self.best_wer:
                self.best_wer = mean_wer
                self.save("best.pt", row, with_training_state=False)
            self.save("last.pt", row)
            stale = self.out_dir / f"epoch{self.epoch - self.config.optim.average_last}.pt"
            stale.unlink(missing_ok=True)
            plot_curve(metrics_path, self.out_dir / "curve.png")
        final = self.finish() if self.is_main else self.out_dir / "last.pt"
        self._wait_for_all_ranks()  # no rank tears the process group down while rank 0 still averages
        return final

    def _wait_for_all_ranks(self) -> None:
        """A barrier across the DDP ranks (nothing with one process)."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def finish(self) -> Path:
        """Average the last N epoch checkpoints into avg.pt and score it on the dev sets."""
        first = max(1, self.epoch - self.config.optim.average_last + 1)
        paths = [self.out_dir / f"epoch{e}.pt" for e in range(first, self.epoch + 1)]
        paths = [p for p in paths if p.exists()]
        averaged = average_checkpoints(paths)
        loaded = model_from_state(averaged).model.to(self.device)
        dev = {name: evaluate(loaded, self.frontend, loader, self.tokenizer, self.device)
               for name, loader in self.dev_loaders.items()}
        averaged["info"]["dev"] = dev
        atomic_torch_save(averaged, self.out_dir / "avg.pt")
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"kind": "average", "epochs": [p.name for p in paths], "dev": dev}) + "\n")
        log("averaged " + ", ".join(p.name for p in paths) + " → avg.pt | " +
            " ".join(f"{n}: wer {m['wer']:.3f} cer {m['cer']:.3f}" for n, m in dev.items()))
        return self.out_dir / "avg.pt"


def train(config: TrainConfig, resume: bool = False, stop_after_epochs: int | None = None,
          device: str | None = None) -> Path:
    """Train per `config`; with `resume`, continue from out_dir/last.pt.

    Under torchrun (RANK/WORLD_SIZE set) every rank calls this; rank 0 alone writes checkpoints,
    metrics and logs, and the process group it opened is closed at the end.
    """
    trainer = Trainer(config, device)
    try:
        if resume:
            trainer.resume()
        return trainer.run(stop_after_epochs)
    finally:
        if trainer.owns_process_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
