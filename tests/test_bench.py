"""The peers' side of the benchmarks: PocketSphinx decodes each file on its own (where it is installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEAKERS = ("fnsv", "mbmg", "mmaf")  # three AN4 speakers, as in a dev manifest


def test_pocketsphinx_output_does_not_depend_on_the_order_of_the_files(shared_data):
    """Without a reset of its feature state before each file, PocketSphinx's text for a file changes
    with the files decoded before it (some of these 12 do, in reverse order), and so a benchmark's
    WER with the order of its manifest."""
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is a bench extra: pip install -e '.[bench]'")
    from asr.manifest import read_manifest

    sys.path.insert(0, str(REPO / "bench"))
    from transcribe_rtf import make_pocketsphinx, pocketsphinx_pass

    utts = read_manifest(shared_data / "an4/manifest.tsv")
    clips = [str(u.audio_path) for s in SPEAKERS for u in [u for u in utts if u.speaker == s][:4]]
    assert len(clips) == 12
    decoder = make_pocketsphinx()
    forward = dict(zip(clips, pocketsphinx_pass(decoder, clips)))
    backward = dict(zip(clips[::-1], pocketsphinx_pass(decoder, clips[::-1])))
    alone = {clip: pocketsphinx_pass(make_pocketsphinx(), [clip])[0] for clip in clips}
    assert any(alone.values())
    assert forward == backward == alone


def test_padded_wer_pads_with_the_same_noise_and_refuses_a_missing_model(capsys, tmp_path):
    """bench/padded_wer.py: each side gets exactly `seconds` of noise at the asked level, the same for
    every model; a missing model is one line and exit code 2, before any decoding."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from bench.padded_wer import main, pad_with_fixed_noise

    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1  # (8000,) RMS ≈ 0.1
    a = pad_with_fixed_noise(wave, 0.25, -40.0, np.random.default_rng(0))
    b = pad_with_fixed_noise(wave, 0.25, -40.0, np.random.default_rng(0))
    assert len(a) == 8000 + 2 * 4000 and np.array_equal(a, b)
    np.testing.assert_array_equal(a[4000:12000], wave)
    noise_db = 20 * np.log10(np.sqrt(np.mean(np.concatenate([a[:4000], a[12000:]]) ** 2)) / 0.1)
    assert abs(noise_db + 40.0) < 1.0
    assert not np.any(pad_with_fixed_noise(wave, 0.25, -np.inf, np.random.default_rng(0))[:4000])  # silence
    assert main(["--manifest", str(REPO / "tests/data/an4_mblw.tsv"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err


def write_decode_folders(root: Path, rows_by_name: dict[str, list[str]]) -> list[Path]:
    """`asr decode --out`-style folders under `root`, each with a hyps.tsv of the given rows (in order)."""
    folders = []
    for name, rows in rows_by_name.items():
        folder = root / name
        folder.mkdir()
        (folder / "hyps.tsv").write_text("utt_id\terrors\tref_words\tref\thyp\n" + "\n".join(rows) + "\n")
        folders.append(folder)
    return folders


def test_error_breakdown_counts_each_error_against_its_reference_word_class(capsys, tmp_path):
    """bench/error_breakdown.py: substitutions and deletions count against the reference word's class,
    insertions on their own; folders holding other utterances, or no hyps.tsv, are one line and exit 2."""
    sys.path.insert(0, str(REPO))
    from bench.error_breakdown import classify_errors, main

    assert classify_errors("ERASE J N R G FORTY EIGHT", "ERASE J M R G TFORTY EIGHT") == {"letter": 1, "number": 1}
    assert classify_errors("HELP", "") == {"other": 1}
    assert classify_errors("", "A B") == {"inserted": 2}
    assert classify_errors("ENTER ONE FORTY TWO", "ENTER ONE FOUR GT TWO") == {"number": 1, "inserted": 1}

    greedy, lm, other = write_decode_folders(tmp_path, {
        "greedy": ["u1\t2\t3\tA B SIX\tA D SICS", "u2\t1\t1\tHELP\tHELLP"],
        "lm": ["u1\t1\t3\tA B SIX\tA D SIX", "u2\t0\t1\tHELP\tHELP"],
        "other": ["u3\t0\t1\tHELP\tHELP"]})
    assert main([str(greedy), str(lm)]) == 0
    out = capsys.readouterr().out
    assert "errors 3 (1.00) = letter 1 (1.00), number 1 (1.00), other 1 (1.00), inserted 0" in out
    assert "errors 1 (0.33) = letter 1 (1.00), number 0 (0.00), other 0 (0.00), inserted 0" in out
    assert "1 of 3 (33.3 %)" in out
    assert main([str(greedy), str(other)]) == 2 and "same utterances" in capsys.readouterr().err
    assert main([str(greedy), str(tmp_path / "missing")]) == 2 and "missing/hyps.tsv" in capsys.readouterr().err


def test_paired_bootstrap_script_compares_two_decodes_of_the_same_utterances(capsys, tmp_path):
    """bench/paired_bootstrap.py recomputes each utterance's errors from ref and hyp (not the errors
    column) and refuses folders of different utterances in one line with exit code 2."""
    sys.path.insert(0, str(REPO))
    from bench.paired_bootstrap import main

    a, b, other = write_decode_folders(tmp_path, {
        "a": ["u1\t0\t3\tA B SIX\tA D SICS", "u2\t9\t1\tHELP\tHELLP"],
        "b": ["u2\t0\t1\tHELP\tHELP", "u1\t1\t3\tA B SIX\tA D SIX"],
        "other": ["u3\t0\t1\tHELP\tHELP"]})
    assert main([str(a), str(b), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "2 utterances, 4 reference words" in out
    assert "WER 75.00 % (3 errors)" in out and "WER 25.00 % (1 errors)" in out
    assert "B - A: -50.00 points" in out
    assert main([str(a), str(other)]) == 2 and "same utterances" in capsys.readouterr().err
