"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-speech folder (`$ASR_SHARED_DATA` or ../shared/data); skips if absent."""
    override = os.environ.get("ASR_SHARED_DATA")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared speech data not found at {path} (set ASR_SHARED_DATA to its folder)")
    return path


MBLW_MANIFEST = Path(__file__).parent / "data" / "an4_mblw.tsv"


def train_overfit(out_dir: Path, **optim) -> Path:
    """Train a small BiLSTM-CTC to memorise the five real AN4 clips of tests/data/an4_mblw.tsv.

    `optim` adds or overrides optimiser settings (e.g. intermediate CTC). Returns the averaged
    model (`avg.pt`); its folder also holds `last.pt`, `best.pt`, `epoch*.pt` and `metrics.jsonl`.
    About 10 CPU-seconds: 70 epochs of 5 single-utterance batches.
    """
    import torch

    import asr.train
    from asr.train import TrainConfig, train

    config = TrainConfig.from_dict({
        "out_dir": str(out_dir),
        "seed": 0,
        "data": {"train": [str(MBLW_MANIFEST)], "dev": {"an4": str(MBLW_MANIFEST)}, "max_batch_seconds": 1.6},
        "model": {"hidden_size": 128, "num_layers": 2, "subsampling": 3, "dropout": 0.0},
        "augment": {"enabled": False},
        "optim": {"epochs": 70, "lr": 8e-3, "warmup_steps": 10, "weight_decay": 0.0, "average_last": 3, **optim},
    })
    threads = torch.get_num_threads()
    # One intra-op thread: for a model this small, extra threads mostly wait on each other, and on a
    # busy 2-core machine that made this fixture ten times slower (80 s instead of 7 s).
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asr.train, "plot_curve", lambda *args, **kwargs: None)  # matplotlib per epoch is slow
            path = train(config, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert path == out_dir / "avg.pt"
    return path


@pytest.fixture(scope="session")
def overfit_model(tmp_path_factory) -> Path:
    """`train_overfit` with the default settings. Dev greedy CER on the same clips reaches 0 around
    epoch 50 with this seed."""
    return train_overfit(tmp_path_factory.mktemp("overfit"))
