"""DistributedDataParallel on CPU (gloo, two processes) trains exactly like one process on the same global batches."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import asr.train
from asr.checkpoint import read_checkpoint
from asr.data import BucketBatchSampler
from asr.manifest import read_manifest, write_manifest
from asr.train import TrainConfig, train

DATA = Path(__file__).parent / "data"
PER_RANK_SECONDS = 3.2  # two ranks: global batches of <= 6.4 s, i.e. 4 + 2 of the 6 clips


def config(out_dir: Path, manifest: Path, batch_seconds: float) -> TrainConfig:
    """No dropout and no augmentation: the only difference between the runs is how a batch is split."""
    return TrainConfig.from_dict({
        "out_dir": str(out_dir), "seed": 5,
        "data": {"train": [str(manifest)], "dev": {}, "max_batch_seconds": batch_seconds},
        "model": {"hidden_size": 24, "num_layers": 2, "subsampling": 3, "dropout": 0.0},
        "augment": {"enabled": False},
        "optim": {"epochs": 2, "lr": 5e-3, "warmup_steps": 2, "average_last": 1},
    })


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str, manifest: str) -> None:
    """One torchrun-like rank: train one epoch, stop, then resume for the second (rank 0 writes files)."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    asr.train.plot_curve = lambda *args, **kwargs: None
    torch.distributed.init_process_group("gloo")
    try:
        cfg = config(Path(out_dir), Path(manifest), PER_RANK_SECONDS)
        train(cfg, stop_after_epochs=1, device="cpu")
        torch.distributed.barrier()  # rank 0 has written last.pt
        train(config(Path(out_dir), Path(manifest), PER_RANK_SECONDS), resume=True, device="cpu")
    finally:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def six_clips(tmp_path_factory) -> Path:
    """The five real AN4 clips plus a second id for one of them: 1.3, 1.3, 1.4, 1.5, 1.5, 1.6 s."""
    utts = read_manifest(DATA / "an4_mblw.tsv")
    extra = utts[2].__class__("an3-mblw-b-copy", utts[2].speaker, utts[2].audio_path, utts[2].duration_s,
                              utts[2].sample_rate, utts[2].text)
    manifest = tmp_path_factory.mktemp("ddp") / "six.tsv"
    write_manifest(manifest, utts + [extra])
    return manifest


def test_two_gloo_ranks_match_one_process(six_clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    mp.spawn(_ddp_worker, args=(2, free_port(), str(ddp_dir), str(six_clips)), nprocs=2, join=True)

    monkeypatch.setattr(asr.train, "plot_curve", lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config(single_dir, six_clips, 2 * PER_RANK_SECONDS), device="cpu")
    finally:
        torch.set_num_threads(threads)

    rows = {name: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line)["kind"] == "epoch"] for name, d in {"ddp": ddp_dir, "single": single_dir}.items()}
    assert [r["epoch"] for r in rows["ddp"]] == [1, 2], "rank 0 alone logs, once per epoch, across the resume"
    assert [r["step"] for r in rows["ddp"]] == [r["step"] for r in rows["single"]] == [2, 4]
    for ddp_row, single_row in zip(rows["ddp"], rows["single"]):
        assert ddp_row["train_loss"] == pytest.approx(single_row["train_loss"], rel=1e-5)
    assert rows["ddp"][1]["train_loss"] < rows["ddp"][0]["train_loss"], "the model did learn"

    ddp, single = read_checkpoint(ddp_dir / "last.pt"), read_checkpoint(single_dir / "last.pt")
    assert ddp["info"]["epoch"] == single["info"]["epoch"] == 2
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, atol=2e-5, rtol=1e-4, msg=key)
    assert (ddp_dir / "avg.pt").is_file() and not list(ddp_dir.glob(".*.tmp"))


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_distributed_sampler_splits_global_batches(replicas: int) -> None:
    rng = random.Random(replicas)
    durations = [rng.uniform(1.0, 20.0) for _ in range(200)]
    samplers = [BucketBatchSampler(durations, 60.0, 8, seed=1, num_replicas=replicas, rank=r) for r in range(replicas)]
    single = BucketBatchSampler(durations, 60.0 * replicas, 8 * replicas, seed=1)
    per_rank = [list(s) for s in samplers]
    assert len({len(batches) for batches in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
    seen = []
    for step, parts in enumerate(zip(*per_rank)):
        assert all(parts), f"step {step}: every rank gets utterances"
        seen += [i for part in parts for i in part]
        for part in parts:
            longest = max(durations[i] for i in part)
            assert len(part) <= 8 and (len(part) == 1 or longest * len(part) <= 60.0 + 20.0), "per-rank budget"
    assert sorted(seen) == list(range(200)), "every utterance once per epoch, no rank overlaps another"
    if replicas == 1:
        assert per_rank[0] == list(single)
    merged = [sorted(i for part in parts for i in part) for parts in zip(*per_rank)]
    global_batches = [sorted(b) for b in single]
    assert sum(m in global_batches for m in merged) >= len(merged) - 1, "same global batches as one process"
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != per_rank, "shuffled per epoch"


def test_sampler_refuses_fewer_utterances_than_ranks() -> None:
    with pytest.raises(ValueError, match="cannot feed 3 DDP ranks"):
        BucketBatchSampler([1.0, 2.0], 10.0, num_replicas=3)
