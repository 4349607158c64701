"""Spoken-term search by example on real recordings: segments, autoencoder training, index, `asr search`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.search.cli import DEFAULT_SEARCH_MODEL

DATA = Path(__file__).parent / "data"
JACKSON_3 = DATA / "fsdd_3_jackson_0_8khz.wav"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fsdd(shared_data) -> Path:
    folder = shared_data / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"FSDD recordings not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def search_model() -> Path:
    if not DEFAULT_SEARCH_MODEL.is_file():
        pytest.skip(f"no bundled search model at {DEFAULT_SEARCH_MODEL} (built by recipes/search/run.sh)")
    return DEFAULT_SEARCH_MODEL


@pytest.fixture(scope="module")
def digit_index(tmp_path_factory, fsdd, search_model) -> Path:
    """An index of george's and lucas' digits 0-9 (one recording each) plus two AN4 sentences."""
    folder = tmp_path_factory.mktemp("collection")
    for digit in range(10):
        for speaker in ("george", "lucas"):
            name = f"{digit}_{speaker}_7.wav"
            (folder / name).write_bytes((fsdd / name).read_bytes())
    index = tmp_path_factory.mktemp("idx") / "digits.index"
    code = main(["index", "build", "--model", str(search_model), str(folder), str(DATA / "an4" / "an1-mblw-b.flac"),
                 "-o", str(index)])
    assert code == 0
    return index


def test_segments_from_forced_alignment(tmp_path):
    """Aligned words of real AN4 clips: the transcript's words, in order, inside the audio, round-tripped."""
    from asr.manifest import read_manifest
    from asr.search.segments import align_utterances, read_segments, write_segments
    from asr.transcribe import Transcriber

    utterances = read_manifest(DATA / "an4_mblw.tsv")
    segments = list(align_utterances(utterances, Transcriber.from_pretrained(device="cpu")))
    assert [s.word for s in segments] == " ".join(u.text for u in utterances).split()
    durations = {u.audio_path: u.duration_s for u in utterances}
    for seg in segments:
        assert 0 <= seg.start < seg.end <= durations[seg.source] + 1e-3 and seg.speaker == "mblw"
    write_segments(tmp_path / "s.tsv", segments)
    again = read_segments(tmp_path / "s.tsv")
    assert [(s.source.resolve(), s.word, s.start, s.speaker) for s in again] == [
        (s.source.resolve(), s.word, round(s.start, 3), s.speaker) for s in segments]


def test_reconstruction_loss_falls_on_real_segments(fsdd):
    """The plain and the denoising autoencoder learn to reconstruct real digit recordings."""
    from asr.audio import load_audio
    from asr.search.features import load_featurizer
    from asr.search.model import AutoencoderConfig, SegmentAutoencoder, mask_frames, reconstruction_loss
    from asr.search.train import pad_batch

    torch.manual_seed(0)
    waves = [load_audio(fsdd / f"{d}_jackson_0.wav") for d in range(10)]
    featurizer = load_featurizer("am")  # the bundled acoustic model's hidden states
    feats, lengths = pad_batch(featurizer.segments(waves, [4000.0] * len(waves)))  # (10, T, 2 × hidden)
    for mask_prob in (0.0, 0.2):
        model = SegmentAutoencoder(AutoencoderConfig(input="am", input_dim=featurizer.dim, hidden_size=64, num_layers=1,
                                                     embed_dim=64, decoder_hidden=64, dropout=0.0))
        valid = torch.arange(feats.shape[1])[None, :] < lengths[:, None]
        frames = feats[valid]
        model.set_stats(frames.mean(0), frames.std(0))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        clean = model.normalize(feats, lengths)
        losses = []
        for _ in range(40):
            z = model.embed(mask_frames(clean, mask_prob), lengths, normalized=True)
            loss = reconstruction_loss(model.reconstruct(z, lengths), clean, lengths)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert np.mean(losses[-5:]) < 0.7 * losses[0], (mask_prob, losses[0], losses[-5:])


def test_train_cli_writes_a_search_model(tmp_path, fsdd, capsys):
    """`asr train --config` with `task: autoencoder` trains the contrastive variant (with speed-perturbed
    views) and writes model.pt."""
    from asr.search.model import load_search_model
    from asr.search.segments import Segment, write_segments

    segments = [Segment(fsdd / f"{d}_{s}_{i}.wav", str(d), 0.0, 0.25, s)
                for d in range(4) for s in ("george", "lucas") for i in range(2)]
    write_segments(tmp_path / "train.tsv", segments)
    config = tmp_path / "ae.yaml"
    config.write_text(f"""task: autoencoder
out_dir: {tmp_path / 'out'}
data: {{train: [{tmp_path / 'train.tsv'}], valid_speakers: [lucas], speed_factors: [0.9, 1.1]}}
model: {{input: logmel, hidden_size: 32, num_layers: 1, embed_dim: 64, decoder_hidden: 32}}
objective: {{variant: contrastive}}
optim: {{epochs: 2, words_per_batch: 4, per_word: 2}}
""")
    code, out, _ = run_cli(capsys, "train", "--config", config)
    assert code == 0 and out.strip().endswith("model.pt")
    model, info = load_search_model(out.strip())
    assert model.config.input == "logmel" and model.config.embed_dim == 64 and info["train_segments"] == 8
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "valid_ap" in json.loads(lines[-1])
    assert len(list((tmp_path / "out" / "cache").glob("logmel-*.npz"))) == 3, "one feature cache per speed"


def test_speed_perturbed_segment_features(fsdd):
    """A segment of a recording played 1.25× faster has 1/1.25 of the frames, in both views."""
    from asr.search.features import SegmentFeaturizer
    from asr.search.segments import Segment
    from asr.search.train import compute_features

    featurizer = SegmentFeaturizer("logmel")
    segment = Segment(fsdd / "3_george_0.wav", "3", 0.05, 0.35, "george")
    plain = compute_features([segment], featurizer)
    fast = compute_features([segment], featurizer, speed=1.25)
    for a, b in ((plain.isolated[0], fast.isolated[0]), (plain.context[0], fast.context[0])):
        assert abs(len(b) - len(a) / 1.25) <= 2, (len(a), len(b))


def top_hits(capsys, index: Path, query: Path, top: int) -> list[dict]:
    code, out, err = run_cli(capsys, "search", index, query, "--top", str(top), "--format", "jsonl")
    assert code == 0, err
    hits = [json.loads(line) for line in out.splitlines()]
    assert [h["rank"] for h in hits] == list(range(1, top + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    return hits


def test_word_found_at_rank_one_from_another_speaker(digit_index, fsdd, capsys):
    """Digits spoken by jackson find george's or lucas' recording of the same digit at rank 1.

    The AN4 clip in the collection says "X I SIXTY ONE", so it is a right answer for "one" too.
    """
    for query, digit in [(JACKSON_3, "3")] + [(fsdd / f"{d}_jackson_10.wav", str(d)) for d in range(10)]:
        best = top_hits(capsys, digit_index, query, 3)[0]
        name = Path(best["path"]).name
        assert name.split("_")[0] == digit or (digit == "1" and name == "an1-mblw-b.flac"), (query.name, best)
        assert "jackson" not in name


def test_held_out_speaker_mostly_found_at_rank_one(digit_index, fsdd, capsys):
    """yweweler, a speaker neither the acoustic model nor the search model was trained on (bundled
    model: 33 % WER on his digits): at least 7 of his 10 digits find the same digit at rank 1."""
    found = 0
    for d in range(10):
        best = top_hits(capsys, digit_index, fsdd / f"{d}_yweweler_20.wav", 1)[0]
        found += Path(best["path"]).name.split("_")[0] == str(d)
    assert found >= 7


def test_overlapping_hits_are_merged(digit_index, capsys):
    """Many windows of one recording are reported once: hits of one file never overlap."""
    code, out, _ = run_cli(capsys, "search", digit_index, JACKSON_3, "--top", "10", "--format", "jsonl")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(hits) == 10
    for i, a in enumerate(hits):
        for b in hits[i + 1:]:
            assert a["path"] != b["path"] or a["end"] <= b["start"] or b["end"] <= a["start"]
    assert sum(h["merged"] for h in hits) > 0


def test_index_round_trip_and_add(tmp_path, digit_index, fsdd, capsys):
    """Save → load gives identical vectors; `index add` appends new files and skips known ones."""
    import shutil

    from asr.search.index import index_digest, load_index

    copy = tmp_path / "copy.index"
    shutil.copytree(digit_index, copy)
    before = load_index(copy)
    assert len(before) > 100 and before.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(before.vectors, axis=1), 1.0, atol=1e-4)
    assert index_digest(load_index(digit_index)) == index_digest(before)
    code, out, _ = run_cli(capsys, "index", "add", copy, JACKSON_3, DATA / "an4" / "an1-mblw-b.flac")
    assert code == 0 and json.loads(out)["added_segments"] > 0
    after = load_index(copy)
    assert len(after.meta["files"]) == len(before.meta["files"]) + 1  # the AN4 clip was already there
    n = len(before)
    assert np.array_equal(after.vectors[:n], before.vectors) and np.array_equal(after.start[:n], before.start)
    assert len(list(copy.glob("vectors-*.npz"))) == 1
    code, out, _ = run_cli(capsys, "search", copy, JACKSON_3, "--top", "1")  # now finds itself
    assert code == 0 and Path(out.split("\t")[0]) == JACKSON_3.resolve() and float(out.split("\t")[3]) > 0.95


def test_bad_inputs_are_one_line_errors(tmp_path, digit_index, capsys):
    """Unreadable or silent query audio, a missing or corrupted index: one clear line, exit 1."""
    garbage = tmp_path / "notaudio.wav"
    garbage.write_bytes(b"this is not audio" * 10)
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    click = tmp_path / "click.wav"
    sf.write(click, np.r_[np.zeros(8000), 0.5 * np.ones(400), np.zeros(8000)].astype(np.float32), 16000)
    cases = [(garbage, "not a readable audio file"), (silent, "only silence"), (click, "after trimming silence"),
             (tmp_path / "missing.wav", "no such file")]
    for query, message in cases:
        code, out, err = run_cli(capsys, "search", digit_index, query)
        assert code == 1 and out == "" and str(query) in err and message in err, err
        assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "search", tmp_path / "nothing.index", JACKSON_3)
    assert code == 1 and "not a search index" in err
    broken = tmp_path / "broken.index"
    broken.mkdir()
    (broken / "index.json").write_text("{ not json")
    code, _, err = run_cli(capsys, "search", broken, JACKSON_3)
    assert code == 1 and "index.json" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "index", "build", "--model", tmp_path / "none.pt", JACKSON_3, "-o", tmp_path / "x")
    assert code == 1 and "search model" in err
    for flag, value in (("--widths", "a"), ("--hop", "0")):
        code, _, err = run_cli(capsys, "index", "build", flag, value, JACKSON_3, "-o", tmp_path / "y")
        assert code == 1 and len(err.strip().splitlines()) == 1 and "--widths" in err, err


def test_index_and_its_model_can_move_together(tmp_path, search_model, capsys):
    """An index finds its (non-bundled) search model again after both moved; without it: one clear line."""
    import torch

    state = torch.load(search_model, weights_only=True)
    state["info"] = {**state["info"], "note": "a copy, so that its SHA-256 differs from the bundled model"}
    home = tmp_path / "project"
    (home / "models").mkdir(parents=True)
    torch.save(state, home / "models" / "mine.pt")
    code, _, err = run_cli(capsys, "index", "build", "--model", home / "models" / "mine.pt", JACKSON_3,
                           "-o", home / "jackson.index")
    assert code == 0, err
    moved = tmp_path / "elsewhere"
    home.rename(moved)
    code, out, err = run_cli(capsys, "search", moved / "jackson.index", JACKSON_3, "--top", "1")
    assert code == 0 and float(out.split("\t")[3]) > 0.95, err
    code, _, err = run_cli(capsys, "index", "add", moved / "jackson.index", DATA / "an4" / "an1-mblw-b.flac")
    assert code == 0, err
    meta = json.loads((moved / "jackson.index" / "index.json").read_text())
    assert meta["model"] == str((moved / "models" / "mine.pt").resolve()) and meta["model_relative"] == "../models/mine.pt"
    code, out, err = run_cli(capsys, "search", moved / "jackson.index", JACKSON_3, "--top", "1")
    assert code == 0 and float(out.split("\t")[3]) > 0.95, err
    state["info"]["note"] = "changed in place"
    torch.save(state, moved / "models" / "mine.pt")
    code, out, err = run_cli(capsys, "search", moved / "jackson.index", JACKSON_3)
    assert code == 1 and "changed since" in err and "rebuild" in err, err
    (moved / "models" / "mine.pt").unlink()
    code, out, err = run_cli(capsys, "search", moved / "jackson.index", JACKSON_3)
    assert code == 1 and out == "" and "not there any more" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("speeds", ["0.9", "[0.0, 1.1]", "[fast]"])
def test_bad_speed_factors_are_a_one_line_config_error(tmp_path, capsys, speeds):
    config = tmp_path / "ae.yaml"
    config.write_text(f"task: autoencoder\nout_dir: {tmp_path / 'out'}\n"
                      f"data: {{train: [x.tsv], speed_factors: {speeds}}}\n")
    code, out, err = run_cli(capsys, "train", "--config", config)
    assert code == 1 and out == "" and "speed_factors" in err and str(config) in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_flipped_bit_in_a_search_model_is_detected(tmp_path, search_model):
    """A search model goes through the same CRC check as a checkpoint: one flipped bit is refused."""
    from asr.checkpoint import CheckpointError
    from asr.search.model import load_search_model

    data = bytearray(search_model.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt: corrupted checkpoint"):
        load_search_model(flipped)


@pytest.mark.parametrize("content, problem", [
    (None, "not a search index (no index.json"),
    ("{not json", "unreadable metadata of a search index"),
    ('{"format": "something-else"}', "not a search index (format tag"),
    ("[1, 2]", "not a search index (format tag"),
])
def test_broken_index_metadata_is_named(tmp_path, content, problem):
    from asr.search.index import SearchIndexError, load_index

    if content is not None:
        (tmp_path / "index.json").write_text(content)
    with pytest.raises(SearchIndexError, match=re.escape(problem)) as caught:
        load_index(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_index_metadata_lacking_a_field_is_named(tmp_path, digit_index):
    """An index.json that parses but lacks a field the loader needs is one error naming the file."""
    import json
    import shutil

    from asr.search.index import SearchIndexError, load_index

    copy = tmp_path / "copy.index"
    shutil.copytree(digit_index, copy)
    meta = json.loads((copy / "index.json").read_text())
    del meta["count"]
    (copy / "index.json").write_text(json.dumps(meta))
    with pytest.raises(SearchIndexError, match=re.escape(f"{copy / 'index.json'}: index metadata lacks count")):
        load_index(copy)


def test_index_build_refuses_an_acoustic_model_the_search_model_was_not_trained_on(search_model, capsys, tmp_path):
    """The bundled search model reads the bundled acoustic model's hidden states: any other acoustic model
    is refused in one line naming the search model, before an index is written."""
    from asr.search.model import load_search_model

    _, info = load_search_model(search_model)
    if not info.get("am_sha256"):
        pytest.skip("the bundled search model does not read an acoustic model")
    other = tmp_path / "other_am.pt"
    other.write_bytes(b"not the acoustic model the search model was trained with")
    code, _, err = run_cli(capsys, "index", "build", "--model", search_model, "--am", other, JACKSON_3,
                           "-o", tmp_path / "x.index")
    assert code != 0
    assert "another acoustic model" in err and str(search_model) in err
    assert not (tmp_path / "x.index").exists()
