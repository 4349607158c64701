"""Greedy WER of several acoustic models and of their posterior average (an output-level ensemble).

    python bench/ensemble_wer.py --manifest exp/default/data/an4/dev_tune.tsv --model A.pt --model B.pt [--pad 0.25]

Every model reads the same files (decoded whole, in length-sorted batches as `asr tune` does) through its
own log-mel front end and CMVN. The ensemble's output per frame is the log of the mean of the members'
probabilities, decoded greedily like one model's. Members must share the tokenizer and the frame rate.
With `--pad S`, each file first gets S seconds of white noise 45 dB below its RMS on both sides, the
same noise for every model (bench/padded_wer.py's fixed-seed padding).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.padded_wer import pad_with_fixed_noise  # noqa: E402
from bench.runinfo import cpu_model, git_commit  # noqa: E402

from asr.audio import load_audio  # noqa: E402
from asr.manifest import read_manifest  # noqa: E402
from asr.metrics import error_counts  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.transcribe import GreedyDecoder, Transcriber, band_cutoff  # noqa: E402
from asr.tune import batched_log_probs  # noqa: E402


def member_log_probs(transcriber: Transcriber, waves: list[np.ndarray], cutoffs: list[float]) -> list[torch.Tensor]:
    """Each wave's (T'_i, V) log-probs from one model."""
    return [torch.from_numpy(lp) for lp in batched_log_probs(transcriber, waves, cutoffs)]


def posterior_average(per_member: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """log(mean_m p_m) per utterance and frame: M lists of (T'_i, V) → one list of (T'_i, V)."""
    averaged = []
    for frames in zip(*per_member):
        if len({f.shape for f in frames}) != 1:
            raise ValueError(f"members disagree on the output shape: {[tuple(f.shape) for f in frames]}")
        averaged.append(torch.logsumexp(torch.stack(frames), dim=0) - math.log(len(frames)))  # (T', V)
    return averaged


def greedy_word_errors(transcriber: Transcriber, log_probs: list[torch.Tensor], refs: list[str]) -> dict:
    """Greedy hypotheses of (T'_i, V) log-probs scored against `refs`: jiwer's word counts."""
    decoder = GreedyDecoder(transcriber.tokenizer)
    hyps = [decoder.decode(lp[None], torch.tensor([lp.shape[0]]))[0] for lp in log_probs]
    return error_counts(refs, hyps, "word")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, action="append", help="TSV manifest with reference text (repeatable)")
    parser.add_argument("--model", required=True, action="append", help="member model file (give two or more)")
    parser.add_argument("--pad", type=float, default=0.0, help="seconds of quiet noise on each side (default 0)")
    parser.add_argument("--noise-db", type=float, default=-45.0, help="padding noise vs each file's RMS in dB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if len(args.model) < 2:
        parser.error("an ensemble needs at least two --model")
    torch.set_num_threads(args.threads)
    started = time.time()
    try:  # a bad manifest, audio or model file: one line naming it, before any decoding
        sets = {manifest: read_manifest(manifest, check_audio=True) for manifest in args.manifest}
        transcribers = [Transcriber.from_pretrained(model, device="cpu") for model in args.model]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pad {args.pad:g} s; commit {git_commit()}, {cpu_model()}, {args.threads} thread(s)\n")
    print("| manifest | " + " | ".join(f"member {i + 1}" for i in range(len(transcribers)))
          + " | posterior average |")
    print("|---|" + "---|" * (len(transcribers) + 1))
    totals = [0] * (len(transcribers) + 1)
    for manifest, utterances in sets.items():
        rng = np.random.default_rng(0)
        waves = [pad_with_fixed_noise(load_audio(u.audio_path), args.pad, args.noise_db, rng) for u in utterances]
        cutoffs = [band_cutoff(u.audio_path) for u in utterances]
        refs = [normalize_text(u.text) for u in utterances]
        per_member = [member_log_probs(t, waves, cutoffs) for t in transcribers]
        counts = [greedy_word_errors(transcribers[0], lps, refs) for lps in per_member]
        counts.append(greedy_word_errors(transcribers[0], posterior_average(per_member), refs))
        totals = [total + c["errors"] for total, c in zip(totals, counts)]
        print(f"| {manifest} | " + " | ".join(f"{c['errors']}/{c['ref_len']} ({100 * c['errors'] / c['ref_len']:.2f} %)"
                                              for c in counts) + " |")
    print("| all: word errors | " + " | ".join(str(total) for total in totals) + " |")
    for i, model in enumerate(args.model):
        print(f"member {i + 1}: {model}")
    print(f"\n{time.time() - started:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
