"""CPU real-time factor of our transcription against PocketSphinx 5, same files, same process.

    python bench/transcribe_rtf.py [--model M] [--manifest TSV] [--limit N] [--threads T] [--json OUT]

RTF = processing wall time / audio duration (lower is faster). Every timed pass includes reading
and resampling the audio (asr.audio.load_audio) as well as features, model and decoding; model
loading and one warm-up pass of each system are excluded. Our model runs greedy decoding in two
modes: file by file (batch = 1, like a user transcribing one recording) and batched (all files
handed to `Transcriber.transcribe_files`, which length-sorts and batches them); and, where the model
ships tuned beam-search settings with an LM (the bundled model does), file by file with that beam
search + LM, which is what `asr transcribe` runs by default for such a model. PocketSphinx decodes the
same 16 kHz audio as int16 PCM, one full utterance at a time, with its bundled generic en-us
acoustic model, dictionary and language model.

The headline is `our RTF / PocketSphinx RTF` (<= 1 means we are faster). Because both systems
run in the same process on the same files, the ratio is meaningful even when the machine is
busy; the absolute RTFs are not. WER is printed for both, but PocketSphinx uses its generic
en-us LM (not tuned to the corpus), so the WER column is not a fair accuracy comparison.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from runinfo import cpu_model, finish_report, git_commit  # noqa: E402  (bench/ is on sys.path)
from asr.audio import SAMPLE_RATE, AudioError, load_audio  # noqa: E402
from asr.checkpoint import CheckpointError  # noqa: E402
from asr.manifest import ManifestError, read_manifest  # noqa: E402
from asr.metrics import cer, wer  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.transcribe import DEFAULT_MODEL, ModelNotFoundError, Transcriber  # noqa: E402

DEV_MANIFEST = REPO / "exp/default/data/an4/dev.tsv"
SHARED_AN4 = REPO.parent / "shared/data/an4/manifest.tsv"


# ---------------------------------------------------------------- run description (hardware, commit)

def display_path(path: str | os.PathLike) -> str:
    """`path` relative to the repository when it lies inside it (shorter, machine-independent)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


# ---------------------------------------------------------------- the systems under test

def ours_batch1(transcriber: Transcriber, paths: list[str]) -> list[str]:
    """One `transcribe_files` call per file: load, features, model, decode (no word times)."""
    texts = []
    for path in paths:
        [result] = transcriber.transcribe_files([path], with_words=False)
        if isinstance(result, AudioError):
            raise result
        texts.append(result.text)
    return texts


def ours_batched(transcriber: Transcriber, paths: list[str]) -> list[str]:
    """All files in one `transcribe_files` call (length-sorted batches of <= max_batch_seconds)."""
    texts = []
    for result in transcriber.transcribe_files(paths, with_words=False):
        if isinstance(result, AudioError):
            raise result
        texts.append(result.text)
    return texts


def default_beam_search(model: str | None) -> Transcriber | None:
    """The model with the beam search + LM that `asr transcribe` runs for it by default, or None where it
    decodes greedily by default (no tuned LM settings: the greedy rows say it all)."""
    from asr.api import load
    from asr.cli import model_default_decoder
    from asr.transcribe import resolve_model_path

    if model_default_decoder(resolve_model_path(model))[0] != "beam":
        return None
    return load(model, decoder="beam", device="cpu")


def beam_description(beam: Transcriber | None) -> dict | None:
    """Beam width, LM and weights of the beam-search system, for the report."""
    if beam is None:
        return None
    d = beam.decoder
    return {"beam": d.beam_size, "alpha": d.alpha, "beta": d.beta, "lexicon": d.lexicon,
            "lm_order": d.lm.order if d.lm is not None else None}


def make_pocketsphinx():
    """A PocketSphinx 5 decoder with its bundled en-us acoustic model, CMUdict and generic LM."""
    try:
        import pocketsphinx
    except ImportError:
        raise SystemExit("error: pocketsphinx is not installed (pip install 'pocketsphinx>=5', or "
                         "pip install -e '.[bench]'); it is the peer this benchmark compares against") from None
    decoder = pocketsphinx.Decoder(loglevel="FATAL")  # defaults: hmm=en-us, lm=en-us.lm.bin, dict=cmudict
    if int(decoder.config["samprate"]) != SAMPLE_RATE:
        raise SystemExit(f"error: PocketSphinx expects {decoder.config['samprate']} Hz, we feed {SAMPLE_RATE} Hz")
    return decoder


def pocketsphinx_pass(decoder, paths: list[str]) -> list[str]:
    """Load each file exactly as our model does, convert to int16 PCM and decode it as one utterance.

    Each file is decoded on its own, as ours are: the feature state (cepstral mean, noise estimate) is
    reset before it. Otherwise PocketSphinx carries it over from the previous file and its output
    depends on the order of the list (on 39 AN4 files, 11.06 % or 12.83 % WER by order alone).
    """
    texts = []
    for path in paths:
        wave = load_audio(path)  # (N,) float32 16 kHz
        pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(pcm, no_search=False, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts.append(hyp.hypstr if hyp is not None else "")
    return texts


# ---------------------------------------------------------------- measurement

def timed(fn, *args) -> tuple[float, list[str]]:
    start = time.perf_counter()
    texts = fn(*args)
    return time.perf_counter() - start, texts


def score(refs: list[str], hyps: list[str]) -> dict[str, float]:
    hyps = [normalize_text(h) for h in hyps]
    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_manifest = DEV_MANIFEST if DEV_MANIFEST.is_file() else SHARED_AN4
    parser.add_argument("--model", default=None,
                        help=f"checkpoint (default: the bundled {DEFAULT_MODEL.relative_to(REPO)}); "
                             "e.g. exp/default/train/last.pt")
    parser.add_argument("--manifest", default=str(default_manifest),
                        help="manifest of the files to transcribe (default: the AN4 dev split "
                             "exp/default/data/an4/dev.tsv if it exists, else ../shared/data/an4/manifest.tsv)")
    parser.add_argument("--limit", type=int, default=100, help="use the first N utterances (default 100; 0 = all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for our model (default 1: PocketSphinx is single-threaded)")
    parser.add_argument("--batch-seconds", type=float, default=120.0,
                        help="padded audio seconds per batch in the batched mode (default 120, the CLI's)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed passes per system, interleaved; the median is reported (default 1)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    if args.threads < 1 or args.repeats < 1 or args.limit < 0:
        print("error: --threads and --repeats must be >= 1 and --limit >= 0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    try:
        utts = read_manifest(args.manifest, check_audio=True)
        transcriber = Transcriber.from_pretrained(args.model, device="cpu", max_batch_seconds=args.batch_seconds)
    except (ManifestError, ModelNotFoundError, CheckpointError) as exc:
        hint = " (pass --model, e.g. exp/default/train/last.pt)" if isinstance(exc, ModelNotFoundError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    if args.limit:
        utts = utts[: args.limit]
    if not utts:
        print(f"error: {args.manifest}: no utterances", file=sys.stderr)
        return 2
    beam = default_beam_search(args.model)
    decoder = make_pocketsphinx()

    # Warm-up pass (excluded): fills the page cache for both systems, allocator pools, lazy imports.
    # It also finds the audio length and drops unreadable files from every system alike.
    paths, refs, audio_s = [], [], 0.0
    for utt in utts:
        try:
            audio_s += len(load_audio(utt.audio_path)) / SAMPLE_RATE
        except AudioError as exc:
            print(f"warning: skipped {exc}", file=sys.stderr)
            continue
        paths.append(str(utt.audio_path))
        refs.append(normalize_text(utt.text))
    if not paths:
        print("error: no readable audio in the manifest", file=sys.stderr)
        return 2
    systems = {
        "ours_batch1": lambda: ours_batch1(transcriber, paths),
        "ours_batched": lambda: ours_batched(transcriber, paths),
        "pocketsphinx": lambda: pocketsphinx_pass(decoder, paths),
    }
    if beam is not None:
        systems["ours_beam_batch1"] = lambda: ours_batch1(beam, paths)
    print(f"warm-up: {len(paths)} files, {audio_s:.1f} s of audio ...", file=sys.stderr)
    for fn in systems.values():
        fn()

    times: dict[str, list[float]] = {name: [] for name in systems}
    texts: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for name, fn in systems.items():
            seconds, texts[name] = timed(fn)
            times[name].append(seconds)
            print(f"pass {repeat + 1}/{args.repeats} {name}: {seconds:.2f} s", file=sys.stderr)

    results = {}
    for name in systems:
        seconds = statistics.median(times[name])
        results[name] = {"seconds": seconds, "passes_s": times[name], "rtf": seconds / audio_s,
                         "x_realtime": audio_s / seconds, **score(refs, texts[name])}
    ps_rtf = results["pocketsphinx"]["rtf"]
    ratios = {"batch1_vs_pocketsphinx": results["ours_batch1"]["rtf"] / ps_rtf,
              "batched_vs_pocketsphinx": results["ours_batched"]["rtf"] / ps_rtf}
    if "ours_beam_batch1" in results:
        ratios["beam_batch1_vs_pocketsphinx"] = results["ours_beam_batch1"]["rtf"] / ps_rtf

    model_path = transcriber.loaded.path
    cfg = transcriber.model.config
    report = {
        "bench": "transcribe_rtf",
        "command": "python " + shlex.join(["bench/transcribe_rtf.py", *(sys.argv[1:] if argv is None else argv)]),
        "commit": git_commit(),
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "torch": torch.__version__,
        "pocketsphinx": metadata.version("pocketsphinx"),
        "model": display_path(model_path),
        "model_config": cfg.to_dict(),
        "model_parameters": transcriber.model.num_parameters(),
        "manifest": display_path(args.manifest),
        "files": len(paths),
        "audio_s": audio_s,
        "batch_seconds": args.batch_seconds,
        "repeats": args.repeats,
        "beam_settings": beam_description(beam),
        "results": results,
        "ratios": ratios,
    }

    print(f"\nCPU RTF on {len(paths)} files ({audio_s:.1f} s audio) from {report['manifest']}")
    print(f"model {report['model']} ({cfg.num_layers}x{cfg.hidden_size} {cfg.cell}, "
          f"{report['model_parameters'] / 1e6:.2f} M params), no word times\n")
    header = f"{'system':<34} {'wall s':>8} {'RTF':>7} {'x RT':>7} {'WER %':>7} {'CER %':>7}"
    print(header)
    print("-" * len(header))
    labels = {"ours_batch1": f"asr greedy, batch=1, {args.threads} thr",
              "ours_batched": f"asr greedy, batched, {args.threads} thr",
              "ours_beam_batch1": f"asr beam + LM, batch=1, {args.threads} thr",
              "pocketsphinx": "PocketSphinx 5 en-us (generic LM)"}
    for name, label in labels.items():
        if name not in results:
            continue
        r = results[name]
        print(f"{label:<34} {r['seconds']:>8.2f} {r['rtf']:>7.4f} {r['x_realtime']:>7.1f} "
              f"{100 * r['wer']:>7.1f} {100 * r['cer']:>7.1f}")
    print(f"\nour RTF / PocketSphinx RTF: batch=1 {ratios['batch1_vs_pocketsphinx']:.3f}, "
          f"batched {ratios['batched_vs_pocketsphinx']:.3f}"
          + (f", beam + LM batch=1 {ratios['beam_batch1_vs_pocketsphinx']:.3f}" if "ours_beam_batch1" in results else "")
          + "   (<= 1 means we are faster)")
    print("note: PocketSphinx uses its generic en-us LM and dictionary, not one fitted to this corpus, "
          "so the WER columns are not a fair accuracy comparison; the RTF ratio is the point.")
    print("note: RTF includes audio loading and features; model loading and one warm-up pass are excluded.")
    hw = report["hardware"]
    finish_report(report, wall_start, f"{hw['cpu']}, {hw['logical_cpus']} logical CPUs, torch threads "
                  f"{hw['torch_threads']}, load avg {hw['load_average_1m']:.2f} | torch {report['torch']} "
                  f"| pocketsphinx {report['pocketsphinx']}", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
