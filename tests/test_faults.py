"""Training that survives faults: SIGKILL mid-epoch then --resume (a real subprocess), broken
checkpoints, non-finite losses, and manifest problems reported before training starts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import asr.train
from asr.checkpoint import CheckpointError, atomic_torch_save, load_model, read_checkpoint
from asr.cli import main
from asr.train import TrainConfig, forget_unfinished_epochs, train

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"


def repeated_manifest(path: Path, copies: int) -> Path:
    """The five real clips listed `copies` times under distinct ids (absolute paths)."""
    lines = MANIFEST.read_text().splitlines()
    rows = [lines[0]]
    for copy in range(copies):
        for line in lines[1:]:
            fields = line.split("\t")
            fields[0] = f"{fields[0]}-{copy}"
            fields[2] = str((DATA / fields[2]).resolve())
            rows.append("\t".join(fields))
    path.write_text("\n".join(rows) + "\n")
    return path


def small_config(root: Path, copies: int = 16) -> dict:
    """Two epochs of 80 one-clip batches: long enough (~1 s) to be killed in the middle of one."""
    return {
        "out_dir": str(root / "run"),
        "seed": 1,
        "data": {"train": [str(repeated_manifest(root / "train.tsv", copies))], "dev": {"an4": str(MANIFEST)},
                 "max_batch_seconds": 1.6},
        "model": {"hidden_size": 160, "num_layers": 3, "subsampling": 3, "dropout": 0.1},
        "augment": {"enabled": False},
        "optim": {"epochs": 2, "lr": 3e-3, "warmup_steps": 5, "average_last": 2},
    }


class StderrWatcher:
    """Collect a child's stderr in a thread so the test can wait for a pattern in it."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.text = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for chunk in iter(lambda: stream.read1(4096) if hasattr(stream, "read1") else stream.read(1), b""):
            with self._lock:
                self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                found = re.search(pattern, self.text)
            if found:
                return found
            time.sleep(0.005)
        raise AssertionError(f"{pattern!r} did not appear in {timeout} s; stderr so far:\n{self.text[-2000:]}")


def asr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "asr", *args]


CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory) -> tuple[Path, dict, str]:
    """`asr train` killed with SIGKILL in the middle of epoch 2, then `asr train --resume`."""
    root = tmp_path_factory.mktemp("killed")
    config = small_config(root)
    config_path = root / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = Path(config["out_dir"])
    child = subprocess.Popen(asr_command("train", "--config", str(config_path)), stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, env=CHILD_ENV)
    try:
        watcher = StderrWatcher(child)
        watcher.wait_for(r"epoch 2:\s+\d+%\|[^|]*\|\s*([1-9]\d*)/80", timeout=120)  # a batch of epoch 2 is done
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    at_kill = {
        "returncode": child.returncode,
        "files": sorted(p.name for p in out.iterdir()),
        "last_epoch": read_checkpoint(out / "last.pt")["info"]["epoch"],
        "metrics": (out / "metrics.jsonl").read_text(),
    }
    resumed = subprocess.run(asr_command("train", "--config", str(config_path), "--resume"), capture_output=True,
                             text=True, env=CHILD_ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out, at_kill, resumed.stdout + resumed.stderr  # progress logs go through tqdm.write (stdout)


def test_kill_lands_in_the_middle_of_epoch_two(killed_and_resumed):
    _, at_kill, _ = killed_and_resumed
    assert at_kill["returncode"] == -signal.SIGKILL
    assert at_kill["last_epoch"] == 1  # epoch 1 finished and saved, epoch 2 not
    assert "epoch1.pt" in at_kill["files"] and "epoch2.pt" not in at_kill["files"]
    assert [json.loads(line)["epoch"] for line in at_kill["metrics"].splitlines()] == [1]


def test_resume_continues_after_the_last_finished_epoch(killed_and_resumed):
    out, _, output = killed_and_resumed
    assert f"resumed from {out / 'last.pt'} after epoch 1" in output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r.get("epoch")) for r in rows] == [("epoch", 1), ("epoch", 2), ("average", None)]
    assert read_checkpoint(out / "last.pt")["info"]["epoch"] == 2
    assert read_checkpoint(out / "last.pt")["info"]["step"] == 160  # 80 batches × 2 epochs, none counted twice
    assert load_model(out / "avg.pt").info["averaged_from"] == ["epoch1.pt", "epoch2.pt"]
    assert not list(out.glob(".*.tmp")), "temporary files of the killed save were left behind"


def test_killed_and_resumed_equals_uninterrupted(killed_and_resumed, tmp_path):
    """Only the unfinished epoch was lost: the result is the uninterrupted run's, weight for weight."""
    out, _, _ = killed_and_resumed
    config = small_config(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asr.train, "plot_curve", lambda *args, **kwargs: None)
            straight = train(TrainConfig.from_dict(config), device="cpu")
    finally:
        torch.set_num_threads(threads)
    a, b = read_checkpoint(straight)["state_dict"], read_checkpoint(out / "avg.pt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


# --- broken checkpoints ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(killed_and_resumed) -> Path:
    return killed_and_resumed[0]


@pytest.mark.parametrize("damage", ["truncate", "flip", "zero_tail"])
def test_damaged_last_pt_stops_resume_with_one_line(finished_run, tmp_path, capsys, damage):
    config = small_config(tmp_path, copies=1)
    out = Path(config["out_dir"])
    out.mkdir()
    data = bytearray((finished_run / "last.pt").read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "flip":  # one bit inside the stored weights: torch.load alone would not notice
        data[len(data) // 2] ^= 0x10
    else:
        data[-4096:] = bytes(4096)
    (out / "last.pt").write_bytes(bytes(data))
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    code = main(["train", "--config", str(config_path), "--resume"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(out / "last.pt") in err and "corrupt" in err
    assert not (out / "epoch1.pt").exists()


def test_flipped_bit_in_a_model_is_detected(finished_run, tmp_path, capsys):
    data = bytearray((finished_run / "avg.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt: corrupted checkpoint"):
        load_model(flipped)
    code = main(["transcribe", "--model", str(flipped), str(DATA / "an4" / "an1-mblw-b.flac")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and captured.err.count("\n") == 1


def test_resume_from_a_model_without_training_state(finished_run, tmp_path, capsys):
    config = small_config(tmp_path, copies=1)
    out = Path(config["out_dir"])
    out.mkdir()
    (out / "last.pt").write_bytes((finished_run / "avg.pt").read_bytes())  # an averaged model: no optimizer
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(config_path), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "has no training state" in err and err.count("\n") == 1


def test_checkpoint_with_nan_weights(finished_run, tmp_path):
    state = read_checkpoint(finished_run / "avg.pt")
    key = next(k for k, v in state["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    state["state_dict"][key] = state["state_dict"][key].clone()
    state["state_dict"][key].view(-1)[0] = float("nan")
    path = tmp_path / "diverged.pt"
    atomic_torch_save(state, path)
    with pytest.raises(CheckpointError, match=f"diverged.pt: non-finite weights in {re.escape(key)}"):
        load_model(path)


# --- non-finite losses, metrics after a crash, bad manifests --------------------------------------


def test_non_finite_loss_batches_are_skipped_and_counted(tmp_path, monkeypatch):
    config = small_config(tmp_path, copies=1)
    config["model"] = {"hidden_size": 32, "num_layers": 2, "subsampling": 3, "dropout": 0.0}
    config["optim"]["epochs"] = 1
    real_ctc = torch.nn.functional.ctc_loss
    calls = {"train": 0}

    def ctc_loss_with_a_nan(log_probs, *args, **kwargs):
        loss = real_ctc(log_probs, *args, **kwargs)
        if log_probs.requires_grad:  # a training batch (evaluation runs without gradients)
            calls["train"] += 1
            if calls["train"] in (2, 4):
                return loss * float("nan")
        return loss

    monkeypatch.setattr(torch.nn.functional, "ctc_loss", ctc_loss_with_a_nan)
    monkeypatch.setattr(asr.train, "plot_curve", lambda *args, **kwargs: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig.from_dict(config), device="cpu")
    finally:
        torch.set_num_threads(threads)
    out = Path(config["out_dir"])
    [row] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert calls["train"] == 5  # five one-clip batches
    assert row["skipped_nonfinite_batches"] == 2
    assert row["step"] == 3 and np.isfinite(row["train_loss"])
    state = read_checkpoint(out / "last.pt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_forget_unfinished_epochs(tmp_path):
    rows = [{"kind": "epoch", "epoch": e} for e in (1, 2, 3)] + [{"kind": "average"}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "epoch", "ep'  # cut by the kill
    (tmp_path / "metrics.jsonl").write_text(text)
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    forget_unfinished_epochs(tmp_path, 2)
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == rows[:2]
    assert not list(tmp_path.glob(".*.tmp"))


def test_manifest_problems_stop_training_before_it_starts(tmp_path, capsys):
    manifest = repeated_manifest(tmp_path / "bad.tsv", 2)
    lines = manifest.read_text().splitlines()
    lines[3] = lines[2]  # duplicate id
    lines[5] = lines[5].replace(".flac", "_gone.flac")  # missing audio
    lines[7] = "\t".join(lines[7].split("\t")[:4])  # missing columns
    manifest.write_text("\n".join(lines) + "\n")
    config = small_config(tmp_path, copies=1)
    config["data"]["train"] = [str(manifest)]
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(config))
    code = main(["train", "--config", str(config_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"{manifest}:4: duplicate utt_id" in err and "(and 2 more problems in this manifest)" in err
    assert not Path(config["out_dir"]).exists()  # nothing was started


def test_atomic_write_is_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    """The temporary file's data reaches the disk before the rename, and the rename itself after."""
    from asr import fileio

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    fileio.atomic_write_text(tmp_path / "out.txt", "hello\n")
    assert events == ["fsync", "replace", "fsync"]
    assert (tmp_path / "out.txt").read_text() == "hello\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary file left behind"
