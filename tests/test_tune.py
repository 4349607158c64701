"""`asr tune` and the decode settings stored next to a model (the bundled model's LM and weights too)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_cli import MANIFEST, UTTS, check_transcript, run_cli

from asr.decoding.lm import load_arpa
from asr.tune import (DecodeSettings, load_decode_settings, parse_grid, parse_oov_grid, save_decode_settings,
                      settings_path)
from asr.transcribe import DEFAULT_MODEL

CLIP = Path(__file__).parent / "data" / "an4" / "an2-mblw-b.flac"  # "Z EIGHT OH TWO"


def test_settings_round_trip_keeps_the_lm_relative(tmp_path):
    model = tmp_path / "models" / "am.pt"
    model.parent.mkdir()
    (model.parent / "lm.arpa").write_text("")
    saved = save_decode_settings(model, DecodeSettings(lm=str(model.parent / "lm.arpa"), beam=8, alpha=1.5,
                                                       beta=-0.5, lexicon=True, tuned={"wer": 3.0}))
    assert saved == settings_path(model) == tmp_path / "models" / "am.decode.json"
    assert json.loads(saved.read_text())["lm"] == "lm.arpa"  # the pair can be moved together
    moved = tmp_path / "elsewhere"
    shutil.move(str(model.parent), moved)
    loaded = load_decode_settings(moved / "am.pt")
    assert loaded.lm == str((moved / "lm.arpa").resolve())
    assert (loaded.beam, loaded.alpha, loaded.beta, loaded.lexicon, loaded.tuned) == (8, 1.5, -0.5, True, {"wer": 3.0})


def test_missing_settings_are_the_defaults_and_broken_ones_name_the_file(tmp_path):
    assert load_decode_settings(tmp_path / "m.pt") == DecodeSettings()
    settings_path(tmp_path / "m.pt").write_text('{"alpha": 1, "colour": "blue"}')
    with pytest.raises(ValueError, match=r"m\.decode\.json: not a valid decode settings file"):
        load_decode_settings(tmp_path / "m.pt")


def test_parse_grid():
    assert parse_grid("0:1:0.25", [9.0]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_grid("-1,0.5", [9.0]) == [-1.0, 0.5]
    assert parse_grid(None, [9.0]) == [9.0]
    for bad in ("a,b", "0:1:0", "1:2"):
        with pytest.raises(ValueError, match="bad grid"):
            parse_grid(bad, [])


def test_parse_oov_grid():
    assert parse_oov_grid(None) == [None]  # without the flag: the LM's <unk> score only, as before
    assert parse_oov_grid("unk,2,4") == [None, 2.0, 4.0]
    assert parse_oov_grid("unk,0:4:2,4") == [None, 0.0, 2.0, 4.0]  # ranges mix with values, each kept once
    for bad, message in (("x", "bad grid"), ("unk,-1", "0 or more"), (",", "holds no value")):
        with pytest.raises(ValueError, match=message):
            parse_oov_grid(bad)


def test_oov_penalty_round_trips_and_old_files_have_none(tmp_path):
    model = tmp_path / "am.pt"
    save_decode_settings(model, DecodeSettings(alpha=0.25, beta=-2.5, oov_penalty=4))
    assert load_decode_settings(model).oov_penalty == 4.0
    settings_path(model).write_text('{"alpha": 0.5, "beta": -1.5}')  # written before the field existed
    assert load_decode_settings(model).oov_penalty is None


def test_bundled_model_ships_its_lm_and_tuned_settings():
    """`asr transcribe --decoder beam FILE` needs nothing else: the settings name a loadable LM."""
    settings = load_decode_settings(DEFAULT_MODEL)
    assert settings.lm is not None and Path(settings.lm).parent == DEFAULT_MODEL.parent
    lm = load_arpa(settings.lm)
    assert lm.order >= 3 and "ENTER" in lm.word_to_id and "SEVEN" in lm.word_to_id
    tuned = settings.tuned
    assert "dev_tune" in tuned["manifest"]  # tuned on the tuning half of the AN4 dev speakers only
    assert tuned["wer"] <= tuned["greedy_wer"]
    assert settings.alpha in tuned["alphas"] and settings.beta in tuned["betas"]


@pytest.fixture()
def tuned_model(capsys, overfit_model, tmp_path) -> Path:
    """A copy of the overfit model with an LM over the clips' transcripts, tuned on the clips by `asr tune`."""
    model = tmp_path / "am.pt"
    shutil.copy(overfit_model, model)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(u.text for u in UTTS.values()) + "\n")
    code, _, err = run_cli(capsys, "lm", "build", "--order", "2", "--text", text, "-o", tmp_path / "lm.arpa.gz")
    assert code == 0, err
    code, out, err = run_cli(capsys, "tune", "--model", model, "--manifest", MANIFEST, "--lm", tmp_path / "lm.arpa.gz",
                             "--beam", "4", "--alphas", "0,0.5", "--betas", "0,1", "--show", "4")
    assert code == 0, err
    assert len([line for line in out.splitlines() if line.startswith("alpha")]) == 4  # the whole 2 x 2 grid
    assert out.splitlines()[-1].startswith("best: alpha") and str(settings_path(model)) in out
    return model


def test_tune_writes_settings_that_beam_decoding_then_uses(capsys, tuned_model):
    settings = load_decode_settings(tuned_model)
    assert settings.lm == str(tuned_model.parent.resolve() / "lm.arpa.gz")
    assert settings.beam == 4 and settings.alpha in (0.0, 0.5) and settings.beta in (0.0, 1.0)
    assert settings.tuned["utterances"] == len(UTTS)
    assert settings.tuned["wer"] <= settings.tuned["greedy_wer"]

    # `asr decode --decoder beam` with no LM flags reproduces the tuned WER with the stored settings.
    code, out, err = run_cli(capsys, "decode", "--model", tuned_model, "--manifest", MANIFEST, "--decoder", "beam")
    assert code == 0, err
    assert out.splitlines()[-1].startswith(f"WER {settings.tuned['wer']:.2f}%")

    # Beam decoding fills word times and confidences in jsonl just like greedy decoding.
    code, out, err = run_cli(capsys, "transcribe", "--model", tuned_model, "--decoder", "beam", "--format", "jsonl",
                             CLIP)
    assert code == 0, err
    obj = json.loads(out)
    check_transcript(obj, UTTS[CLIP.name].text)
    assert obj["words"] and all(0.0 < w["conf"] <= 1.0 for w in obj["words"])


def test_tune_with_oov_penalties_stores_the_choice_and_decoding_uses_it(capsys, overfit_model, tmp_path):
    """A grid over the OOV cost: every point is printed with its penalty; where the penalties tie, the
    LM's own <unk> score wins; a stored or given penalty reaches the decoder."""
    model = tmp_path / "am.pt"
    shutil.copy(overfit_model, model)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(u.text for u in UTTS.values()) + "\n")  # every reference word is in the LM
    code, _, err = run_cli(capsys, "lm", "build", "--order", "2", "--text", text, "-o", tmp_path / "lm.arpa")
    assert code == 0, err
    code, out, err = run_cli(capsys, "tune", "--model", model, "--manifest", MANIFEST, "--lm", tmp_path / "lm.arpa",
                             "--beam", "4", "--alphas", "0.5", "--betas", "0", "--oov-penalties", "unk,0,40",
                             "--show", "3")
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("alpha")]
    assert len(rows) == 3 and {row.split("oov")[1].split()[0] for row in rows} == {"unk", "0", "40"}
    settings = load_decode_settings(model)
    assert settings.tuned["oov_penalties"] == [None, 0.0, 40.0]
    best_wer = settings.tuned["wer"]
    tied = [row for row in rows if f"WER {best_wer:6.2f}%" in row]
    if len(tied) == 3:  # no OOV word changes anything on these clips: the tie goes to <unk>
        assert settings.oov_penalty is None and "oov_penalty" not in out.splitlines()[-1]
    code, out, err = run_cli(capsys, "decode", "--model", model, "--manifest", MANIFEST, "--decoder", "beam")
    assert code == 0, err
    assert out.splitlines()[-1].startswith(f"WER {best_wer:.2f}%")
    # The stored penalty reaches the beam search, and a flag (or keyword) overrides it.
    import asr

    assert asr.load(model, decoder="beam").decoder.oov_penalty == settings.oov_penalty
    assert asr.load(model, decoder="beam", oov_penalty=7.0).decoder.oov_penalty == 7.0
    # With another LM, the stored penalty (tuned for this LM) is not carried over, as alpha and beta are not.
    assert asr.load(model, decoder="beam", lm=str(tmp_path / "lm.arpa")).decoder.oov_penalty == settings.oov_penalty
    other = tmp_path / "other.arpa"
    shutil.copy(tmp_path / "lm.arpa", other)
    save_decode_settings(model, DecodeSettings(lm=str(tmp_path / "lm.arpa"), beam=4, oov_penalty=3.0))
    assert asr.load(model, decoder="beam").decoder.oov_penalty == 3.0
    assert asr.load(model, decoder="beam", lm=str(other)).decoder.oov_penalty is None


def test_tune_refuses_an_oov_grid_where_it_means_nothing(capsys, overfit_model, tmp_path):
    lm = tmp_path / "lm.arpa"
    lm.write_text("")
    code, _, err = run_cli(capsys, "tune", "--model", overfit_model, "--manifest", MANIFEST, "--lm", lm,
                           "--lexicon", "--oov-penalties", "unk,5")
    assert code == 1 and err.count("\n") == 1 and "open-vocabulary" in err


def test_lm_none_and_a_missing_lm(capsys, tuned_model, tmp_path):
    code, out, err = run_cli(capsys, "transcribe", "--model", tuned_model, "--decoder", "beam", "--lm", "none", CLIP)
    assert code == 0, err
    assert out.split("\t")[1].strip()
    code, out, err = run_cli(capsys, "transcribe", "--model", tuned_model, "--decoder", "beam", "--lm",
                             tmp_path / "nope.arpa", CLIP)
    assert code == 1 and out == ""
    assert err.strip() == f"asr: error: {tmp_path / 'nope.arpa'}: language model file not found"


def test_tune_rejects_a_bad_grid_in_one_line(capsys, overfit_model, tmp_path):
    lm = tmp_path / "lm.arpa"
    lm.write_text("")
    code, _, err = run_cli(capsys, "tune", "--model", overfit_model, "--manifest", MANIFEST, "--lm", lm,
                           "--alphas", "x")
    assert code == 1 and err.count("\n") == 1 and "bad grid 'x'" in err


def test_empty_grid_and_mistyped_settings_are_one_line(capsys, overfit_model, tmp_path):
    with pytest.raises(ValueError, match="holds no value"):
        parse_grid("1:0:0.5", [])
    lm = tmp_path / "lm.arpa"
    lm.write_text("")
    code, _, err = run_cli(capsys, "tune", "--model", overfit_model, "--manifest", MANIFEST, "--lm", lm,
                           "--alphas", "1:0:0.5")
    assert code == 1 and err.count("\n") == 1 and "holds no value" in err
    model = tmp_path / "am.pt"
    shutil.copy(overfit_model, model)
    settings_path(model).write_text('{"beam": "many"}')
    code, out, err = run_cli(capsys, "transcribe", "--model", model, "--decoder", "beam", CLIP)
    assert code == 1 and out == "" and "am.decode.json: not a valid decode settings file" in err


def test_tuning_scores_files_cut_into_pieces_exactly_as_decoding_does(overfit_model):
    """With pieces shorter than the clips (some cut inside speech, so they overlap a neighbour),
    the WER `tune` reports for a grid point is the WER of decoding the files with that point."""
    from asr.decoding.beam import BeamSearchDecoder
    from asr.manifest import read_manifest
    from asr.segment import SegmentConfig
    from asr.text import normalize_text
    from asr.transcribe import Transcriber
    from asr.tune import compute_piece_log_probs, score_texts, tune

    cutting = SegmentConfig(max_chunk_s=1.0, overlap_s=0.3, whole_file_s=1.2, min_pause_s=0.5)
    transcriber = Transcriber.from_pretrained(overfit_model, device="cpu", segment_config=cutting)
    utterances = read_manifest(MANIFEST)
    paths = [u.audio_path for u in utterances]
    files = compute_piece_log_probs(transcriber, paths)
    assert any(len(f.spans) > 1 for f in files) and any(s.overlaps for f in files for s in f.spans)

    settings, points = tune(transcriber, MANIFEST, None, alphas=[0.0], betas=[0.5], beam=4)
    refs = [normalize_text(u.text) for u in utterances]
    greedy = [t.text for t in transcriber.transcribe_files(paths, with_words=False)]
    assert settings.tuned["greedy_wer"] == pytest.approx(round(score_texts(refs, greedy)[0], 3))
    transcriber.decoder = BeamSearchDecoder(transcriber.tokenizer, beam_size=4, alpha=0.0, beta=0.5)
    beam = [t.text for t in transcriber.transcribe_files(paths, with_words=False)]
    assert (points[0].wer, points[0].cer) == pytest.approx(score_texts(refs, beam))
    whole = Transcriber.from_pretrained(overfit_model, device="cpu")
    assert [len(f.spans) for f in compute_piece_log_probs(whole, paths)] == [1] * len(paths)  # short files stay whole


def test_grid_edge_warnings_flag_a_best_value_on_the_edge_but_not_at_a_natural_limit():
    from asr.tune import grid_edge_warnings

    grids = {"--alphas": [0.0, 0.5, 1.0], "--betas": [-1.0, 0.0, 1.0]}
    assert grid_edge_warnings({"--alphas": 0.5, "--betas": 0.0}, grids) == []
    lines = grid_edge_warnings({"--alphas": 1.0, "--betas": -1.0}, grids)
    assert len(lines) == 2
    assert "--alphas value 1 is the highest" in lines[0] and "--betas value -1 is the lowest" in lines[1]
    assert grid_edge_warnings({"--alphas": 0.0, "--betas": 0.0}, grids, limits={"--alphas": (0.0, None)}) == []
    assert grid_edge_warnings({"--alphas": 1.0}, grids, limits={"--alphas": (0.0, 1.0)}) == []
    assert grid_edge_warnings({"--alphas": 0.0}, {"--alphas": [0.0]}) == []  # one value: no edge
