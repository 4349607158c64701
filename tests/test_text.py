"""Text normalisation and the character tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.manifest import read_manifest
from asr.text import BLANK, CharTokenizer, normalize_text

TOK = CharTokenizer()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello, wörld -- it's 'ok'! ", "HELLO WORLD IT'S 'OK'"),
        ("Café  déjà-vu", "CAFE DEJA VU"),
        ("don\u2019t", "DON'T"),
        ("x i sixty-one", "X I SIXTY ONE"),
        ("\tTABS\nand newlines\r\n", "TABS AND NEWLINES"),
        ("123 ... !!!", ""),
        ("", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_normalize_text_output_alphabet_and_idempotent(raw):
    out = normalize_text(raw)
    assert set(out) <= set(TOK.chars)
    assert "  " not in out and out == out.strip()
    assert normalize_text(out) == out


def test_vocab_layout():
    assert TOK.vocab_size == 29 == len(TOK.vocab)
    assert TOK.vocab[0] == BLANK and TOK.blank_id == 0
    assert TOK.vocab[TOK.space_id] == " " and TOK.space_id == 1
    assert TOK.vocab[2] == "'" and TOK.vocab[3] == "A" and TOK.vocab[28] == "Z"


def test_encode_decode_manifest_texts():
    manifest = Path(__file__).parent / "data" / "an4_mblw.tsv"
    for utt in read_manifest(manifest):
        ids = TOK.encode(utt.text)
        assert all(0 < i < TOK.vocab_size for i in ids)
        assert TOK.decode(ids) == utt.text
    assert TOK.encode("Ab c") == [3, 4, 1, 5]


def test_decode_drops_blanks_and_squeezes_spaces():
    ids = [0, 1, 3, 0, 3, 1, 1, 0, 4, 1]  # " A_A  B " with blanks
    assert TOK.decode(ids) == "AA B"


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ' ", max_size=60))
@settings(max_examples=200, deadline=None)
def test_round_trip(text):
    normal = normalize_text(text)
    assert TOK.decode(TOK.encode(text)) == normal


def test_serialisation_round_trip():
    custom = CharTokenizer(chars=(" ", "A", "B"))
    again = CharTokenizer.from_dict(custom.to_dict())
    assert again.vocab == custom.vocab == [BLANK, " ", "A", "B"]
    assert again.encode("ab ba") == [2, 3, 1, 3, 2]
    assert CharTokenizer.from_dict(TOK.to_dict()).vocab == TOK.vocab
