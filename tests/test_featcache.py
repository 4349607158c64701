"""Feature cache: sharded float16 log-mel, built in parallel, read back by training (no pickle)."""

from __future__ import annotations

import json
import re
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import asr.train
from asr.audio import load_audio
from asr.augment import AugmentConfig, speed_perturb
from asr.featcache import (
    META,
    CachedFeatureDataset,
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    main,
)
from asr.features import LOG_FLOOR, LogMel
from asr.manifest import read_manifest, write_manifest
from asr.text import CharTokenizer
from asr.train import TrainConfig, Trainer, TrainingDataError

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"
FP16_TOL = 2e-2  # float16 keeps 11 bits: |x| <= 16 rounds to within 0.008


def reference_features(path: Path, speed: float = 1.0) -> np.ndarray:
    """LogMel of one file computed alone, the way training computes it from audio."""
    wave = speed_perturb(load_audio(path), speed)
    feats, frames = LogMel()(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    return feats[0, : int(frames[0])].numpy()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The five AN4 clips at speeds 0.9 and 1.0, built by two worker processes into several shards."""
    folder = tmp_path_factory.mktemp("cache") / "an4"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_feature_cache([MANIFEST], folder, jobs=2, speeds=[1.0, 0.9], shard_hours=0.0005, progress=False)
    finally:
        torch.set_num_threads(threads)
    return folder


def test_cache_holds_the_logmel_of_every_utterance_and_speed(cache: Path) -> None:
    meta = json.loads((cache / META).read_text())
    assert meta["utterances"] == 5 and meta["items"] == 10 and meta["speeds"] == [0.9, 1.0]
    assert len(meta["shards"]) >= 2, "several shards, written by two workers"
    reader = FeatureCache(cache)
    for utt in read_manifest(MANIFEST):
        for speed in (1.0, 0.9):
            cached = reader.features(utt.utt_id, speed)
            assert cached.dtype == np.float16
            expected = reference_features(utt.audio_path, speed)
            assert cached.shape == expected.shape, (utt.utt_id, speed)
            np.testing.assert_allclose(cached.astype(np.float32), expected, atol=FP16_TOL, rtol=0)
    slow, plain = reader.features("an1-mblw-b", 0.9), reader.features("an1-mblw-b", 1.0)
    assert len(slow) == pytest.approx(len(plain) / 0.9, abs=2)


def test_cache_files_load_without_pickle(cache: Path) -> None:
    names = {p.name for p in cache.iterdir()} - {META}
    assert (cache / META).is_file() and names and all(n.endswith((".npy", ".index.npz")) for n in names)
    for path in cache.glob("*.npy"):
        array = np.load(path, allow_pickle=False)
        assert array.dtype == np.float16 and array.ndim == 2 and array.shape[1] == 80
    for path in cache.glob("*.index.npz"):
        with np.load(path, allow_pickle=False) as index:
            assert set(index.files) == {"utt_id", "speed", "offset", "frames"}
            assert index["utt_id"].dtype.kind == "U"


def test_rebuild_is_skipped_until_the_manifest_changes(cache: Path, tmp_path: Path) -> None:
    stamp = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    build_feature_cache([MANIFEST], cache, jobs=1, speeds=[0.9, 1.0], progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamp, "an up-to-date cache is kept"

    copy = tmp_path / "cache"
    copy.mkdir()
    for path in cache.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    three = tmp_path / "three.tsv"
    write_manifest(three, read_manifest(MANIFEST)[:3])
    meta = json.loads((copy / META).read_text())
    meta["manifests"] = [str(three)]
    (copy / META).write_text(json.dumps(meta))
    build_feature_cache([three], copy, jobs=1, progress=False)  # other manifest and speeds: rebuilt
    rebuilt = FeatureCache(copy)
    assert len(rebuilt.index) == 3 and rebuilt.speeds == {1.0}


def test_missing_utterance_and_unfinished_cache_are_clear_errors(cache: Path, tmp_path: Path) -> None:
    utts = read_manifest(MANIFEST)
    other = [u.__class__("not-cached", u.speaker, u.audio_path, u.duration_s, u.sample_rate, u.text) for u in utts[:1]]
    with pytest.raises(FeatureCacheError, match="no features for not-cached"):
        CachedFeatureDataset(other, CharTokenizer(), FeatureCache(cache))
    with pytest.raises(FeatureCacheError, match="pad_prob needs the audio"):
        CachedFeatureDataset(utts, CharTokenizer(), FeatureCache(cache), AugmentConfig(pad_prob=0.5))
    (tmp_path / "half").mkdir()
    with pytest.raises(FeatureCacheError, match="not a finished feature cache"):
        FeatureCache(tmp_path / "half")


def test_dataset_augmentation_is_seeded_and_acts_on_features(cache: Path) -> None:
    utts = read_manifest(MANIFEST)
    reader = FeatureCache(cache)
    augment = AugmentConfig(speed_factors=[0.9, 1.0, 1.1], gain_db=6.0, bandlimit_prob=0.5)
    dataset = CachedFeatureDataset(utts, CharTokenizer(), reader, augment, seed=1)
    assert dataset.speed_factors == [0.9, 1.0], "1.1 is not in the cache"
    first = [dataset[i].feats.copy() for i in range(5)]
    again = [dataset[i].feats for i in range(5)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    dataset.set_epoch(1)
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, (dataset[i].feats for i in range(5))))

    gain_only = CachedFeatureDataset(utts, CharTokenizer(), reader,
                                     AugmentConfig(speed_factors=[1.0], gain_db=6.0, bandlimit_prob=0.0), seed=2)
    plain = gain_only.plain_example(0).feats.astype(np.float32)
    shifted = gain_only[0].feats
    above = plain > math.log(LOG_FLOOR) + 2  # away from the floor a gain is a constant log offset
    offset = shifted[above] - plain[above]
    assert abs(offset.mean()) > 0.01 and np.ptp(offset) < 1e-4
    assert abs(offset.mean()) <= 6.0 * math.log(10) / 10 + 1e-5

    quieter = CachedFeatureDataset(utts, CharTokenizer(), reader,
                                   AugmentConfig(speed_factors=[1.0], gain_db=0.0, min_gain_db=-20.0,
                                                 bandlimit_prob=0.0), seed=2)
    offsets = []
    for epoch in range(8):  # min_gain_db bounds the gain from below, as in the audio pipeline
        quieter.set_epoch(epoch)
        feats = quieter[0].feats
        offsets.append(float(np.median(feats[above] - plain[above])) / (math.log(10) / 10))  # dB
    assert all(-20.0 - 1e-3 <= g <= 1e-3 for g in offsets) and min(offsets) < -5.0

    band = CachedFeatureDataset(utts, CharTokenizer(), reader,
                                AugmentConfig(speed_factors=[1.0], gain_db=0.0, bandlimit_prob=1.0,
                                              bandlimit_hz=[4000.0]), seed=0)
    limited = band[0].feats
    high = band.mel_centres > 4000.0
    assert high.any() and np.all(limited[:, high] == np.float32(math.log(LOG_FLOOR)))
    np.testing.assert_array_equal(limited[:, ~high], band.plain_example(0).feats.astype(np.float32)[:, ~high])


def tiny(out_dir: Path, **data) -> TrainConfig:
    return TrainConfig.from_dict({
        "out_dir": str(out_dir), "seed": 0,
        "data": {"train": [str(MANIFEST)], "dev": {"an4": str(MANIFEST)}, "max_batch_seconds": 3.0, **data},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "augment": {"enabled": False},
        "optim": {"epochs": 1, "warmup_steps": 2, "average_last": 1},
    })


def test_training_from_the_cache_matches_training_from_audio(cache: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asr.train, "plot_curve", lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    try:
        sources = {"audio": {}, "cache": {"feature_cache": str(cache), "dev_cache": {"an4": str(cache)}}}
        for name, data in sources.items():
            trainer = Trainer(tiny(tmp_path / name, **data), device="cpu")
            assert isinstance(next(iter(trainer.train_loader)).feats, torch.Tensor) == (name == "cache")
            trainer.run()
            rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            runs[name] = (trainer.model.cmvn.mean.clone(), rows[0])
    finally:
        torch.set_num_threads(threads)  # later tests keep the process's thread count
    torch.testing.assert_close(runs["cache"][0], runs["audio"][0], atol=5e-3, rtol=1e-3)  # float16 rounding
    audio_row, cache_row = runs["audio"][1], runs["cache"][1]
    assert cache_row["train_loss"] == pytest.approx(audio_row["train_loss"], rel=1e-3)
    assert cache_row["dev"]["an4"]["loss"] == pytest.approx(audio_row["dev"]["an4"]["loss"], rel=1e-3)


def test_spec_augment_is_applied_to_cached_features(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original = asr.train.spec_augment

    def spy(feats, lengths, config, generator=None):
        out = original(feats, lengths, config, generator)
        seen.append(float((out == 0).float().mean() - (feats == 0).float().mean()))
        return out

    monkeypatch.setattr(asr.train, "spec_augment", spy)
    config = tiny(tmp_path / "aug", feature_cache=[str(cache)], dev={})
    config.augment = AugmentConfig(enabled=True, speed_factors=[1.0], bandlimit_prob=0.0, gain_db=0.0,
                                   time_masks=2, freq_masks=2, freq_mask_width=15)
    trainer = Trainer(config, device="cpu")
    compute = asr.train.compute_cmvn
    compute(trainer.model, trainer.train_set, trainer.frontend, trainer.device)
    trainer.train_epoch()
    assert len(seen) == len(trainer.sampler) and max(seen) > 0.01, "masks zero some cached frames and bins"


def test_training_reports_a_cache_without_the_utterances(tmp_path: Path) -> None:
    other = tmp_path / "one.tsv"
    write_manifest(other, read_manifest(MANIFEST)[:1])
    build_feature_cache([other], tmp_path / "one", jobs=1, progress=False)
    with pytest.raises(TrainingDataError, match="no features for an2-mblw-b"):
        Trainer(tiny(tmp_path / "x", feature_cache=[str(tmp_path / "one")]), device="cpu")


def test_cli_build_info_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "two.tsv"
    write_manifest(short, read_manifest(MANIFEST)[:2])
    assert main(["build", "--manifest", str(short), "--out", str(tmp_path / "c"), "--jobs", "1"]) == 0
    assert main(["info", str(tmp_path / "c")]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["utterances"] == 2 and info["dtype"] == "float16"
    assert main(["build", "--manifest", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.tsv" in err and "\n" not in err
    os.remove(tmp_path / "c" / META)
    assert main(["info", str(tmp_path / "c")]) == 1


@pytest.mark.parametrize("content, problem", [
    (None, "not a finished feature cache"),
    ("{not json", "unreadable metadata of an asr feature cache"),
    ('{"format": 1}', "not an asr feature cache"),
])
def test_broken_cache_metadata_is_named(tmp_path, content, problem):
    from asr.featcache import META, FeatureCache, FeatureCacheError

    if content is not None:
        (tmp_path / META).write_text(content)
    with pytest.raises(FeatureCacheError, match=re.escape(problem)) as caught:
        FeatureCache([tmp_path])
    assert str(tmp_path) in str(caught.value)
