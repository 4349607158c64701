"""Feature cache: log-mel computed once, stored in a few large shards, read back by training.

Decoding FLAC, resampling and speed perturbation cost more CPU per audio second than a GPU
spends training on it; a cache moves that work to a one-off, parallel preparation step.

Layout of a cache folder (no pickle anywhere; `np.load(..., allow_pickle=False)` reads it all):

    meta.json                 written last (atomically): format, feature config, speeds, source
                              manifests and their MD5 (the signature), shard list, totals
    shard-00000.npy           float16 (frames, n_mels): the raw log-mel of every (utterance, speed)
                              of the shard, concatenated (before CMVN, like `asr.features.LogMel`)
    shard-00000.index.npz     utt_id (str), speed (float32), offset (int64), frames (int64)

A cache stores one variant per speed factor (`--speeds 0.9 1.0 1.1` makes three, like Kaldi's
speed-perturbed copies). `CachedFeatureDataset` then draws the variant from the same per
(seed, epoch, index) random stream as `SpeechDataset` draws its speed factor, adds the random gain
in the log domain (a gain g scales power by g², i.e. adds 2·ln g to every log-mel value) and
applies band-limiting by flooring the mel channels above the cutoff (an approximation of zeroing
the spectrum there). SpecAugment is applied by the training loop, as for audio.

    python -m asr.featcache build --manifest train.tsv --out exp/fbank/train --jobs 8 --speeds 0.9 1.0 1.1
    python -m asr.featcache info exp/fbank/train
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import multiprocessing
import os
import queue
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import librosa
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from asr.audio import HOP_LENGTH, SAMPLE_RATE, AudioError, load_audio
from asr.augment import AugmentConfig, gain_range, speed_perturb
from asr.fileio import atomic_output, read_tagged_json
from asr.data import FeatureExample
from asr.features import LOG_FLOOR, FeatureConfig, LogMel
from asr.manifest import ManifestError, Utterance, read_manifest
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

FORMAT = "asr-featcache-v1"
META = "meta.json"
LOG_FLOOR_VALUE = math.log(LOG_FLOOR)


class FeatureCacheError(ValueError):
    """A feature cache is missing, incomplete, stale or lacks an utterance; the message names the folder."""


# ------------------------------------------------------------------------------------------ build


@dataclass(frozen=True)
class _Item:
    """One (utterance, speed) to compute: what a worker needs, as plain picklable values."""

    utt_id: str
    path: str
    sample_rate: int
    speed: float
    duration_s: float


def manifest_signature(manifests: Sequence[str | os.PathLike], speeds: Sequence[float],
                       feature_config: FeatureConfig) -> str:
    """MD5 over the manifests' bytes, the speeds, the feature settings and the format tag."""
    digest = hashlib.md5(FORMAT.encode())
    for manifest in manifests:
        digest.update(Path(manifest).read_bytes())
    digest.update(json.dumps({"speeds": [float(s) for s in speeds], "features": feature_config.to_dict()},
                             sort_keys=True).encode())
    return digest.hexdigest()


def plan_shards(items: list[_Item], jobs: int, shard_hours: float) -> list[list[_Item]]:
    """Cut items (in order) into contiguous shards of about equal audio duration.

    At least `jobs` shards (so every worker has one) and at most `shard_hours` of audio each
    (a shard is held in memory by its worker while it is computed: 10 h ≈ 0.6 GB of float16).
    """
    total_h = sum(item.duration_s / item.speed for item in items) / 3600
    count = max(1, min(len(items), max(jobs, math.ceil(total_h / shard_hours))))
    bounds = np.cumsum([item.duration_s / item.speed for item in items])
    cuts = np.searchsorted(bounds, bounds[-1] * np.arange(1, count) / count, side="left") + 1
    shards = [items[a:b] for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(items)])]
    return [shard for shard in shards if shard]


class _ProgressChannel(Protocol):
    """Where workers report finished utterances: a `multiprocessing` queue, or a `queue.SimpleQueue` in-process."""

    def put(self, item: int, /) -> None: ...


_progress: _ProgressChannel | None = None


def _init_worker(progress: _ProgressChannel | None) -> None:
    """Worker start-up: one torch thread (the workers are the parallelism) and the progress queue."""
    global _progress
    _progress = progress
    torch.set_num_threads(1)


def _write_shard(task: tuple[int, str, list[_Item], dict, float]) -> dict:
    """Compute one shard's features in length-sorted batches and write its .npy and .index.npz."""
    number, folder, items, feature_config, batch_seconds = task
    frontend = LogMel(FeatureConfig(**feature_config))
    order = sorted(range(len(items)), key=lambda i: items[i].duration_s / items[i].speed)
    feats: list[np.ndarray | None] = [None] * len(items)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * items[order[stop]].duration_s / items[order[stop]].speed <= batch_seconds:
            stop += 1
        chunk = order[start:stop]
        for i, array in zip(chunk, _features(frontend, [items[i] for i in chunk])):
            feats[i] = array
        if _progress is not None:
            _progress.put(len(chunk))
        start = stop
    arrays = [f for f in feats if f is not None]
    assert len(arrays) == len(items)  # `order` visits every item once
    frames = np.array([len(f) for f in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64)
    name = f"shard-{number:05d}"
    _atomic_save(Path(folder) / f"{name}.npy", lambda handle: np.save(handle, np.concatenate(arrays)))
    _atomic_save(Path(folder) / f"{name}.index.npz", lambda handle: np.savez(
        handle, utt_id=np.array([item.utt_id for item in items]), speed=np.array([item.speed for item in items],
                                                                                 dtype=np.float32),
        offset=offsets, frames=frames))
    return {"name": name, "items": len(items), "frames": int(frames.sum())}


@torch.no_grad()
def _features(frontend: LogMel, items: list[_Item]) -> list[np.ndarray]:
    """Load, speed-perturb and featurise a few items as one padded batch → float16 (T_i, n_mels) each."""
    waves = [speed_perturb(load_audio(item.path), item.speed) for item in items]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))  # (B, N_max)
    for i, wave in enumerate(waves):
        batch[i, : len(wave)] = torch.from_numpy(wave)
    cutoff = torch.tensor([item.sample_rate / 2 if item.sample_rate < SAMPLE_RATE else 0.0 for item in items])
    out, frames = frontend(batch, lengths, cutoff)  # (B, T, M), (B,)
    return [out[i, : int(frames[i])].numpy().astype(np.float16) for i in range(len(items))]


def _atomic_save(path: Path, write) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it into place."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def build_feature_cache(manifests: Sequence[str | os.PathLike], out: str | os.PathLike, jobs: int = 2,
                        speeds: Sequence[float] = (1.0,), shard_hours: float = 10.0, batch_seconds: float = 200.0,
                        feature_config: FeatureConfig | None = None, progress: bool = True) -> Path:
    """Compute the log-mel of every utterance of `manifests` (× `speeds`) into the cache folder `out`.

    Shards are written by `jobs` worker processes in parallel (a tqdm bar counts utterances).
    `meta.json` is written last, so an interrupted build is never mistaken for a finished one.
    A folder already holding a cache of the same manifests, speeds and feature settings is kept
    as it is (nothing is recomputed); a stale one is replaced. Returns `out`.
    """
    out = Path(out)
    feature_config = feature_config or FeatureConfig()
    speeds = sorted({float(s) for s in speeds})
    if not speeds or min(speeds) <= 0:
        raise FeatureCacheError(f"{out}: speeds must be positive, got {speeds}")
    if shard_hours <= 0 or batch_seconds <= 0:
        raise FeatureCacheError(f"{out}: shard hours and batch seconds must be positive")
    signature = manifest_signature(manifests, speeds, feature_config)
    meta_path = out / META
    if meta_path.is_file():
        old = _read_meta(out)
        if old.get("signature") == signature:
            log.info("%s: feature cache is up to date (%d utterances)", out, old["utterances"])
            return out
        log.info("%s: the manifests or settings changed; rebuilding the feature cache", out)
        meta_path.unlink()
    utterances = [u for m in manifests for u in read_manifest(m, check_audio=True)]
    if not utterances:
        raise FeatureCacheError(f"{out}: no utterances in {', '.join(map(str, manifests))}")
    items = [_Item(u.utt_id, str(u.audio_path), u.sample_rate, speed, u.duration_s) for u in utterances for speed in speeds]
    jobs = max(1, min(jobs, math.ceil(len(items) / 4)))  # a worker process costs seconds to start
    shards = plan_shards(items, jobs, shard_hours)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("shard-*"):
        stale.unlink()
    started = time.perf_counter()
    tasks = [(n, str(out), shard, feature_config.to_dict(), batch_seconds) for n, shard in enumerate(shards)]
    written = _run_tasks(tasks, jobs, len(items), progress)
    meta = {"format": FORMAT, "signature": signature, "feature_config": feature_config.to_dict(), "speeds": speeds,
            "manifests": [str(Path(m).resolve()) for m in manifests], "utterances": len(utterances),
            "items": len(items), "audio_hours": sum(i.duration_s / i.speed for i in items) / 3600,
            "frames": sum(s["frames"] for s in written), "dtype": "float16", "shards": written,
            "build_seconds": round(time.perf_counter() - started, 3), "jobs": jobs}
    _atomic_save(meta_path, lambda handle: handle.write((json.dumps(meta, indent=1) + "\n").encode()))
    log.info("%s: %d utterances × %d speed(s), %.2f h, %d shards in %.1f s", out, len(utterances), len(speeds),
             meta["audio_hours"], len(written), meta["build_seconds"])
    return out


def _run_tasks(tasks: list[tuple], jobs: int, total: int, progress: bool) -> list[dict]:
    """Run `_write_shard` over tasks (in `jobs` processes when > 1) with a progress bar; results in order."""
    bar = tqdm(total=total, desc="features", unit="utt", disable=not progress, dynamic_ncols=True)
    try:
        if jobs <= 1 or len(tasks) == 1:
            channel: "queue.SimpleQueue[int]" = queue.SimpleQueue()
            _init_worker(channel)
            results = []
            for task in tasks:
                results.append(_write_shard(task))
                while not channel.empty():
                    bar.update(channel.get())
            return results
        context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
        shared: "multiprocessing.Queue[int]" = context.Queue()
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context, initializer=_init_worker,
                                 initargs=(shared,)) as pool:
            futures = [pool.submit(_write_shard, task) for task in tasks]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2)
                _drain(shared, bar)
                for future in done:
                    error = future.exception()
                    if error is not None:  # fail now, not after every other shard
                        for other in pending:
                            other.cancel()
                        raise error
            _drain(shared, bar)
            return [future.result() for future in futures]
    finally:
        _init_worker(None)
        bar.close()


def _drain(channel: "multiprocessing.Queue[int]", bar: tqdm) -> None:
    """Move every progress count waiting in `channel` onto the bar."""
    while True:
        try:
            bar.update(channel.get_nowait())
        except queue.Empty:
            return


# ------------------------------------------------------------------------------------------- read


def _read_meta(folder: Path) -> dict:
    """meta.json of a cache folder, checked for our format tag."""
    return read_tagged_json(Path(folder) / META, FORMAT, FeatureCacheError, what="an asr feature cache",
                            missing=f"{folder}: not a finished feature cache (no {META}; run `python -m asr.featcache build`)")


class FeatureCache:
    """Read access to one or more cache folders: `features(utt_id, speed)` → (T, n_mels) float16.

    Shards are memory-mapped lazily (per process, so DataLoader workers each map their own);
    reading an utterance is one slice of a mapped file.
    """

    def __init__(self, folders: Sequence[str | os.PathLike] | str | os.PathLike) -> None:
        if isinstance(folders, (str, os.PathLike)):
            folders = [folders]
        self.folders = [Path(f) for f in folders]
        self.index: dict[tuple[str, float], tuple[int, int, int]] = {}  # (utt, speed) → (shard, offset, frames)
        self.shard_paths: list[Path] = []
        self.speeds: set[float] = set()
        self.feature_config: FeatureConfig | None = None
        for folder in self.folders:
            self._add_folder(folder)
        self._shards: dict[int, np.ndarray] = {}

    def _add_folder(self, folder: Path) -> None:
        meta = _read_meta(folder)
        config = FeatureConfig(**meta["feature_config"])
        if self.feature_config is not None and config != self.feature_config:
            raise FeatureCacheError(f"{folder}: feature settings differ from {self.folders[0]}")
        self.feature_config = config
        folder_speeds = {round(float(s), 4) for s in meta["speeds"]}
        self.speeds = folder_speeds if not self.shard_paths else self.speeds & folder_speeds
        for shard in meta["shards"]:
            number = len(self.shard_paths)
            self.shard_paths.append(folder / f"{shard['name']}.npy")
            index_path = folder / f"{shard['name']}.index.npz"
            try:
                with np.load(index_path, allow_pickle=False) as index:
                    rows = zip(index["utt_id"].tolist(), index["speed"].tolist(), index["offset"].tolist(),
                               index["frames"].tolist())
                    for utt_id, speed, offset, frames in rows:
                        self.index[(utt_id, round(float(speed), 4))] = (number, int(offset), int(frames))
            except (OSError, ValueError, KeyError) as exc:
                raise FeatureCacheError(f"{index_path}: unreadable shard index ({exc})") from None

    def __getstate__(self) -> dict:
        """Pickled for DataLoader workers without the mapped shards (each process maps its own)."""
        return {**self.__dict__, "_shards": {}}

    def __contains__(self, utt_id: str) -> bool:
        return (utt_id, 1.0) in self.index or any((utt_id, s) in self.index for s in self.speeds)

    def _shard(self, number: int) -> np.ndarray:
        if number not in self._shards:
            path = self.shard_paths[number]
            try:
                self._shards[number] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeatureCacheError(f"{path}: unreadable shard ({exc})") from None
        return self._shards[number]

    def features(self, utt_id: str, speed: float = 1.0) -> np.ndarray:
        """The cached (T, n_mels) float16 frames of `utt_id` at `speed` (a read-only view)."""
        key = (utt_id, round(float(speed), 4))
        if key not in self.index:
            raise FeatureCacheError(f"{', '.join(map(str, self.folders))}: no features for {utt_id} at speed {speed}")
        number, offset, frames = self.index[key]
        return self._shard(number)[offset : offset + frames]

    def check(self, utterances: Sequence[Utterance]) -> None:
        """Raise FeatureCacheError naming the first utterance the cache lacks (at speed 1.0)."""
        for utt in utterances:
            if (utt.utt_id, 1.0) not in self.index:
                raise FeatureCacheError(f"{', '.join(map(str, self.folders))}: no features for {utt.utt_id} "
                                        f"(rebuild the cache from the training manifests)")


class CachedFeatureDataset(Dataset):
    """Manifest utterances → `FeatureExample`s read from a `FeatureCache`, with the same seeded
    augmentation stream as `asr.data.SpeechDataset` (speed variant, gain, band-limit)."""

    def __init__(self, utterances: list[Utterance], tokenizer: CharTokenizer, cache: FeatureCache,
                 augment: AugmentConfig | None = None, seed: int = 0) -> None:
        cache.check(utterances)
        self.utterances = utterances
        self.cache = cache
        self.augment = augment if augment is not None and augment.enabled else None
        if self.augment is not None and self.augment.pad_prob > 0:
            raise FeatureCacheError(f"{cache.folders[0]}: augment.pad_prob needs the audio (noise is added to the "
                                    "waveform); set it to 0 or train without data.feature_cache")
        self.seed = seed
        self.epoch = 0
        self.targets = [tokenizer.encode(u.text) for u in utterances]
        config = cache.feature_config or FeatureConfig()
        centres = librosa.mel_frequencies(config.n_mels + 2, fmin=config.f_min, fmax=config.f_max)[1:-1]
        self.mel_centres = centres.astype(np.float32)  # (n_mels,) Hz
        self.speed_factors = self._usable_speeds()

    def _usable_speeds(self) -> list[float]:
        """Speed factors the augmentation asks for that the cache holds (1.0 alone when none)."""
        if self.augment is None:
            return [1.0]
        wanted = [float(s) for s in self.augment.speed_factors]
        usable = [s for s in wanted if round(s, 4) in self.cache.speeds]
        if len(usable) < len(set(wanted)):
            log.warning("feature cache %s holds speeds %s; speed factors %s are not available and are not used",
                        self.cache.folders[0], sorted(self.cache.speeds), sorted(set(wanted) - set(usable)))
        return usable or [1.0]

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plain_example(self, index: int) -> FeatureExample:
        """The utterance's speed-1.0 features without augmentation (statistics, evaluation)."""
        utt = self.utterances[index]
        feats = self.cache.features(utt.utt_id, 1.0)
        return FeatureExample(utt.utt_id, feats, self.targets[index], _samples(len(feats)))

    def __getitem__(self, index: int) -> FeatureExample:
        utt = self.utterances[index]
        if self.augment is None:
            return self.plain_example(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        speed = float(rng.choice(self.augment.speed_factors))
        if speed not in self.speed_factors:
            speed = 1.0
        feats = np.asarray(self.cache.features(utt.utt_id, speed), dtype=np.float32)  # (T, M) copy
        gain_bounds = gain_range(self.augment.gain_db, self.augment.min_gain_db)
        if gain_bounds is not None:
            gain_db = rng.uniform(*gain_bounds)
            feats = np.maximum(feats + np.float32(gain_db * math.log(10) / 10), np.float32(LOG_FLOOR_VALUE))
        if utt.sample_rate >= SAMPLE_RATE and rng.random() < self.augment.bandlimit_prob:
            cutoff = float(rng.choice(self.augment.bandlimit_hz))
            feats[:, self.mel_centres > cutoff] = LOG_FLOOR_VALUE
        return FeatureExample(utt.utt_id, feats, self.targets[index], _samples(len(feats)))


def _samples(frames: int) -> int:
    """Audio samples at 16 kHz that a centred STFT turns into `frames` frames (the inverse of num_frames)."""
    return max(0, frames - 1) * HOP_LENGTH


# -------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m asr.featcache build|info`."""
    parser = argparse.ArgumentParser(prog="python -m asr.featcache", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="compute log-mel features of manifests into a sharded cache folder")
    p.add_argument("--manifest", nargs="+", required=True, help="manifest(s) whose utterances to cache")
    p.add_argument("--out", required=True, help="cache folder (meta.json + shard-*.npy + shard-*.index.npz)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--speeds", type=float, nargs="+", default=[1.0],
                   help="speed-perturbed variants to store (default 1.0; e.g. 0.9 1.0 1.1)")
    p.add_argument("--shard-hours", type=float, default=10.0, help="audio hours per shard at most (default 10)")
    p.add_argument("--batch-seconds", type=float, default=200.0, help="padded audio seconds per feature batch")
    p = sub.add_parser("info", help="print a cache's meta.json summary")
    p.add_argument("folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "build":
            folder = build_feature_cache(args.manifest, args.out, args.jobs, args.speeds, args.shard_hours,
                                         args.batch_seconds)
            print(folder)
        else:
            meta = _read_meta(Path(args.folder))
            print(json.dumps({k: v for k, v in meta.items() if k != "shards"} | {"shards": len(meta["shards"])}))
    except (FeatureCacheError, ManifestError, AudioError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
