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
