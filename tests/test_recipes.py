"""Recipe smoke test: recipes/an4/run.sh end to end on the real AN4 folder with a seconds-long config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_recipe(shared_data: Path, exp: Path, *stages: str) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "recipes/an4/run.sh"), "--data", str(shared_data), "--exp", str(exp),
               "--config", str(REPO / "recipes/an4/conf/smoke.yaml"), *stages]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_an4_recipe_stages(shared_data, tmp_path):
    exp = tmp_path / "an4"
    done = run_recipe(shared_data, exp, "--stage", "0", "--stop-stage", "5")
    assert done.returncode == 0, done.stderr[-2000:]
    train = (exp / "data/train.tsv").read_text().splitlines()
    dev = (exp / "data/dev.tsv").read_text().splitlines()
    assert len(train) - 1 == 770 and len(dev) - 1 == 90
    train_speakers = {row.split("\t")[1] for row in train[1:]}
    dev_speakers = {row.split("\t")[1] for row in dev[1:]}
    assert not train_speakers & dev_speakers
    assert (exp / "train/avg.pt").is_file() and (exp / "train/metrics.jsonl").is_file()
    summary = json.loads((exp / "decode_greedy_dev/wer.json").read_text())
    assert summary["utterances"] == 90 and summary["failed"] == 0
    # idempotent: a second run skips training and re-scores to the same numbers
    again = run_recipe(shared_data, exp, "--stage", "3", "--stop-stage", "4")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already trained" in again.stderr
    assert json.loads((exp / "decode_greedy_dev/wer.json").read_text())["wer"] == summary["wer"]
    tune_speakers = {row.split("\t")[1] for row in (exp / "data/dev_tune.tsv").read_text().splitlines()[1:]}
    eval_speakers = {row.split("\t")[1] for row in (exp / "data/dev_eval.tsv").read_text().splitlines()[1:]}
    assert tune_speakers == {"fnsv", "mbmg", "mmaf"} and tune_speakers | eval_speakers == dev_speakers
    # stage 5: a 3-gram of the training transcripts, α/β tuned on dev_tune and stored next to the model,
    # then beam decodes of every dev set with those settings
    settings = json.loads((exp / "train/avg.decode.json").read_text())
    assert settings["tuned"]["manifest"] == str(exp / "data/dev_tune.tsv")
    assert Path(settings["lm"]) == (exp / "lm3.arpa").resolve() and "\\3-grams:" in (exp / "lm3.arpa").read_text()
    for name in ("beam", "beamlm"):
        for dev_set, count in (("dev_tune", 39), ("dev_eval", 51), ("dev", 90)):
            assert json.loads((exp / f"decode_{name}_{dev_set}/wer.json").read_text())["utterances"] == count


def test_default_recipe_starts_from_the_an4_model(shared_data, tmp_path):
    """recipes/default stage 2 reuses a finished AN4 run (AN4_EXP); stage 3 starts from its model."""
    import os

    import torch

    an4 = tmp_path / "an4"
    done = run_recipe(shared_data, an4, "--stage", "1", "--stop-stage", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    exp = tmp_path / "default"
    command = ["bash", str(REPO / "recipes/default/run.sh"), "--data", str(shared_data), "--exp", str(exp),
               "--config", str(REPO / "recipes/default/conf/smoke.yaml"), "--stage", "1", "--stop-stage", "4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "AN4_EXP": str(an4)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"already trained: {an4}/train/avg.pt" in done.stderr  # stage 2 did not train again
    final = torch.load(exp / "finetune/avg.pt", map_location="cpu", weights_only=False)
    assert final["info"]["config"]["init_from"] == f"{an4}/train/avg.pt"
    assert final["info"]["config"]["augment"]["min_gain_db"] == -20.0
    for corpus, count in (("an4", 90), ("fsdd", 500)):
        assert json.loads((exp / f"decode_greedy_{corpus}/wer.json").read_text())["utterances"] == count


def test_recipe_rejects_unknown_option(tmp_path):
    done = subprocess.run(["bash", str(REPO / "recipes/an4/run.sh"), "--nonsense"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option --nonsense" in done.stderr


def test_seed_sweep_help_and_bad_option():
    """recipes/default/seed_sweep.sh (a GPU-sized job, not run in CI) documents itself and refuses typos."""
    sweep = str(REPO / "recipes/default/seed_sweep.sh")
    shown = subprocess.run(["bash", sweep, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--an4-seeds" in shown.stdout and "soup" in shown.stdout
    done = subprocess.run(["bash", sweep, "--ft-seed", "1"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option --ft-seed" in done.stderr
