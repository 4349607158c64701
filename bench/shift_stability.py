"""How much a model's transcript of a clip depends on where the clip starts (a few milliseconds).

    python bench/shift_stability.py --model asr/pretrained/model.pt [--model other.pt ...]

Every AN4 clip of tests/data and examples/audio (the clips of tests/test_long_audio.py) is
transcribed after 0.7 s + 0, 3, …, 30 ms of lead-in, digital silence or −70 dBFS noise (22 copies
per clip). With ×3 frame stacking the model sees each clip at one of three 10 ms phases, and a
short clip's letters can flip between them. The test of long recordings compares exact word lists
only on clips whose copies all read the same; this script names them for a given model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the clip list of the long-audio tests

from test_long_audio import ALL_CLIPS  # noqa: E402

import asr  # noqa: E402
from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402

LEAD_IN_S = 0.7
SHIFTS_MS = range(0, 31, 3)
NOISE_RMS = 3e-4  # about −70 dBFS


def shifted_copies(wave: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """`wave` (N,) after each lead-in of LEAD_IN_S + SHIFTS_MS, silent or noisy, plus 0.5 s of silence."""
    copies = []
    for shift_ms in SHIFTS_MS:
        lead = int(SAMPLE_RATE * (LEAD_IN_S + shift_ms / 1000))
        for noisy in (False, True):
            pad = (rng.standard_normal(lead) * NOISE_RMS).astype(np.float32) if noisy else np.zeros(lead, np.float32)
            copies.append(np.concatenate([pad, wave, np.zeros(SAMPLE_RATE // 2, np.float32)]))
    return copies


def stability(model: str, clips: list[Path]) -> dict[str, set[str]]:
    """Clip name → the set of distinct transcripts of its shifted copies (one element: stable)."""
    recognizer = asr.load(model, device="cpu")
    rng = np.random.default_rng(0)
    return {clip.name: {recognizer.transcribe(copy, sample_rate=SAMPLE_RATE).text
                        for copy in shifted_copies(load_audio(clip), rng)} for clip in clips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    for model in args.model:
        readings = stability(model, ALL_CLIPS)
        stable = [name for name, texts in readings.items() if len(texts) == 1]
        print(f"\n{model}: {len(stable)} of {len(readings)} clips read the same at every shift")
        for name, texts in readings.items():
            print(f"  {'stable  ' if len(texts) == 1 else 'varies  '} {name}: {' | '.join(sorted(texts))}")
    print(f"\n{len(SHIFTS_MS) * 2} copies per clip; wall {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
