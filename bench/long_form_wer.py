"""Accuracy on a long recording vs the same clips one by one: WER against the true transcripts.

    python bench/long_form_wer.py --model asr/pretrained/model.pt [--model other.pt ...] [--seeds 2 3]
        [--decoder greedy|beam]

The recording is the one tests/test_long_audio.py builds: every AN4 clip of tests/data and
examples/audio, 6 shuffled rounds, separated by 0.7–3 s of digital silence or −70 dBFS noise,
with one 25 s silence in the middle (about 2.5 minutes). Each model transcribes the long file
(cut into pieces at pauses, as `asr transcribe` does) and every clip alone; both are scored
against the clips' reference transcripts. A model whose output depends on what else is in a
piece (per-piece normalisation, for example) shows a gap between the two columns. `--decoder beam`
decodes with each model's tuned beam search + LM (its `.decode.json`), as `asr transcribe` does by
default for such a model; greedy is this bench's default, as in its earlier rows of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the recording builder of the long-audio tests

from test_long_audio import ALL_CLIPS, build_recording  # noqa: E402

from asr.audio import load_audio  # noqa: E402
from asr.manifest import read_manifest  # noqa: E402
from asr.api import load  # noqa: E402

EXAMPLE_TEXT = {"an4_mfaa_enter_ninety_eight_twenty_eight.flac": "ENTER NINETY EIGHT TWENTY EIGHT",
                "an4_mbmg_erase_s_v_n_y_ten_ten.flac": "ERASE S V N Y TEN TEN",
                "an4_fnsv_a_v_m_u_four_forty_two.flac": "A V M U FOUR FORTY TWO"}  # examples/audio/README.md


def references() -> dict[str, str]:
    """Clip file name → reference transcript."""
    refs = {u.audio_path.name: u.text for u in read_manifest(REPO / "tests/data/an4_mblw.tsv")}
    return {**refs, **EXAMPLE_TEXT}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3], help="one recording per seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decoder", choices=["greedy", "beam"], default="greedy",
                        help="greedy (default) or the model's tuned beam search + LM")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    refs = references()
    clips = [load_audio(p) for p in ALL_CLIPS]
    transcribers = {m: load(m, decoder=args.decoder, device="cpu") for m in args.model}
    print(f"{args.decoder} decoding\n\n| model | recording | long-file WER % | clip-by-clip WER % |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in args.seeds:
            rec = build_recording(folder / f"long{seed}.flac", clips, repeats=6, seed=seed)
            truth = " ".join(refs[ALL_CLIPS[c].name] for c in rec.clips)
            for name, transcriber in transcribers.items():
                [long] = transcriber.transcribe_files([rec.path])
                alone = " ".join(r.text for r in transcriber.transcribe_files([ALL_CLIPS[c] for c in rec.clips]))
                print(f"| {name} | seed {seed} | {100 * jiwer.wer(truth, long.text):.1f} | "
                      f"{100 * jiwer.wer(truth, alone):.1f} |")
    print(f"\n{time.time() - started:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
