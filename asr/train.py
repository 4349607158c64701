"""Training loop for the BiLSTM-CTC model: single process or torchrun DDP, exact resume.

`asr train --config conf.yaml [--resume]`. The config's sections are `data`, `model`, `augment`
and `optim` (see recipes/*/conf/*.yaml). Each epoch writes `epoch{N}.pt` and `last.pt`
atomically, `best.pt` when the dev WER improves, a line of `metrics.jsonl` and `curve.png`;
the run ends by averaging the last `average_last` epochs into `avg.pt`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.augment import AugmentConfig, spec_augment
from asr.checkpoint import atomic_torch_save, average_checkpoints, build_state, model_from_state, read_checkpoint
from asr.data import Batch, BucketBatchSampler, SpeechDataset, collate
from asr.decoding.greedy import greedy_decode
from asr.features import FeatureConfig, LogMel, accumulate_stats
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


@dataclass
class OptimConfig:
    """Optimiser and schedule settings."""

    epochs: int = 30
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02  # cosine decay ends at lr × this
    grad_clip: float = 5.0
    average_last: int = 5
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU


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
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a YAML config. `$VAR` / `${VAR}` in strings are expanded from the environment (recipes
        export `EXP`); relative paths are relative to the current directory (the repository root)."""
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
        return cls.from_dict(expand_env(raw))

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


def lr_lambda(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up then cosine decay to `final_ratio`; a multiplier of the base LR."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def compute_cmvn(model: BiLSTMCTC, dataset: SpeechDataset, frontend: LogMel, device: torch.device,
                 batch_size: int = 16) -> None:
    """Global mean/variance of un-augmented training features into `model.cmvn`."""
    total = total_sq = None
    count = 0
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(len(dataset), start + batch_size))
        batch = collate([dataset.plain_example(i) for i in indices]).to(device)
        feats, lengths = frontend(batch.waves, batch.wave_lengths, batch.cutoff_hz)
        s, sq, n = accumulate_stats(feats, lengths)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += n
    model.cmvn.set_stats(total.float(), total_sq.float(), count)


def features(model: BiLSTMCTC, frontend: LogMel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveform batch → normalised features (B, T, D) and frame lengths (B,)."""
    feats, lengths = frontend(batch.waves, batch.wave_lengths, batch.cutoff_hz)
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


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class Trainer:
    """Owns model, optimiser, data and the epoch loop for one run."""

    def __init__(self, config: TrainConfig, device: str | None = None) -> None:
        self.config = config
        self.rank, self.world_size, local_rank = distributed_context()
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.out_dir = Path(config.out_dir)
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
        self.train_set = SpeechDataset(train_utts, self.tokenizer, config.augment, config.data.cache_audio, config.seed)
        self.sampler = BucketBatchSampler([u.duration_s for u in train_utts], config.data.max_batch_seconds,
                                          config.data.max_batch_size, shuffle=True, seed=config.seed,
                                          num_replicas=self.world_size, rank=self.rank)
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                       num_workers=config.data.num_workers)
        self.dev_loaders = {name: self._dev_loader(path) for name, path in config.data.dev.items()}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.optim.lr,
                                           weight_decay=config.optim.weight_decay)
        total_steps = config.optim.epochs * len(self.sampler)
        o = config.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_lambda(step, o.warmup_steps, total_steps, o.final_lr_ratio))
        self.epoch = 0
        self.step = 0
        self.best_wer = float("inf")
        self.ddp_model = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _dev_loader(self, manifest: str) -> DataLoader:
        utts, _ = load_utterances([manifest], self.config.data.max_duration, self.tokenizer,
                                  self.config.model.subsampling)
        dataset = SpeechDataset(utts, self.tokenizer, None, self.config.data.cache_audio, self.config.seed)
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
        self.model.load_state_dict(model_from_state(state, path).model.state_dict())
        self.optimizer.load_state_dict(state["training_state"]["optimizer"])
        self.scheduler.load_state_dict(state["training_state"]["scheduler"])
        self.epoch = int(state["info"]["epoch"])
        self.step = int(state["info"]["step"])
        self.best_wer = float(state["info"]["best_wer"])
        if self.is_main:
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
        loss_sum, tokens, skipped, audio_s = 0.0, 0, 0, 0.0
        start = time.time()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}", disable=not self.is_main, leave=False,
                   dynamic_ncols=True)
        for batch in bar:
            batch = batch.to(self.device)
            with torch.no_grad():
                feats, lengths = features(self.model, self.frontend, batch)
                if self.config.augment.enabled:
                    feats = spec_augment(feats, lengths, self.config.augment)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                log_probs, out_lengths = self.ddp_model(feats, lengths)
            loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1).float(), batch.targets, out_lengths,
                                                batch.target_lengths, zero_infinity=True, reduction="sum")
            n_tokens = int(batch.target_lengths.sum())
            if not torch.isfinite(loss):
                skipped += 1
                self.optimizer.zero_grad(set_to_none=True)
                continue
            (loss / n_tokens).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            loss_sum += loss.item()
            tokens += n_tokens
            audio_s += float(batch.wave_lengths.sum()) / 16000
            bar.set_postfix(loss=f"{loss_sum / tokens:.3f}", audio_x=f"{audio_s / (time.time() - start):.0f}")
        return loss_sum / max(1, tokens), skipped

    def run(self, stop_after_epochs: int | None = None) -> Path:
        """Train until `optim.epochs` (or `stop_after_epochs` more epochs); returns the final model path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out_dir / "metrics.jsonl"
        if self.epoch == 0 and self.config.init_from:
            self.load_initial_weights(Path(self.config.init_from))
        elif self.epoch == 0:
            compute_cmvn(self.model, self.train_set, self.frontend, self.device)
            if self.is_main:
                log(f"{len(self.train_set)} training utterances; dropped {self.dropped}; "
                    f"{self.model.num_parameters() / 1e6:.2f} M parameters")
        epochs_run = 0
        while self.epoch < self.config.optim.epochs:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
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
        if self.is_main:
            return self.finish()
        return self.out_dir / "last.pt"

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
    """Train per `config`; with `resume`, continue from out_dir/last.pt."""
    trainer = Trainer(config, device)
    if resume:
        trainer.resume()
    return trainer.run(stop_after_epochs)
