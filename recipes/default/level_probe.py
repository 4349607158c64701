"""Probe (not adopted): scale each input to one active level before the bundled model reads it.

    python recipes/default/level_probe.py [--exp exp/default] [--model asr/pretrained/model.pt]

The rule it was judged by, and its result, are in recipes/default/adoption_rules.md (seventh session).
The active level of a wave is the 95th percentile of the RMS of its 25 ms frames (10 ms hop), in dB; the
target is the median active level of 400 training utterances (seed 0) of EXP/data/*/train.tsv. Greedy WER
on dev_tune and FSDD dev (FSDD also with 0.25 s of quiet noise each side, as bench/padded_wer.py adds it),
as the files are and normalised.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.padded_wer import greedy_texts, pad_with_fixed_noise  # noqa: E402

from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.manifest import read_manifest  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.transcribe import Transcriber, band_cutoff  # noqa: E402
from asr.tune import score_texts  # noqa: E402

CORPORA = ("an4", "fsdd", "librispeech", "librivox")


def active_level_db(wave: np.ndarray, percentile: float = 95.0) -> float:
    """(N,) wave → the `percentile` of its 25 ms frames' RMS (10 ms hop) in dB re full scale."""
    window, hop = int(0.025 * SAMPLE_RATE), int(0.010 * SAMPLE_RATE)
    if len(wave) < window:
        wave = np.pad(wave, (0, window - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, window)[::hop]  # (F, window)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-10
    return float(np.percentile(20 * np.log10(rms), percentile))


def normalise_level(wave: np.ndarray, target_db: float, limit_db: float = 30.0) -> np.ndarray:
    """Scale `wave` so its active level is `target_db` (gain within ±limit_db), clipped to [-1, 1]."""
    gain_db = float(np.clip(target_db - active_level_db(wave), -limit_db, limit_db))
    return np.clip(wave * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", default="exp/default", help="recipe folder with data/<corpus>/{train,dev,dev_tune}.tsv")
    parser.add_argument("--model", default=None, help="acoustic model (default: the bundled one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = Path(args.exp) / "data"
    pool = [u for corpus in CORPORA for u in read_manifest(data / corpus / "train.tsv")]
    picked = np.random.default_rng(0).choice(len(pool), 400, replace=False)
    levels = [active_level_db(load_audio(pool[i].audio_path)) for i in picked]
    target = float(np.median(levels))
    print(f"target {target:.2f} dB: the median of 400 training utterances "
          f"(p10 {np.percentile(levels, 10):.1f}, p90 {np.percentile(levels, 90):.1f} dB)")
    transcriber = Transcriber.from_pretrained(args.model, device="cpu")
    for manifest, pads in ((data / "an4" / "dev_tune.tsv", [0.0]), (data / "fsdd" / "dev.tsv", [0.0, 0.25])):
        utterances = read_manifest(manifest)
        waves = [load_audio(u.audio_path) for u in utterances]
        cutoffs = [band_cutoff(u.audio_path) for u in utterances]
        refs = [normalize_text(u.text) for u in utterances]
        words = sum(len(r.split()) for r in refs)
        print(f"{manifest}: {len(utterances)} files, {words} words, median active level "
              f"{np.median([active_level_db(w) for w in waves]):.1f} dB")
        for pad in pads:
            rng = np.random.default_rng(0)  # the noise bench/padded_wer.py adds
            padded = [pad_with_fixed_noise(w, pad, -45.0, rng) for w in waves]
            for name, inputs in (("as is", padded), ("normalised", [normalise_level(w, target) for w in padded])):
                wer, cer = score_texts(refs, greedy_texts(transcriber, inputs, cutoffs))
                print(f"  pad {pad:g} s, {name}: WER {wer:.2f} % ({round(wer * words / 100)} errors), CER {cer:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
