"""WER when the same files get room noise before and after the speech: how much a model leans on trimming.

    python bench/padded_wer.py --manifest exp/default/data/fsdd/dev.tsv [--model M ...] [--pads 0 0.25 0.5]

The digit corpus (FSDD) is trimmed to the word: a clip starts and stops on it. A model trained on
such clips can learn that a word fills its whole input and misread a digit recorded the way users
record, with a pause around it. Each file is decoded greedily as it is, then with `pad` seconds of
white noise before and after it, 45 dB below the file's own RMS level (a quiet room; fixed seed, the
same noise for every model). Files are decoded whole, as `asr decode` does for short files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.runinfo import cpu_model, git_commit  # noqa: E402

from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.augment import surround_with_noise  # noqa: E402
from asr.manifest import read_manifest  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.transcribe import Transcriber, band_cutoff  # noqa: E402
from asr.tune import score_texts  # noqa: E402


def pad_with_fixed_noise(wave: np.ndarray, seconds: float, noise_db: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) → (N + 2·seconds·16 kHz,): white noise `noise_db` below the wave's RMS on both sides."""
    if seconds <= 0:
        return wave
    count = int(round(seconds * SAMPLE_RATE))
    return surround_with_noise(wave, count, count, noise_db, rng)


def greedy_texts(transcriber: Transcriber, waves: list[np.ndarray], cutoffs: list[float],
                 batch: int = 50) -> list[str]:
    """Greedy text of each whole wave, decoded in batches."""
    texts: list[str] = []
    for start in range(0, len(waves), batch):
        decoded = transcriber.decode_waves(waves[start:start + batch], cutoffs[start:start + batch], with_words=False)
        texts += [text for text, _ in decoded]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="TSV manifest with reference text")
    parser.add_argument("--model", action="append", help="model file (repeatable; default: the bundled one)")
    parser.add_argument("--pads", type=float, nargs="+", default=[0.0, 0.25, 0.5], help="seconds on each side")
    parser.add_argument("--noise-db", type=float, default=-45.0,
                        help="noise level vs each file's RMS in dB (default -45; write --noise-db=-inf for digital silence)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phase-average", action="store_true",
                        help="average the posteriors over the frame-stacking phases (asr decode --phase-average)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    models = args.model or [str(REPO / "asr/pretrained/model.pt")]
    try:  # a bad manifest, audio or model file: one line naming it, before any decoding
        utterances = read_manifest(args.manifest, check_audio=True)
        waves = [load_audio(u.audio_path) for u in utterances]
        transcribers = {model: Transcriber.from_pretrained(model, device="cpu", phase_average=args.phase_average)
                        for model in models}
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cutoffs = [band_cutoff(u.audio_path) for u in utterances]
    refs = [normalize_text(u.text) for u in utterances]
    print(f"{args.manifest}: {len(utterances)} files; noise {args.noise_db:g} dB vs each file; "
          f"phase average {'on' if args.phase_average else 'off'}; "
          f"commit {git_commit()}, {cpu_model()}, {args.threads} thread(s)\n")
    print("| model | " + " | ".join(f"pad {p:g} s WER / CER %" for p in args.pads) + " |")
    print("|---|" + "---|" * len(args.pads))
    for model, transcriber in transcribers.items():
        cells = []
        for pad in args.pads:
            rng = np.random.default_rng(0)  # the same noise for every model
            padded = [pad_with_fixed_noise(w, pad, args.noise_db, rng) for w in waves]
            wer, cer = score_texts(refs, greedy_texts(transcriber, padded, cutoffs))
            cells.append(f"{wer:.2f} / {cer:.2f}")
        print(f"| {model} | " + " | ".join(cells) + " |")
    print(f"\n{time.time() - started:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
