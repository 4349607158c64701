"""Misused commands get one clear line (or a note) instead of a traceback or a silently wrong result.

Real clips from tests/data and the bundled model; each case names what a user did wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_cli import run_cli

from asr.manifest import COLUMNS
from asr.text import unspellable_characters
from asr.transcribe import DEFAULT_MODEL

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"
CLIP = DATA / "an4" / "an1-mblw-b.flac"  # "X I SIXTY ONE"
OTHER = DATA / "an4" / "an3-mblw-b.flac"  # "ENTER SIXTY"

needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model asr/pretrained/model.pt absent")


def one_error_line(err: str) -> str:
    """The single stderr line of a refused command (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asr: error: "), err
    return lines[0]


@pytest.mark.parametrize("device, message", [("bogus", "not a device name"), ("meta", "only cpu and cuda")])
def test_a_bad_device_is_one_line(capsys, device, message):
    code, out, err = run_cli(capsys, "transcribe", "--device", device, CLIP)
    assert code == 1 and out == "" and message in one_error_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [("transcribe", str(CLIP)), ("align", str(CLIP), "X I SIXTY ONE"),
                                     ("decode", "--manifest", str(MANIFEST))])
def test_cuda_without_cuda_is_one_line(capsys, command):
    code, out, err = run_cli(capsys, *command, "--device", "cuda")
    assert code == 1 and out == "" and "CUDA is not available" in one_error_line(err)


@needs_model
def test_srt_of_several_files_needs_an_output_dir(capsys, tmp_path):
    code, out, err = run_cli(capsys, "transcribe", "--format", "srt", CLIP, OTHER)
    assert code == 1 and out == "" and "--output-dir" in one_error_line(err)
    code, out, err = run_cli(capsys, "transcribe", "--format", "srt", "--output-dir", tmp_path, CLIP, OTHER)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["an1-mblw-b.srt", "an3-mblw-b.srt"]
    code, out, err = run_cli(capsys, "transcribe", "--format", "srt", CLIP)  # one file may go to stdout
    assert code == 0 and out.startswith("1\n00:00:")


@needs_model
def test_beam_flags_under_greedy_get_a_note(capsys):
    code, out, err = run_cli(capsys, "transcribe", "--decoder", "greedy", "--lm", "none", "--alpha", "2", CLIP)
    assert code == 0 and out.split("\t")[1].strip()
    assert err.strip() == ("asr: note: --lm, --alpha only apply to --decoder beam (or hybrid); greedy decoding "
                           "ignores them")
    code, _, err = run_cli(capsys, "transcribe", "--decoder", "greedy", CLIP)
    assert code == 0 and err == ""


@needs_model
def test_the_default_decoder_is_the_models_tuned_beam_search(capsys, tmp_path):
    """Without --decoder: beam + LM where the model ships tuned settings naming an LM (the bundled model),
    beam where a beam flag is given, greedy for a model without settings or whose LM is missing."""
    def decoder_used(*argv) -> tuple[str, str]:
        out = tmp_path / "out"
        code, _, err = run_cli(capsys, "decode", "--manifest", MANIFEST, "--out", out, *argv)
        assert code == 0, err
        return json.loads((out / "wer.json").read_text())["decoder"], err

    assert decoder_used() == ("beam", "")
    assert decoder_used("--lm", "none")[0] == "beam"
    assert decoder_used("--decoder", "greedy")[0] == "greedy"
    bare = tmp_path / "bare.pt"
    shutil.copy(DEFAULT_MODEL, bare)
    assert decoder_used("--model", bare) == ("greedy", "")
    (tmp_path / "bare.decode.json").write_text(json.dumps({"lm": "gone.arpa", "beam": 16, "alpha": 0.5, "beta": 0.0}))
    used, err = decoder_used("--model", bare)
    assert used == "greedy" and "gone.arpa, which is missing: decoding greedily" in err
    (tmp_path / "bare.decode.json").write_text("{not json")
    code, _, err = run_cli(capsys, "decode", "--model", bare, "--manifest", MANIFEST)
    assert code != 0 and "bare.decode.json: not a valid decode settings file" in one_error_line(err)


@needs_model
def test_decode_says_what_it_left_out(capsys, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    rows = ["\t".join(COLUMNS), f"good\tmblw\t{CLIP}\t1.5\t16000\tX I SIXTY ONE",
            f"bad\tmblw\t{empty}\t1.0\t16000\tENTER SIXTY"]
    (tmp_path / "mixed.tsv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "decode", "--manifest", tmp_path / "mixed.tsv", "--out", tmp_path / "mixed")
    assert code == 1 and "empty.wav" in one_error_line(err)
    assert out.splitlines()[-1].endswith("| 1 utterances, 1 failed and not scored")
    assert json.loads((tmp_path / "mixed" / "wer.json").read_text())["failed"] == 1

    (tmp_path / "none.tsv").write_text("\n".join([rows[0], rows[2]]) + "\n")
    code, out, err = run_cli(capsys, "decode", "--manifest", tmp_path / "none.tsv", "--out", tmp_path / "none")
    assert code == 1 and "WER" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "empty.wav" in lines[0] and "nothing written" in lines[1]
    assert not any((tmp_path / "none").iterdir())


@needs_model
def test_references_with_digits_get_a_note(capsys, tmp_path):
    rows = ["\t".join(COLUMNS), f"digits\tmblw\t{CLIP}\t1.5\t16000\tX I 61"]
    (tmp_path / "digits.tsv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "decode", "--manifest", tmp_path / "digits.tsv")
    assert code == 0 and out.splitlines()[-1].startswith("WER ")
    assert "1 reference(s)" in err and "'61' in digits" in err and len(err.strip().splitlines()) == 1


@needs_model
@pytest.mark.parametrize("text, message", [("X I 61", "cannot spell ('61')"), ("日本", "cannot spell"),
                                           ("?!", "no word to align")])
def test_align_refuses_text_it_would_silently_drop(capsys, text, message):
    code, out, err = run_cli(capsys, "align", CLIP, text)
    assert code == 1 and out == "" and message in one_error_line(err)


def test_unspellable_characters():
    assert unspellable_characters("Hello, wörld -- it's 'ok'!") == ""  # punctuation and accents are fine
    assert unspellable_characters("ROOM 101, 日本") == "10日本"


def test_train_reports_broken_yaml_in_one_line(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  hidden_size: [\n")
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert code == 1 and "bad.yaml: not valid YAML at line" in one_error_line(err)


def test_lm_build_reads_a_manifest_as_its_transcripts(capsys, tmp_path):
    code, out, err = run_cli(capsys, "lm", "build", "--order", "2", "--text", MANIFEST, "-o", tmp_path / "lm.arpa")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sentences"] == 5 and summary["words"] == 19  # the text column only
    words = {line.split("\t")[1] for line in (tmp_path / "lm.arpa").read_text().splitlines()
             if line.count("\t") >= 1 and not line.startswith("\\")}
    assert {"SIXTY", "ENTER", "EIGHT"} <= words and not words & {"UTT", "SPEAKER", "PATH", "FLAC", "MBLW"}


@needs_model
def test_index_build_with_nothing_indexable_writes_nothing(capsys, tmp_path):
    if not (DEFAULT_MODEL.parent / "search.pt").is_file():
        pytest.skip("bundled search model absent")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    code, out, err = run_cli(capsys, "index", "build", "-o", tmp_path / "idx", empty)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 2 and "nothing written" in lines[1]
    assert not (tmp_path / "idx").exists()
    shutil.copy(CLIP, tmp_path / "good.flac")  # one good file beside the bad one: an index with it
    code, out, err = run_cli(capsys, "index", "build", "-o", tmp_path / "idx", empty, tmp_path / "good.flac")
    assert code == 1 and json.loads(out)["files"] == 1


def test_first_use_of_a_search_is_announced_only_without_a_numba_cache(tmp_path, monkeypatch, capsys):
    from asr.cli import note_first_compile, numba_cache_present

    source = tmp_path / "pkg" / "search.py"
    source.parent.mkdir()
    source.write_text("")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert not numba_cache_present(str(source), "_core")
    note_first_compile(str(source), "_core", "beam search", 25)
    assert capsys.readouterr().err == "asr: note: compiling the beam search for this machine (first use only, about 25 s)\n"
    (source.parent / "__pycache__").mkdir()
    (source.parent / "__pycache__" / "search._core-12.py311.nbi").write_bytes(b"")
    assert numba_cache_present(str(source), "_core") and not numba_cache_present(str(source), "_other")
    note_first_compile(str(source), "_core", "beam search", 25)
    assert capsys.readouterr().err == ""
    elsewhere = tmp_path / "numba_cache"
    (elsewhere / "deep" / "copy").mkdir(parents=True)
    (elsewhere / "deep" / "copy" / "search._other-40.py311.nbi").write_bytes(b"")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(elsewhere))
    assert numba_cache_present(str(source), "_other")
