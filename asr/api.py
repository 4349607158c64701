"""Python entry point: a recognizer with the decoder of your choice, set up as `asr transcribe` does it.

    >>> import asr
    >>> recognizer = asr.load()                                   # bundled model, its tuned beam + LM
    >>> recognizer.transcribe("examples/audio/an4_mfaa_enter_ninety_eight_twenty_eight.flac").text
    >>> greedy = asr.load(decoder="greedy")                       # argmax: faster, no LM
    >>> greedy.transcribe(samples, sample_rate=8000).words        # a NumPy signal at any rate
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from asr.transcribe import Transcriber

DECODERS = ("greedy", "beam", "hybrid")


def decoder_option_defaults() -> dict[str, Any]:
    """The decoder options of `asr transcribe` (flag names with `_` for `-`) and their defaults.

    None means what the CLI's help says: the model's tuned value (its `.decode.json` or the
    hybrid assets), else the built-in default.
    """
    from asr.cli import add_decoder_args

    parser = argparse.ArgumentParser(add_help=False)
    add_decoder_args(parser)
    defaults = vars(parser.parse_args([]))
    del defaults["decoder"]
    return defaults


def load(model: str | os.PathLike | None = None, decoder: str | None = None, device: str | None = None,
         **options: Any) -> Transcriber:
    """A Transcriber for `model` (default: the bundled one) decoding with `decoder`.

    `decoder=None` picks what `asr transcribe` picks without --decoder: beam search with the model's
    tuned LM settings when it ships them (the bundled model does) or when a beam option is given,
    else greedy.

    `options` are the CLI's decoder flags as keywords, e.g. `lm="other.arpa"` (or `lm="none"`),
    `beam=32`, `alpha=0.5`, `beta=1.0`, `lexicon=True`, `hybrid_emissions="trained"`,
    `prior_scale=0.25`; whatever is not given comes from the model's tuned settings, as on the
    command line. Raises ValueError (`asr.cli.UserError` from the decoder set-up) for an unknown
    decoder or option, a bad value or a missing LM file, and `ModelNotFoundError` (a
    FileNotFoundError) for a missing model.
    """
    if decoder is not None and decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    settings = decoder_option_defaults()
    unknown = sorted(set(options) - set(settings))
    if unknown:
        raise ValueError(f"unknown decoder option(s) {', '.join(unknown)}: expected some of {', '.join(sorted(settings))}")
    settings.update({key: os.fspath(value) if isinstance(value, os.PathLike) else value
                     for key, value in options.items()})
    transcriber = Transcriber.from_pretrained(model, device=device)
    from asr.cli import build_decoder

    build_decoder(argparse.Namespace(decoder=decoder, **settings), transcriber)
    return transcriber
