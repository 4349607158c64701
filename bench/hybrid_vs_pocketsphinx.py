"""Hybrid HMM/Viterbi decoding against PocketSphinx 5 with the SAME word n-gram LM: WER and CPU RTF.

    python bench/hybrid_vs_pocketsphinx.py [--manifest TSV] [--lm ARPA] [--limit N] [--json OUT]
        [--model CKPT --hybrid-model NPZ]

Systems, all on the same files in the same process, file by file (batch = 1), one torch thread:

* ``hybrid (state head)``: ``--decoder hybrid --hybrid-emissions trained`` with the hybrid assets
  (frame-level state posteriors ÷ priors, lexicon, LM, numba Viterbi), exactly as `asr decode`
  builds it; the bundled model and assets unless ``--model``/``--hybrid-model`` name others (e.g.
  recipes/an4's);
* ``hybrid (CTC posteriors)``: ``--decoder hybrid --hybrid-emissions ctc`` (the default is whichever of
  the two tuned better, recorded in the assets);
* ``CTC beam + LM``: ``--decoder beam`` with the same LM (the model's tuned α/β when the LM is the
  one they were tuned with, i.e. the one in the model's ``.decode.json``);
* ``PocketSphinx``: PocketSphinx 5 with its bundled en-us acoustic model (continuous HMM-GMM) and
  CMUdict pronunciations, but our LM: the ARPA file is lower-cased into a temporary copy (CMUdict
  is lower-case) and the dictionary is cut to the LM's words. LM words CMUdict lacks are reported
  (PocketSphinx cannot say them). Its language weight is chosen from a grid by WER on the tuning
  speakers (``--ps-tune-manifest``, dev_tune), as our scales were; ``--ps-lw`` fixes it instead.

RTF = processing wall time / audio duration, including audio loading, features, model and search;
model/LM loading and one warm-up pass per system are excluded. WER is scored on normalised text.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata as metadata
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from runinfo import cpu_model, git_commit, write_json_atomic  # noqa: E402  (bench/ is on sys.path)
from transcribe_rtf import ours_batch1 as transcribe_each  # noqa: E402  (file by file, no word times)
from transcribe_rtf import pocketsphinx_pass as pocketsphinx_each  # noqa: E402
from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.cli import build_decoder, build_parser, user_error_types  # noqa: E402
from asr.manifest import read_manifest  # noqa: E402
from asr.metrics import cer, wer  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.transcribe import DEFAULT_MODEL, Transcriber  # noqa: E402
from asr.tune import load_decode_settings  # noqa: E402

DEV_MANIFEST = REPO / "exp/default/data/an4/dev.tsv"
TUNE_MANIFEST = REPO / "exp/default/data/an4/dev_tune.tsv"
BUNDLED_MODEL = DEFAULT_MODEL
PS_DEFAULT_LW = 6.5
PS_LW_GRID = "0.25,0.5,1,2,4,6.5,10"


def our_system(extra: list[str], lm: str | None) -> Transcriber:
    """A Transcriber with the decoder `asr decode <extra> [--lm LM]` would build (CPU)."""
    argv = ["decode", "--manifest", "-", "--device", "cpu", *extra] + (["--lm", lm] if lm else [])
    args = build_parser().parse_args(argv)
    transcriber = Transcriber.from_pretrained(args.model, device="cpu")
    build_decoder(args, transcriber)
    return transcriber


def read_arpa_words(path: Path) -> list[str]:
    """The 1-gram words of an ARPA file (plain or .gz)."""
    from asr.decoding.lm import load_arpa

    return [w for w in load_arpa(path).vocab if w not in ("<s>", "</s>", "<unk>")]


def pocketsphinx_resources(lm_path: Path, workdir: Path) -> tuple[Path, Path, list[str]]:
    """Lower-cased copy of the LM, a dictionary cut to its words; returns (lm, dict, words missing from CMUdict)."""
    import pocketsphinx

    opener = gzip.open if lm_path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(lm_path, "rt", encoding="utf-8") as src:
        text = src.read()
    lines = []
    for line in text.splitlines():
        if line.startswith("\\") or line.startswith("ngram ") or not line.strip():
            lines.append(line)
        else:
            lines.append(line.lower())
    lm_out = workdir / "lm.arpa"
    lm_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = {w.lower() for w in read_arpa_words(lm_path)}
    cmudict = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    entries, found = [], set()
    for line in cmudict.read_text(encoding="utf-8", errors="replace").splitlines():
        head = line.split(" ", 1)[0]
        base = head.split("(", 1)[0]
        if base in words:
            entries.append(line)
            found.add(base)
    dict_out = workdir / "words.dict"
    dict_out.write_text("\n".join(entries) + "\n", encoding="utf-8")
    return lm_out, dict_out, sorted(words - found)


def make_pocketsphinx(lm: Path, dictionary: Path, lw: float | None):
    try:
        import pocketsphinx
    except ImportError:
        raise SystemExit("error: pocketsphinx is not installed (pip install 'pocketsphinx>=5')") from None
    hmm = os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us")
    options = {"hmm": hmm, "lm": str(lm), "dict": str(dictionary), "loglevel": "FATAL"}
    if lw is not None:
        options["lw"] = lw
    return pocketsphinx.Decoder(**options)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=str(DEV_MANIFEST), help="default: exp/default/data/an4/dev.tsv")
    parser.add_argument("--lm", help="ARPA LM for every system (default: the one in the model's .decode.json, "
                        "for the bundled model the bundled 4-gram)")
    parser.add_argument("--model", help="CTC checkpoint (default: the bundled model)")
    parser.add_argument("--hybrid-model",
                        help="hybrid assets .npz trained on --model's encoder (default: the bundled ones)")
    parser.add_argument("--limit", type=int, default=0, help="first N utterances only (0 = all)")
    parser.add_argument("--ps-lw", type=float, help="PocketSphinx language weight; skips its tuning")
    parser.add_argument("--ps-tune-manifest", default=str(TUNE_MANIFEST),
                        help="choose PocketSphinx's language weight from --ps-lw-grid by WER on these files, as our "
                        "scales were chosen (default: exp/default/data/an4/dev_tune.tsv; 'none': its default 6.5)")
    parser.add_argument("--ps-lw-grid", default=PS_LW_GRID, help=f"language weights to try (default {PS_LW_GRID})")
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args(argv)


def read_eval_set(manifest: str, limit: int = 0) -> tuple[list[str], list[str], float]:
    """(audio paths, normalised references, seconds of audio) of a manifest's first `limit` rows (0 = all)."""
    utts = read_manifest(manifest, check_audio=True)
    utts = utts[:limit] if limit else utts
    paths = [str(u.audio_path) for u in utts]
    refs = [normalize_text(u.text) for u in utts]
    return paths, refs, sum(len(load_audio(p)) for p in paths) / SAMPLE_RATE


def our_systems(args: argparse.Namespace) -> tuple[dict[str, Transcriber], str]:
    """Our three decoders for the model/assets/LM the flags name, and the LM's absolute path.

    Raises ValueError (or a user error of asr.cli) naming the problem.
    """
    model_flags = (["--model", args.model] if args.model else []) + (
        ["--hybrid-model", args.hybrid_model] if args.hybrid_model else [])
    tuned_lm = load_decode_settings(args.model or BUNDLED_MODEL).lm
    if args.lm is None and tuned_lm is None:
        raise ValueError("the model has no tuned LM in its .decode.json: pass --lm ARPA")
    lm = str(Path(args.lm or tuned_lm).resolve())
    lm_flag = None if tuned_lm and Path(lm) == Path(tuned_lm).resolve() else lm  # the tuned LM keeps its settings
    systems = {name: our_system(model_flags + flags, lm_flag) for name, flags in (
        ("hybrid (state head)", ["--decoder", "hybrid", "--hybrid-emissions", "trained"]),
        ("hybrid (CTC posteriors)", ["--decoder", "hybrid", "--hybrid-emissions", "ctc"]),
        ("CTC beam + LM", ["--decoder", "beam"]))}
    return systems, lm


def tune_pocketsphinx_lw(lm: Path, dictionary: Path, grid: list[float], paths: list[str], refs: list[str]
                         ) -> tuple[float, dict[str, float]]:
    """PocketSphinx's language weight with the lowest WER (then CER, then closest to its default) on the files.

    Returns the weight and {weight: WER %} for every weight tried.
    """
    sweep, scored = {}, []
    for lw in grid:
        hyps = [normalize_text(h) for h in pocketsphinx_each(make_pocketsphinx(lm, dictionary, lw), paths)]
        sweep[f"{lw:g}"] = 100 * wer(refs, hyps)
        scored.append((sweep[f"{lw:g}"], cer(refs, hyps), abs(lw - PS_DEFAULT_LW), lw))
        print(f"PocketSphinx lw {lw:g} on the tuning files: WER {sweep[f'{lw:g}']:.2f}%", file=sys.stderr)
    return min(scored)[-1], sweep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    torch.set_num_threads(1)
    tuning = args.ps_lw is None and args.ps_tune_manifest.lower() != "none"
    try:
        paths, refs, audio_s = read_eval_set(args.manifest, args.limit)
        tune_paths, tune_refs, _ = read_eval_set(args.ps_tune_manifest) if tuning else ([], [], 0.0)
        systems, lm = our_systems(args)
        grid = [float(x) for x in args.ps_lw_grid.split(",")]
    except (ValueError, *user_error_types()) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runners = {name: (lambda t=t: transcribe_each(t, paths)) for name, t in systems.items()}
    ps_lw, ps_sweep = args.ps_lw, {}
    with tempfile.TemporaryDirectory() as tmp:
        ps_lm, ps_dict, missing = pocketsphinx_resources(Path(lm), Path(tmp))
        if tuning:
            ps_lw, ps_sweep = tune_pocketsphinx_lw(ps_lm, ps_dict, grid, tune_paths, tune_refs)
        ps = make_pocketsphinx(ps_lm, ps_dict, ps_lw)
        ps_name = f"PocketSphinx 5 en-us, same LM, lw {ps_lw if ps_lw is not None else PS_DEFAULT_LW:g}"
        runners[ps_name] = lambda: pocketsphinx_each(ps, paths)
        print(f"warm-up: {len(paths)} files, {audio_s:.1f} s of audio", file=sys.stderr)
        for fn in runners.values():
            fn()
        results = {}
        for name, fn in runners.items():
            start = time.perf_counter()
            hyps = [normalize_text(h) for h in fn()]
            seconds = time.perf_counter() - start
            results[name] = {"seconds": seconds, "rtf": seconds / audio_s, "wer": 100 * wer(refs, hyps),
                             "cer": 100 * cer(refs, hyps)}
            print(f"{name}: {seconds:.2f} s", file=sys.stderr)

    report = {"bench": "hybrid_vs_pocketsphinx",
              "command": "python " + shlex.join(["bench/hybrid_vs_pocketsphinx.py",
                                                 *(sys.argv[1:] if argv is None else argv)]),
              "commit": git_commit(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": 1,
              "load_average_1m": os.getloadavg()[0], "pocketsphinx": metadata.version("pocketsphinx"),
              "manifest": args.manifest, "model": args.model or str(BUNDLED_MODEL),
              "hybrid_model": args.hybrid_model or "bundled", "lm": lm, "lm_words_missing_from_cmudict": missing,
              "pocketsphinx_lw": ps_lw, "pocketsphinx_lw_sweep": ps_sweep,
              "pocketsphinx_lw_tuned_on": args.ps_tune_manifest if ps_sweep else None,
              "files": len(paths), "audio_s": audio_s, "results": results}
    print_report(report)
    report["wall_s"] = time.perf_counter() - wall
    print(f"hardware: {report['cpu']}, {report['logical_cpus']} logical CPUs, 1 torch thread, load avg "
          f"{report['load_average_1m']:.2f} | pocketsphinx {report['pocketsphinx']} | commit {report['commit']} "
          f"| wall {report['wall_s']:.1f} s")
    print(f"command: {report['command']}")
    if args.json:
        write_json_atomic(Path(args.json), report)
    return 0


def print_report(report: dict) -> None:
    """The WER / CER / RTF table and what PocketSphinx could not say or was tuned on."""
    print(f"\n{report['files']} files ({report['audio_s']:.1f} s) from {report['manifest']}; LM {report['lm']}")
    header = f"{'system':<42} {'WER %':>7} {'CER %':>7} {'RTF':>7} {'wall s':>8}"
    print(header + "\n" + "-" * len(header))
    for name, r in report["results"].items():
        print(f"{name:<42} {r['wer']:>7.2f} {r['cer']:>7.2f} {r['rtf']:>7.4f} {r['seconds']:>8.2f}")
    missing = report["lm_words_missing_from_cmudict"]
    print(f"\nLM words missing from CMUdict (PocketSphinx cannot output them): {len(missing)} {missing[:12]}")
    if report["pocketsphinx_lw_sweep"]:
        sweep = ", ".join(f"{lw}: {w:.2f}" for lw, w in report["pocketsphinx_lw_sweep"].items())
        print(f"PocketSphinx language weight chosen on {report['pocketsphinx_lw_tuned_on']} (WER %): {sweep}")


if __name__ == "__main__":
    sys.exit(main())
