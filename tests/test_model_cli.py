"""`asr model info | average | export` on a real (overfitted) model and the bundled one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from asr.checkpoint import load_model, read_checkpoint
from asr.cli import main

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "asr" / "pretrained" / "model.pt"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def epoch_files(model: Path) -> list[Path]:
    """The per-epoch checkpoints kept next to an averaged model, oldest first."""
    return sorted(model.parent.glob("epoch*.pt"), key=lambda p: int(re.sub(r"\D", "", p.stem)))


def test_info_of_the_bundled_model(capsys):
    code, out, err = run_cli(capsys, "model", "info")
    assert code == 0, err
    parameters = load_model(BUNDLED).model.num_parameters()
    first = out.splitlines()[0]
    assert first.startswith(str(BUNDLED)) and "float16 weights, inference only" in first
    assert f"{parameters / 1e6:.2f} M parameters" in out
    assert "80 log-mel, 25 ms window / 10 ms hop at 16000 Hz" in out
    settings = json.loads((BUNDLED.parent / "model.decode.json").read_text())
    assert f"model.decode.json: beam {settings['beam']}, alpha {settings['alpha']:g}, beta {settings['beta']:g}" in out
    assert "decoder:   beam by default" in out


def test_info_json_of_a_trained_checkpoint(capsys, overfit_model):
    last = overfit_model.parent / "last.pt"
    code, out, err = run_cli(capsys, "model", "info", "--json", last)
    assert code == 0, err
    desc = json.loads(out)
    loaded = load_model(last)
    assert desc["parameters"] == loaded.model.num_parameters()
    assert len(desc["symbols"]) == desc["model"]["vocab_size"] == loaded.tokenizer.vocab_size
    assert desc["resumable"] and desc["weights_dtype"] == "float32" and desc["cmvn"]
    assert desc["training"]["epoch"] == read_checkpoint(last)["info"]["epoch"]
    assert desc["decode_settings"] is None and desc["default_decoder"] == "greedy"


def test_average_reproduces_the_training_average(capsys, overfit_model, tmp_path):
    epochs = epoch_files(overfit_model)
    averaged_from = read_checkpoint(overfit_model)["info"]["averaged_from"]
    assert [p.name for p in epochs[-len(averaged_from):]] == averaged_from
    out_path = tmp_path / "avg.pt"
    code, _, err = run_cli(capsys, "model", "average", "-o", out_path, *epochs[-len(averaged_from):])
    assert code == 0, err
    ours, theirs = read_checkpoint(out_path)["state_dict"], read_checkpoint(overfit_model)["state_dict"]
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])
    code, out, _ = run_cli(capsys, "model", "info", out_path)
    assert f"the average of {len(averaged_from)} checkpoints" in out


def test_average_refuses_checkpoints_of_different_models(capsys, overfit_model, tmp_path):
    state = read_checkpoint(overfit_model)
    state["model_config"] = {**state["model_config"], "hidden_size": 64}
    other = tmp_path / "other.pt"
    torch.save(state, other)
    out_path = tmp_path / "avg.pt"
    code, out, err = run_cli(capsys, "model", "average", "-o", out_path, overfit_model, other)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "other.pt: its model config differs" in err
    assert not out_path.exists()


def test_export_halves_the_file_and_keeps_the_transcript(capsys, overfit_model, tmp_path):
    last = overfit_model.parent / "last.pt"
    small = tmp_path / "small.pt"
    code, _, err = run_cli(capsys, "model", "export", last, "-o", small)
    assert code == 0, err
    assert small.stat().st_size < last.stat().st_size / 4  # no optimiser state (2 × weights), and float16
    state = read_checkpoint(small)
    assert "training_state" not in state
    assert all(v.dtype == torch.float16 for v in state["state_dict"].values() if v.is_floating_point())
    clip = REPO / "tests" / "data" / "an4" / "an1-mblw-b.flac"
    texts = []
    for model in (last, small):
        code, out, err = run_cli(capsys, "transcribe", "--model", model, clip)
        assert code == 0, err
        texts.append(out.split("\t")[1])
    assert texts[0] == texts[1]


def test_info_of_files_that_are_not_models(capsys, tmp_path):
    empty, text = tmp_path / "empty.pt", tmp_path / "notes.pt"
    empty.write_bytes(b"")
    text.write_text("not a model")
    for path, problem in ((empty, "empty file (0 bytes)"), (text, "not a checkpoint file"),
                          (tmp_path / "missing.pt", "no such checkpoint file")):
        code, out, err = run_cli(capsys, "model", "info", path)
        assert code == 1 and out == ""
        assert err == f"asr: error: {path}: {problem}" + err.split(problem, 1)[1] and err.count("\n") == 1
