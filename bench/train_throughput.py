"""Training throughput of the BiLSTM-CTC step, and whether the input pipeline keeps up with it.

    python bench/train_throughput.py [--device cpu|cuda] [--config YAML | default | librispeech]
                                     [--source audio|cache] [--batch-seconds S] [--steps N] [--[no-]amp]
                                     [--input-files N] [--loader-workers N] [--json OUT]

Part 1 (the step): synthetic batches with LibriSpeech-like utterance lengths (uniform 10–16 s,
bucketed like `BucketBatchSampler`: utterances of one batch within 5 % of each other, padded
duration <= --batch-seconds) of random waveforms (`--source audio`: LogMel runs on the device, as
when training reads audio) or random log-mel frames (`--source cache`: as when training reads the
feature cache, `asr.featcache`) and random character targets (~15 chars/s) go through the full
training step of `asr.train.Trainer.train_epoch`: batch to device, features + CMVN
(`asr.train.features`), SpecAugment, forward (bf16 autocast on CUDA with AMP, the config's
`optim.amp` unless --amp/--no-amp), CTC loss, backward, gradient clipping, AdamW step and the
`lr_lambda` schedule. Warm-up steps are excluded. Reported: audio seconds trained per wall second,
**audio hours per GPU (device) minute**, peak memory (CUDA: allocated and reserved) and the device.

Part 2 (the peer, measured separately): the input pipeline's own rate, on real FLAC files
(../shared/data/librispeech by default), in audio seconds produced per wall second:
  - audio, one process: `SpeechDataset.__getitem__` — `load_audio` decoding and resampling, speed
    perturbation, random gain — with decoding (`cache_audio: false` / first epoch), then from the
    in-memory audio cache (later epochs);
  - feature cache: the files' log-mel cache is built (`asr.featcache.build_feature_cache`, its
    own rate is reported too), then `CachedFeatureDataset.__getitem__` + `collate` in one process
    (reading float16 shards, speed variant, gain, band-limit), and a real `DataLoader` with
    `--loader-workers` processes (default: the config's `data.num_workers`) over bucketed batches.
The ratios `input rate / training rate` say whether the loader keeps up (>= 1) or how many
workers are needed, so the bottleneck is visible.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from runinfo import cpu_model, finish_report, git_commit  # noqa: E402  (bench/ is on sys.path)
from asr.audio import SAMPLE_RATE  # noqa: E402
from asr.augment import spec_augment  # noqa: E402
from asr.data import BucketBatchSampler, Example, FeatureExample, SpeechDataset, collate  # noqa: E402
from asr.featcache import CachedFeatureDataset, FeatureCache, build_feature_cache  # noqa: E402
from asr.features import FeatureConfig, LogMel  # noqa: E402
from asr.manifest import ManifestError, read_manifest, write_manifest  # noqa: E402
from asr.model import BiLSTMCTC  # noqa: E402
from asr.text import CharTokenizer  # noqa: E402
from asr.train import TrainConfig, features, lr_lambda  # noqa: E402

DEFAULT_INPUT_MANIFEST = REPO.parent / "shared/data/librispeech/manifest.tsv"
TRAIN_CLEAN_100_HOURS = 100.6  # LibriSpeech train-clean-100, 28 539 utterances
TARGET_H_PER_GPU_MIN = 50.0  # issue 7: >= 50 audio hours per GPU-minute on one H100

# Named model sizes; everything not given here takes TrainConfig's defaults (augmentation, optimiser).
PRESETS: dict[str, dict] = {
    # the bundled model (recipes/an4/conf/train.yaml, then recipes/default/conf/finetune.yaml)
    "default": {"data": {"max_batch_seconds": 40, "max_batch_size": 32},
                "model": {"subsampling": 3, "hidden_size": 256, "num_layers": 3, "dropout": 0.25}},
    # a LibriSpeech-960-sized model
    "librispeech-512": {"data": {"max_batch_seconds": 120, "max_batch_size": 32},
                        "model": {"subsampling": 3, "hidden_size": 512, "num_layers": 5, "dropout": 0.25}},
}
# Named recipe configs: `--config librispeech` is the LibriSpeech recipe's training YAML (5 x 320, AMP, cache).
CONFIG_FILES: dict[str, Path] = {"librispeech": REPO / "recipes/librispeech/conf/train.yaml"}


# ---------------------------------------------------------------- run description (hardware, commit)

def load_config(name_or_path: str) -> TrainConfig:
    """A preset name or a training YAML → TrainConfig (vocabulary size from the tokenizer)."""
    if name_or_path in PRESETS:
        config = TrainConfig.from_dict(PRESETS[name_or_path])
    elif name_or_path in CONFIG_FILES:
        config = TrainConfig.from_yaml(CONFIG_FILES[name_or_path])
    elif Path(name_or_path).is_file():
        config = TrainConfig.from_yaml(name_or_path)
    else:
        raise ValueError(f"neither a preset ({', '.join([*PRESETS, *CONFIG_FILES])}) nor a YAML file")
    config.model.vocab_size = CharTokenizer().vocab_size
    return config


# ---------------------------------------------------------------- part 1: the training step

def synthetic_batch(rng: np.random.Generator, config: TrainConfig, batch_seconds: float, min_s: float, max_s: float,
                    chars_per_s: float, source: str = "audio"):
    """One length-bucketed batch of random audio (or random float16 log-mel for `source="cache"`) and
    random targets, built with `asr.data.collate`."""
    longest = rng.uniform(min_s, max_s)
    size = max(1, min(config.data.max_batch_size, int(batch_seconds // longest)))
    durations = longest * rng.uniform(0.95, 1.0, size)
    durations[0] = longest
    vocab = config.model.vocab_size
    augment = config.augment
    examples = []
    for i, seconds in enumerate(durations):
        samples = int(seconds * SAMPLE_RATE)
        wave = (0.05 * rng.standard_normal(samples)).astype(np.float32)
        steps = (samples // 160 + 1 + config.model.subsampling - 1) // config.model.subsampling
        n_chars = min(int(round(seconds * chars_per_s)), steps // 2)  # always CTC-feasible
        targets = rng.integers(1, vocab, n_chars).tolist()
        if source == "cache":  # what CachedFeatureDataset yields: float16 frames, log-mel-like values
            feats = (rng.standard_normal((samples // 160 + 1, config.model.input_dim)) * 2 - 6).astype(np.float16)
            examples.append(FeatureExample(f"synthetic-{i}", feats, targets, samples))
            continue
        cutoff = 0.0
        if augment.enabled and rng.random() < augment.bandlimit_prob:
            cutoff = float(rng.choice(augment.bandlimit_hz))
        examples.append(Example(f"synthetic-{i}", wave, targets, cutoff))
    return collate(examples)


class StepRunner:
    """Model, front end, optimiser and schedule set up as `asr.train.Trainer` does, minus the data."""

    def __init__(self, config: TrainConfig, device: torch.device, amp: bool) -> None:
        self.config = config
        self.device = device
        self.use_amp = amp and device.type == "cuda"  # Trainer ignores amp on CPU too
        torch.manual_seed(config.seed)
        self.model = BiLSTMCTC(config.model).to(device).train()
        self.frontend = LogMel(FeatureConfig()).to(device)
        o = config.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        total = max(o.warmup_steps * 10, 10_000)  # schedule length does not matter for speed
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_lambda(step, o.warmup_steps, total, o.final_lr_ratio))

    def step(self, batch) -> float:
        """The body of Trainer.train_epoch's loop for one batch; returns the loss (a host sync, as there)."""
        n_tokens = int(batch.target_lengths.sum())  # from the host batch, as in Trainer (no device sync)
        batch = batch.to(self.device, non_blocking=self.device.type == "cuda")
        with torch.no_grad():
            feats, lengths = features(self.model, self.frontend, batch)
            if self.config.augment.enabled:
                feats = spec_augment(feats, lengths, self.config.augment)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            log_probs, out_lengths = self.model(feats, lengths)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1).float(), batch.targets, out_lengths,
                                            batch.target_lengths, zero_infinity=True, reduction="sum")
        if not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            return float("nan")
        (loss / n_tokens).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss.item() / n_tokens


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(args: argparse.Namespace, config: TrainConfig, device: torch.device) -> dict:
    runner = StepRunner(config, device, args.amp)
    rng = np.random.default_rng(args.seed)
    batches = [synthetic_batch(rng, config, args.batch_seconds, args.min_seconds, args.max_seconds,
                               args.chars_per_second, args.source) for _ in range(args.warmup + args.steps)]
    if device.type == "cuda":  # page-locked, as the training DataLoader delivers them (pin_memory)
        batches = [batch.pin_memory() for batch in batches]
    for i, batch in enumerate(batches[: args.warmup]):
        started = time.perf_counter()
        runner.step(batch)
        sync(device)
        print(f"warm-up step {i + 1}/{args.warmup}: {time.perf_counter() - started:.2f} s", file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s, audio_s, losses, sizes = [], [], [], []
    for i, batch in enumerate(batches[args.warmup:]):
        sync(device)
        started = time.perf_counter()
        losses.append(runner.step(batch))
        sync(device)
        step_s.append(time.perf_counter() - started)
        audio_s.append(float(batch.wave_lengths.sum()) / SAMPLE_RATE)
        sizes.append(len(batch.utt_ids))
        print(f"step {i + 1}/{args.steps}: {len(batch.utt_ids)} utts, {audio_s[-1]:.1f} s audio, "
              f"{step_s[-1]:.2f} s, loss/token {losses[-1]:.2f}", file=sys.stderr)
    total_s, total_audio = sum(step_s), sum(audio_s)
    rate = total_audio / total_s
    reserved_mib = None
    if device.type == "cuda":
        peak_mib, peak_kind = torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
        reserved_mib = torch.cuda.max_memory_reserved(device) / 2**20
    else:
        peak_mib, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"
    return {
        "parameters": runner.model.num_parameters(),
        "source": args.source,
        "amp_bf16": runner.use_amp,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "mean_batch_size": statistics.mean(sizes),
        "audio_s": total_audio,
        "seconds": total_s,
        "median_step_s": statistics.median(step_s),
        "audio_s_per_s": rate,
        "audio_h_per_device_min": rate * 60 / 3600,
        "peak_memory_mib": peak_mib,
        "peak_memory_kind": peak_kind,
        "peak_reserved_mib": reserved_mib,
        "train_clean_100_epoch_min": TRAIN_CLEAN_100_HOURS * 3600 / rate / 60,
        "final_loss_per_token": losses[-1],
    }


# ---------------------------------------------------------------- part 2: the input pipeline

def measure_input(args: argparse.Namespace, config: TrainConfig) -> dict | None:
    """Per-process rate of `SpeechDataset.__getitem__` on real files, with and without the audio cache."""
    manifest = Path(args.input_manifest)
    if not manifest.is_file():
        print(f"note: {manifest} not found; input pipeline not measured", file=sys.stderr)
        return None
    try:
        utts = read_manifest(manifest, check_audio=True)[: args.input_files]
    except ManifestError as exc:
        print(f"note: input pipeline not measured: {exc}", file=sys.stderr)
        return None
    if not utts:
        return None
    tokenizer = CharTokenizer()
    augment = dataclasses.replace(config.augment, enabled=True)  # with speed perturbation, whatever the config says
    for utt in utts:  # page cache: time decoding, not the disk
        Path(utt.audio_path).read_bytes()

    decoding = SpeechDataset(utts, tokenizer, augment, cache_audio=False, seed=args.seed)
    decoding[0]  # lazy imports (soxr), libsndfile set-up
    started = time.perf_counter()
    audio = sum(len(decoding[i].wave) for i in range(len(utts))) / SAMPLE_RATE
    decode_s = time.perf_counter() - started

    cached = SpeechDataset(utts, tokenizer, augment, cache_audio=True, seed=args.seed)
    for i in range(len(utts)):
        cached.audio(i)  # fill the cache (epoch 1 of a cache_audio run)
    cached.set_epoch(1)
    started = time.perf_counter()
    audio_cached = sum(len(cached[i].wave) for i in range(len(utts))) / SAMPLE_RATE
    cached_s = time.perf_counter() - started
    suffixes = sorted({Path(u.audio_path).suffix.lower() for u in utts})
    return {"manifest": display_path(manifest), "files": len(utts), "formats": suffixes,
            "speed_factors": list(augment.speed_factors),
            "decode_augment_audio_s_per_s": audio / decode_s,
            "cached_augment_audio_s_per_s": audio_cached / cached_s,
            "audio_s": audio, **measure_feature_cache(args, config, utts, augment)}


def measure_feature_cache(args: argparse.Namespace, config: TrainConfig, utts: list, augment) -> dict:
    """Build the files' feature cache (timed), then time reading it: one process, and a DataLoader with workers.

    The utterance list is repeated (same cached features, new augmentation draws) until it fills
    at least max(8, 4 × workers) batches of --batch-seconds, so the loader's workers have work to share.
    """
    speeds = sorted({1.0, *map(float, augment.speed_factors)})
    workers = args.loader_workers if args.loader_workers is not None else config.data.num_workers
    with tempfile.TemporaryDirectory(prefix="featcache-bench-") as folder:
        manifest = Path(folder) / "input.tsv"
        write_manifest(manifest, utts)
        started = time.perf_counter()
        build_feature_cache([manifest], Path(folder) / "cache", jobs=args.cache_jobs, speeds=speeds, progress=False)
        build_s = time.perf_counter() - started
        built_audio = sum(u.duration_s / s for u in utts for s in speeds)
        cache = FeatureCache(Path(folder) / "cache")

        total = sum(u.duration_s for u in utts)
        reps = max(1, math.ceil(max(8, 4 * workers) * args.batch_seconds / total))
        repeated = [u for _ in range(reps) for u in utts]
        dataset = CachedFeatureDataset(repeated, CharTokenizer(), cache, augment, seed=args.seed)
        dataset.set_epoch(1)
        sampler = BucketBatchSampler([u.duration_s for u in repeated], args.batch_seconds,
                                     config.data.max_batch_size, shuffle=True, seed=args.seed)
        collate([dataset[0]])  # map the shards
        started = time.perf_counter()
        audio = sum(float(collate([dataset[i] for i in batch]).wave_lengths.sum()) for batch in sampler) / SAMPLE_RATE
        one_s = time.perf_counter() - started

        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                             pin_memory=args.device == "cuda", persistent_workers=workers > 0)
        for _ in loader:  # start the workers, map the shards
            pass
        started, loader_audio, passes = time.perf_counter(), 0.0, 0
        while passes < 2 or time.perf_counter() - started < 2.0:
            loader_audio += sum(float(b.wave_lengths.sum()) for b in loader) / SAMPLE_RATE
            passes += 1
        loader_s = time.perf_counter() - started
        del loader
    return {"cache_speeds": speeds, "cache_build_jobs": args.cache_jobs,
            "cache_build_audio_s_per_s": built_audio / build_s,
            "featcache_one_process_audio_s_per_s": audio / one_s,
            "featcache_loader_workers": workers,
            "featcache_loader_audio_s_per_s": loader_audio / loader_s,
            "featcache_batches_per_pass": len(sampler), "featcache_audio_s_per_pass": audio}


def display_path(path: str | os.PathLike) -> str:
    """`path` relative to the repository when it lies inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--config", default="default",
                        help="training YAML (its model/augment/optim/data sections) or a preset: "
                             + ", ".join(f"{k} ({v['model']['num_layers']}x{v['model']['hidden_size']})"
                                         for k, v in PRESETS.items()))
    parser.add_argument("--batch-seconds", type=float, default=None,
                        help="padded audio seconds per batch (default: the config's data.max_batch_seconds)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 3 on CUDA)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast for the forward pass, CUDA only (default: the config's optim.amp)")
    parser.add_argument("--source", choices=["audio", "cache"], default=None,
                        help="step input: waveforms (LogMel on the device) or cached log-mel "
                             "(default: cache when the config has data.feature_cache)")
    parser.add_argument("--loader-workers", type=int, default=None,
                        help="DataLoader workers for the feature-cache loader rate (default: the config's num_workers)")
    parser.add_argument("--cache-jobs", type=int, default=1, help="processes building the input files' cache")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU (default: torch's)")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="shortest synthetic utterance (default 10)")
    parser.add_argument("--max-seconds", type=float, default=16.0, help="longest synthetic utterance (default 16)")
    parser.add_argument("--chars-per-second", type=float, default=15.0, help="target length rate (default 15)")
    parser.add_argument("--input-manifest", default=str(DEFAULT_INPUT_MANIFEST),
                        help="real audio for the input-pipeline rate (default ../shared/data/librispeech/manifest.tsv)")
    parser.add_argument("--input-files", type=int, default=50, help="files for the input-pipeline rate (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    on_cuda = args.device == "cuda"
    args.steps = args.steps if args.steps is not None else (20 if on_cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 1)
    if args.steps < 1 or args.warmup < 0 or not 0 < args.min_seconds <= args.max_seconds:
        parser.error("need --steps >= 1, --warmup >= 0 and 0 < --min-seconds <= --max-seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (this torch is "
              f"{torch.__version__})", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = load_config(args.config)
    except (ValueError, TypeError, OSError, yaml.YAMLError) as exc:
        print(f"error: --config {args.config}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.batch_seconds is None:
        args.batch_seconds = float(config.data.max_batch_seconds)
    if args.amp is None:
        args.amp = bool(config.optim.amp)
    if args.source is None:
        args.source = "cache" if config.data.feature_cache else "audio"
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    if args.amp and device.type != "cuda":
        print("note: --amp is ignored on CPU (as in training)", file=sys.stderr)

    train = measure_training(args, config, device)
    inputs = measure_input(args, config)
    m = config.model
    report = {
        "bench": "train_throughput",
        "command": "python " + shlex.join(["bench/train_throughput.py", *(sys.argv[1:] if argv is None else argv)]),
        "commit": git_commit(),
        "hardware": {"device": device_name, "device_type": device.type, "cpu": cpu_model(),
                     "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "torch": torch.__version__,
        "config": args.config if args.config in PRESETS or args.config in CONFIG_FILES else display_path(args.config),
        "model_config": m.to_dict(),
        "batch_seconds": args.batch_seconds,
        "utterance_seconds": [args.min_seconds, args.max_seconds],
        "chars_per_second": args.chars_per_second,
        "train": train,
        "input": inputs,
    }
    rate = train["audio_s_per_s"]
    if inputs:
        report["ratios"] = {
            "input_decode_vs_train": inputs["decode_augment_audio_s_per_s"] / rate,
            "input_cached_vs_train": inputs["cached_augment_audio_s_per_s"] / rate,
            "featcache_one_process_vs_train": inputs["featcache_one_process_audio_s_per_s"] / rate,
            "featcache_loader_vs_train": inputs["featcache_loader_audio_s_per_s"] / rate,
        }

    print(f"\ntraining step on {device_name} ({device.type}, {'bf16 autocast' if train['amp_bf16'] else 'fp32'}, "
          f"input {train['source']}): {m.num_layers}x{m.hidden_size} {m.cell}, subsampling {m.subsampling}, "
          f"{train['parameters'] / 1e6:.2f} M params, config {report['config']}")
    print(f"batches: <= {args.batch_seconds:g} s padded, utterances {args.min_seconds:g}-{args.max_seconds:g} s, "
          f"mean {train['mean_batch_size']:.1f} utts/batch; {train['steps']} timed steps after "
          f"{train['warmup_steps']} warm-up")
    print(f"  audio seconds trained per wall second : {rate:10.1f}")
    unit = "GPU" if device.type == "cuda" else "CPU"
    print(f"  audio hours per {unit}-minute            : {train['audio_h_per_device_min']:10.3f}"
          + (f"   (target >= {TARGET_H_PER_GPU_MIN:g}: {'met' if train['audio_h_per_device_min'] >= TARGET_H_PER_GPU_MIN else 'NOT met'})"
             if device.type == "cuda" else ""))
    print(f"  one train-clean-100 epoch (100.6 h)   : {train['train_clean_100_epoch_min']:10.2f} min")
    print(f"  median step                           : {train['median_step_s']:10.3f} s")
    print(f"  peak memory ({train['peak_memory_kind']}){' ' * max(0, 24 - len(train['peak_memory_kind']))}: "
          f"{train['peak_memory_mib']:10.0f} MiB"
          + (f" (reserved {train['peak_reserved_mib']:.0f} MiB)" if train["peak_reserved_mib"] is not None else ""))
    if inputs:
        r = report["ratios"]
        print(f"\ninput pipeline, one process, {inputs['files']} real files {inputs['formats']} from "
              f"{inputs['manifest']} (speed perturbation {inputs['speed_factors']} + gain):")
        print(f"  decode + augment (no cache / epoch 1) : {inputs['decode_augment_audio_s_per_s']:10.1f} audio s/s"
              f"   = {r['input_decode_vs_train']:.2f} x training rate")
        print(f"  augment from cache (cache_audio)      : {inputs['cached_augment_audio_s_per_s']:10.1f} audio s/s"
              f"   = {r['input_cached_vs_train']:.2f} x training rate")
        need = math.ceil(1 / r["input_decode_vs_train"]) if r["input_decode_vs_train"] < 1 else 1
        verdict = ("one loader process keeps up" if need == 1
                   else f"decoding needs >= {need} loader processes (data.num_workers) to keep up")
        print(f"  ratio input/training >= 1 means one process keeps up: {verdict}; with num_workers=0 loading "
              f"and training alternate, so the epoch-1 rate is about "
              f"{1 / (1 / rate + 1 / inputs['decode_augment_audio_s_per_s']):.1f} audio s/s")
        print(f"\nfeature cache (asr.featcache) of the same files, speeds {inputs['cache_speeds']}:")
        label = f"building it ({inputs['cache_build_jobs']} process(es))"
        print(f"  {label:<38}: {inputs['cache_build_audio_s_per_s']:10.1f} audio s/s   (one-off, before training)")
        print(f"  reading it, one process (+ collate)   : {inputs['featcache_one_process_audio_s_per_s']:10.1f} audio s/s"
              f"   = {r['featcache_one_process_vs_train']:.2f} x training rate")
        label = f"DataLoader, {inputs['featcache_loader_workers']} worker(s)"
        print(f"  {label:<38}: {inputs['featcache_loader_audio_s_per_s']:10.1f} audio s/s   = {r['featcache_loader_vs_train']:.2f} x training "
              f"rate -> {'keeps up' if r['featcache_loader_vs_train'] >= 1 else 'the INPUT PIPELINE is the bottleneck'}")
    hw = report["hardware"]
    finish_report(report, wall_start, f"{device_name} | host {hw['cpu']}, {hw['logical_cpus']} logical CPUs, torch "
                  f"threads {hw['torch_threads']}, load avg {hw['load_average_1m']:.2f} | torch {report['torch']}", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
