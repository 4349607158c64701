"""The `asr` command on real audio with a model trained (overfitted) on the five test clips."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr

from asr.cli import main
from asr.manifest import read_manifest

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "an4_mblw.tsv"
REPO = Path(__file__).resolve().parents[1]
UTTS = {u.audio_path.name: u for u in read_manifest(MANIFEST)}
CLIP = DATA / "an4" / "an1-mblw-b.flac"  # "X I SIXTY ONE", 1.5 s


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def close_to(reference: str, hypothesis: str, max_cer: float = 0.2) -> bool:
    return jiwer.cer(reference, hypothesis) <= max_cer


def check_transcript(obj: dict, reference: str | None = None) -> None:
    """The jsonl contract: path, text, duration, words with word/start/end/conf, sane times."""
    assert set(obj) == {"path", "text", "duration", "words"}
    duration = sf.info(obj["path"]).duration
    assert obj["duration"] == pytest.approx(duration, abs=2e-3)
    if reference is not None:
        assert close_to(reference, obj["text"]), (reference, obj["text"])
    words = obj["words"]
    assert " ".join(w["word"] for w in words) == obj["text"]
    previous_end = 0.0
    for w in words:
        assert set(w) == {"word", "start", "end", "conf"}
        assert previous_end <= w["start"] <= w["end"] <= obj["duration"], words
        assert w["start"] < w["end"] or w["end"] == obj["duration"], words  # only a clipped last step is empty
        assert 0.0 <= w["conf"] <= 1.0
        previous_end = w["end"]


# --- transcribe ---------------------------------------------------------------------------------------


def test_transcribe_jsonl(capsys, overfit_model):
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", CLIP)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["path"] == str(CLIP)
    assert obj["duration"] == pytest.approx(1.5)
    check_transcript(obj, UTTS[CLIP.name].text)
    assert len(obj["words"]) >= 3
    assert err == ""


def test_transcribe_text_format(capsys, overfit_model):
    paths = [DATA / "an4" / name for name in ("an2-mblw-b.flac", "cen2-mblw-b.flac")]
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, *paths)
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in paths]  # input order
    for line, path in zip(lines, paths):
        assert close_to(UTTS[path.name].text, line.split("\t")[1])


def test_transcribe_srt(capsys, overfit_model):
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "srt", CLIP)
    assert code == 0, err
    blocks = out.strip().split("\n\n")
    assert blocks[0].splitlines()[0] == "1"
    words = []
    previous = -1.0
    for number, block in enumerate(blocks, start=1):
        index, timing, text = block.splitlines()
        assert int(index) == number
        match = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", timing)
        assert match, timing
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        start, end = 3600 * h1 + 60 * m1 + s1 + ms1 / 1000, 3600 * h2 + 60 * m2 + s2 + ms2 / 1000
        assert previous <= start < end <= 1.5
        previous = end
        words += text.split()
    assert close_to(UTTS[CLIP.name].text, " ".join(words))


def test_transcribe_vtt_and_ctm_agree_with_jsonl(capsys, overfit_model):
    """WebVTT cues and CTM lines carry the same words and times as the jsonl output of the same run."""
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", CLIP)
    assert code == 0, err
    words = json.loads(out)["words"]
    assert words
    code, vtt, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "vtt", CLIP)
    assert code == 0, err
    header, *cues = vtt.split("\n\n")
    assert header == "WEBVTT"
    timing, text = cues[0].splitlines()
    assert timing == f"00:00:{words[0]['start']:06.3f} --> 00:00:{words[-1]['end']:06.3f}"
    assert text == " ".join(w["word"] for w in words)
    code, ctm, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "ctm", CLIP, CLIP)
    assert code == 0, err  # CTM is a stream of lines: several files may go to stdout
    rows = [line.split() for line in ctm.splitlines()]
    assert len(rows) == 2 * len(words)
    for row, word in zip(rows, words + words):
        recording, channel, start, duration, token, conf = row
        assert (recording, channel, token) == (CLIP.stem, "1", word["word"])
        assert float(start) == pytest.approx(word["start"], abs=1e-3)
        assert float(start) + float(duration) == pytest.approx(word["end"], abs=2e-3)
        assert float(conf) == pytest.approx(word["conf"], abs=1e-3)


def test_transcribe_output_dir(capsys, overfit_model, tmp_path):
    out_dir = tmp_path / "out"
    paths = [DATA / "an4" / "an3-mblw-b.flac", DATA / "an4" / "an4-mblw-b.flac"]
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl",
                             "--output-dir", out_dir, *paths)
    assert code == 0, err
    assert out == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ["an3-mblw-b.json", "an4-mblw-b.json"]
    for path in paths:
        obj = json.loads((out_dir / f"{path.stem}.json").read_text())
        assert obj["path"] == str(path)
        check_transcript(obj, UTTS[path.name].text)
    code, _, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "srt", "--output-dir",
                           out_dir, paths[0])
    assert code == 0, err
    assert (out_dir / "an3-mblw-b.srt").read_text().startswith("1\n00:00:0")


def test_output_dir_name_clash_is_reported_not_overwritten(capsys, overfit_model, tmp_path):
    """Two inputs with the same file name in different folders: the second is refused, the first kept."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DATA / "an4" / "an2-mblw-b.flac", other / "an3-mblw-b.flac")  # same name, other words
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl",
                           "--output-dir", out_dir, DATA / "an4" / "an3-mblw-b.flac", other / "an3-mblw-b.flac")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and str(other / "an3-mblw-b.flac") in err
    kept = json.loads((out_dir / "an3-mblw-b.json").read_text())
    assert kept["path"] == str(DATA / "an4" / "an3-mblw-b.flac")


def test_train_without_usable_data_is_one_line(capsys, tmp_path):
    manifest = tmp_path / "empty_text.tsv"
    rows = MANIFEST.read_text().splitlines()
    manifest.write_text(rows[0] + "\n" + rows[1].rsplit("\t", 1)[0].replace("an4/", str(DATA / "an4") + "/") + "\t \n")
    config = tmp_path / "train.yaml"
    config.write_text(f"out_dir: {tmp_path / 'exp'}\ndata:\n  train: [{manifest}]\n")
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert code == 1
    assert err.startswith("asr: error: no usable training utterances") and len(err.strip().splitlines()) == 1


def test_beam_with_lm_built_by_the_cli(capsys, overfit_model, tmp_path):
    """`asr lm build` on the clips' transcripts, then `--decoder beam --lm --lexicon` stays in that vocabulary."""
    text = tmp_path / "text.txt"
    text.write_text("\n".join(u.text for u in UTTS.values()) + "\n")
    code, out, err = run_cli(capsys, "lm", "build", "--order", "2", "--text", text, "-o", tmp_path / "lm.arpa")
    assert code == 0, err
    assert json.loads(out)["sentences"] == len(UTTS)
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--decoder", "beam", "--lm",
                             tmp_path / "lm.arpa", "--lexicon", "--format", "jsonl", CLIP)
    assert code == 0, err
    obj = json.loads(out)
    check_transcript(obj, UTTS[CLIP.name].text)
    vocabulary = {w for u in UTTS.values() for w in u.text.split()}
    assert set(obj["text"].split()) <= vocabulary


def test_transcribe_directory_is_walked(capsys, overfit_model):
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", DATA / "an4")
    assert code == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert [Path(o["path"]).name for o in objs] == sorted(UTTS)
    refs = [UTTS[Path(o["path"]).name].text for o in objs]
    assert jiwer.cer(refs, [o["text"] for o in objs]) < 0.10
    for obj, ref in zip(objs, refs):
        check_transcript(obj, ref)


def test_bad_files_are_reported_and_the_rest_still_run(capsys, overfit_model, tmp_path):
    missing = tmp_path / "missing.wav"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 10)
    no_audio_dir = tmp_path / "nothing_here"
    no_audio_dir.mkdir()
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl",
                             missing, empty, CLIP, text, no_audio_dir)
    assert code == 1
    err_lines = err.splitlines()
    assert len(err_lines) == 4, err
    assert "Traceback" not in err
    for bad in (missing, empty, text, no_audio_dir):
        assert sum(str(bad) in line for line in err_lines) == 1, (bad, err)
    assert all(line.startswith("asr: error: ") for line in err_lines)
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objs] == [str(CLIP)]
    check_transcript(objs[0], UTTS[CLIP.name].text)


def test_stereo_44k1_input(capsys, overfit_model, tmp_path):
    wave, rate = sf.read(CLIP, dtype="float32")
    high = soxr.resample(wave, rate, 44100, quality="VHQ")
    stereo = tmp_path / "stereo_44k1.wav"
    sf.write(stereo, np.stack([high, high], axis=1), 44100, subtype="PCM_16")
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", stereo)
    assert code == 0, err
    obj = json.loads(out)
    assert obj["duration"] == pytest.approx(1.5, abs=1e-3)
    check_transcript(obj, UTTS[CLIP.name].text)


def test_8k_inputs(capsys, overfit_model, tmp_path):
    wave, rate = sf.read(CLIP, dtype="float32")
    narrow = tmp_path / "an1_8k.wav"
    sf.write(narrow, soxr.resample(wave, rate, 8000, quality="HQ"), 8000, subtype="PCM_16")
    fsdd = DATA / "fsdd_3_jackson_0_8khz.wav"
    code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", narrow, fsdd)
    assert code == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objs] == [str(narrow), str(fsdd)]
    # the model never heard band-limited audio or this speaker, so only the contract is checked
    for obj in objs:
        check_transcript(obj)
    assert objs[1]["duration"] == pytest.approx(3886 / 8000, abs=1e-3)


def test_word_times_stay_inside_a_clip_cut_mid_word(capsys, overfit_model, tmp_path):
    wave, rate = sf.read(CLIP, dtype="float32")
    for seconds in (0.9, 1.0, 1.13):
        cut = tmp_path / f"cut_{seconds}.wav"
        sf.write(cut, wave[: int(seconds * rate) + 7], rate, subtype="PCM_16")
        code, out, err = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", cut)
        assert code == 0, err
        check_transcript(json.loads(out))


# --- decode and align --------------------------------------------------------------------------------


def test_decode_manifest(capsys, overfit_model, tmp_path):
    out_dir = tmp_path / "scored"
    code, out, err = run_cli(capsys, "decode", "--model", overfit_model, "--manifest", MANIFEST, "--out", out_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1].startswith("WER ")
    assert len(lines) == 6  # one per utterance, then the summary
    summary = json.loads((out_dir / "wer.json").read_text())
    assert summary["utterances"] == 5 and summary["failed"] == 0
    assert summary["cer"] < 10.0 and summary["wer"] <= 100.0
    assert f"WER {summary['wer']:.2f}%" in lines[-1] and f"CER {summary['cer']:.2f}%" in lines[-1]
    rows = (out_dir / "hyps.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["utt_id", "errors", "ref_words", "ref", "hyp"]
    assert sorted(r.split("\t")[0] for r in rows[1:]) == sorted(u.utt_id for u in UTTS.values())
    for row in rows[1:]:
        utt_id, errors, ref_words, ref, hyp = row.split("\t")
        assert ref == next(u.text for u in UTTS.values() if u.utt_id == utt_id)
        assert int(ref_words) == len(ref.split())
        expected = round(jiwer.wer(ref, hyp) * len(ref.split())) if hyp else len(ref.split())
        assert int(errors) == expected


def test_decode_bad_manifest(capsys, overfit_model, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("utt_id\tspeaker\tpath\n")
    code, out, err = run_cli(capsys, "decode", "--model", overfit_model, "--manifest", bad)
    assert code == 1
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_align(capsys, overfit_model, tmp_path):
    text = UTTS[CLIP.name].text  # X I SIXTY ONE
    code, out, err = run_cli(capsys, "align", CLIP, text.lower() + "!", "--model", overfit_model)
    assert code == 0, err
    words = [json.loads(line) for line in out.splitlines()]
    assert [w["word"] for w in words] == text.split()
    previous = 0.0
    for w in words:
        assert previous <= w["start"] < w["end"] <= 1.5
        previous = w["end"]
    # the transcript may also come from a file, and gives the same alignment
    transcript = tmp_path / "an1.txt"
    transcript.write_text(text + "\n")
    code, out2, _ = run_cli(capsys, "align", CLIP, transcript, "--model", overfit_model)
    assert code == 0 and out2 == out
    # the aligned times agree with the words transcribe reports for the same clip
    code, out3, _ = run_cli(capsys, "transcribe", "--model", overfit_model, "--format", "jsonl", CLIP)
    transcribed = json.loads(out3)["words"]
    if [w["word"] for w in transcribed] == text.split():
        for a, b in zip(words, transcribed):
            assert a["start"] == pytest.approx(b["start"], abs=1e-6) and a["end"] == pytest.approx(b["end"], abs=1e-6)


@pytest.mark.parametrize("text", ["A" * 200, "SIXTY " * 60], ids=["200-letters", "360-chars"])
def test_align_text_too_long_for_audio(capsys, overfit_model, text):
    # 360 characters is also longer than a file name may be: it must still be taken as text
    code, out, err = run_cli(capsys, "align", CLIP, text, "--model", overfit_model)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and str(CLIP) in err and "cannot align" in err


# --- model errors --------------------------------------------------------------------------------------


def test_missing_model(capsys, tmp_path):
    missing = tmp_path / "nope.pt"
    code, out, err = run_cli(capsys, "transcribe", "--model", missing, CLIP)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("asr: error: ") and str(missing) in err


def test_corrupted_model(capsys, overfit_model, tmp_path):
    broken = tmp_path / "broken.pt"
    data = overfit_model.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    for argv in (["transcribe", CLIP], ["decode", "--manifest", MANIFEST], ["align", CLIP, "X I"]):
        code, out, err = run_cli(capsys, *argv, "--model", broken)
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and err.startswith("asr: error: ") and str(broken) in err, err


# --- the real entry point ------------------------------------------------------------------------------


def test_python_dash_m_asr(overfit_model, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "asr", "transcribe", "--model", str(overfit_model), "--format", "jsonl",
         str(CLIP), str(bad)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if str(bad) in line]
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    obj = json.loads(proc.stdout)
    check_transcript(obj, UTTS[CLIP.name].text)


def test_python_dash_m_asr_missing_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--model", str(tmp_path / "x.pt"), str(CLIP)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "x.pt" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("asr") is None, reason="the `asr` console script is not installed")
def test_console_script_help():
    proc = subprocess.run(["asr", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    for command in ("transcribe", "decode", "align", "train"):
        assert command in proc.stdout
