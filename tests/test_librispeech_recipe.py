"""LibriSpeech recipe smoke test: every stage of recipes/librispeech/run.sh on ../shared/data/librispeech.

Trains on the test-other utterances (50) and evaluates on dev-clean (2) with conf/smoke.yaml (a 1-layer
16-cell model, one epoch, cached features): it checks that the stages run and hand each other the
right files, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from asr.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "recipes/librispeech/run.sh"


def run_recipe(data: Path, exp: Path, *options: str) -> subprocess.CompletedProcess:
    command = ["bash", str(RUN), "--data", str(data), "--exp", str(exp), "--train", "test-other",
               "--dev", "dev-clean", "--test", "dev-clean", "--config", str(REPO / "recipes/librispeech/conf/smoke.yaml"),
               "--nj", "1", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def librispeech(shared_data: Path) -> Path:
    folder = shared_data / "librispeech"
    if not (folder / "test-other").is_dir() or not (folder / "dev-clean").is_dir():
        pytest.skip(f"{folder} lacks the test-other/ and dev-clean/ LibriSpeech parts")
    return folder


def test_librispeech_recipe_end_to_end(librispeech: Path, tmp_path: Path) -> None:
    exp = tmp_path / "ls"
    done = run_recipe(librispeech, exp, "--stage", "0", "--stop-stage", "7")
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in range(8):
        assert f"=== stage {stage}:" in done.stderr
    assert "all parts present" in done.stderr, "stage 0 downloads nothing when the parts are there"
    train, dev = read_manifest(exp / "data/train.tsv", check_audio=True), read_manifest(exp / "data/dev.tsv")
    assert (len(train), len({u.speaker for u in train}), len(dev)) == (50, 5, 2)
    for name, count in {"train": 50, "dev": 2}.items():
        meta = json.loads((exp / f"fbank/{name}/meta.json").read_text())
        assert meta["utterances"] == count and meta["dtype"] == "float16"
    assert "\\data\\" in (exp / "lm/3gram.arpa").read_text()[:200]
    metrics = [json.loads(line) for line in (exp / "train/metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["kind"] == "epoch" and metrics[0]["train_loss"] > 0 and "dev" in metrics[0]["dev"]
    assert (exp / "train/avg.pt").is_file()
    for decoder in ("greedy", "beam"):
        summary = json.loads((exp / f"decode_{decoder}_dev-clean/wer.json").read_text())
        assert summary["utterances"] == 2 and summary["failed"] == 0
        assert summary["decoder"] == decoder
    rows = (exp / "scores.tsv").read_text().splitlines()
    assert rows[0].startswith("part\tdecoder") and [r.split("\t")[:2] for r in rows[1:]] == [
        ["dev-clean", "greedy"], ["dev-clean", "beam"]]

    again = run_recipe(librispeech, exp, "--stage", "2", "--stop-stage", "4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "feature cache is up to date" in again.stderr
    assert "LM exists" in again.stderr and "already trained" in again.stderr


@pytest.mark.parametrize("option, message", [(["--nonsense"], "unknown option --nonsense"),
                                             (["--lm-source", "web"], "--lm-source must be")])
def test_recipe_rejects_bad_options(option: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(RUN), *option], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr
