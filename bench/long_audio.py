"""Peak memory and throughput of `Transcriber.transcribe_files` on one long recording, 5 to 60 min.

    python bench/long_audio.py [--minutes 5 15 30 60] [--threads 1] [--device cpu] [--json OUT]

Long recordings are built from real speech: the utterances of a manifest (default
../shared/data/librispeech/manifest.tsv, else the AN4 clips of tests/data and examples/audio)
played in turn with 0.3–2 s pauses of low noise between them, written as 16-bit FLAC block by
block. Each measurement runs in a fresh child process, so its peak RSS (`ru_maxrss`) is its own:

- `asr`: load the model, warm up on two short clips, then `transcribe_files([path],
  with_words=True)` (streamed reading, voice activity, chunks of <= 20 s decoded in batches,
  word alignment and stitching). Timed from the first read to the last word; model loading is
  not timed but is in the peak.
- `librosa.load`: the peer, `librosa.load(path, sr=16000)` of the whole file (after a 0.5 s
  warm-up load), i.e. what any whole-file pipeline holds before it can even start.

Printed per length: peak RSS of both, their growth over the process's RSS before the audio
(after imports and, for asr, the model), the ratio asr / librosa of the peaks, and asr's
throughput in seconds of audio per second. Flat asr peaks from 5 to 60 min show bounded
memory; the librosa column grows by 16000 × 4 bytes per second of audio.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from runinfo import cpu_model, git_commit, write_json_atomic  # noqa: E402  (bench/ is on sys.path)

SHARED_LIBRISPEECH = REPO.parent / "shared/data/librispeech/manifest.tsv"
FALLBACK_CLIPS = sorted((REPO / "tests/data/an4").glob("*.flac")) + sorted((REPO / "examples/audio").glob("an4_*.flac"))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the children (one measurement each)

def child_asr(path: str, threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_pretrained(device=device)
    list(transcriber.transcribe_files(FALLBACK_CLIPS[:2], with_words=True))  # warm-up: lazy imports, JIT, allocator
    before = peak_rss_mb()
    start = time.perf_counter()
    [result] = transcriber.transcribe_files([path], with_words=True)
    seconds = time.perf_counter() - start
    if isinstance(result, AudioError):
        raise SystemExit(f"error: {result}")
    return {"rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "seconds": seconds,
            "audio_s": result.duration, "words": len(result.words)}


def child_librosa(path: str) -> dict:
    import librosa

    librosa.load(path, sr=16000, duration=0.5)  # warm-up: librosa imports its back ends lazily
    before = peak_rss_mb()
    start = time.perf_counter()
    wave, _ = librosa.load(path, sr=16000)
    seconds = time.perf_counter() - start
    return {"rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "seconds": seconds, "audio_s": len(wave) / 16000}


def measure(kind: str, path: Path, args: argparse.Namespace) -> dict:
    """Run one child and return the dictionary it prints."""
    command = [sys.executable, __file__, "--child", kind, str(path), "--threads", str(args.threads),
               "--device", args.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: the {kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- building the recordings

def speech_clips(manifest: str | None) -> tuple[list[np.ndarray], str]:
    """Real utterances at 16 kHz and a description of where they come from."""
    from asr.audio import load_audio
    from asr.manifest import read_manifest

    if manifest is None and SHARED_LIBRISPEECH.is_file():
        manifest = str(SHARED_LIBRISPEECH)
    if manifest is not None:
        paths = [u.audio_path for u in read_manifest(manifest, check_audio=True)]
        source = str(Path(manifest).resolve().relative_to(REPO.parent)) if Path(manifest).resolve().is_relative_to(
            REPO.parent) else manifest
    else:
        paths, source = FALLBACK_CLIPS, "tests/data/an4 + examples/audio AN4 clips"
    return [load_audio(p) for p in paths], f"{source} ({len(paths)} utterances)"


def write_recording(path: Path, clips: list[np.ndarray], minutes: float, seed: int = 0) -> float:
    """Clips in turn with 0.3–2 s low-noise pauses until `minutes`, streamed into a 16-bit FLAC."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    target = int(minutes * 60 * 16000)
    written = 0
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16", format="FLAC") as out:
        index = 0
        while written < target:
            gap = (rng.standard_normal(int(rng.uniform(0.3, 2.0) * 16000)) * 3e-4).astype(np.float32)
            for part in (gap, clips[index % len(clips)]):
                part = part[: target - written]
                out.write(part)
                written += len(part)
            index += 1
    return written / 16000


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60], help="recording lengths")
    parser.add_argument("--manifest", help="utterances to build the recordings from (default: shared LibriSpeech "
                                           "subset if present, else the AN4 clips in the repository)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the asr child (default 1)")
    parser.add_argument("--device", default="cpu", help="device of the asr child (default cpu)")
    parser.add_argument("--workdir", help="where the recordings are written (default: a temporary folder)")
    parser.add_argument("--json", help="also write every number to this JSON file (atomically)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        kind, path = args.child
        print(json.dumps(child_asr(path, args.threads, args.device) if kind == "asr" else child_librosa(path)))
        return 0
    started = time.time()
    clips, source = speech_clips(args.manifest)
    print(f"# speech: {source}; pauses 0.3–2 s of -70 dBFS noise; FLAC 16 kHz 16-bit", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for minutes in args.minutes:
            path = Path(folder) / f"long_{minutes:g}min.flac"
            seconds = write_recording(path, clips, minutes)
            print(f"# {minutes:g} min: {path.stat().st_size / 2**20:.0f} MiB FLAC; measuring …", file=sys.stderr)
            ours, peer = measure("asr", path, args), measure("librosa", path, args)
            rows.append({"minutes": minutes, "audio_s": seconds, "asr": ours, "librosa": peer})
            path.unlink()
    header = (f"{'minutes':>7} {'asr peak MiB':>12} {'asr growth':>10} {'librosa peak':>12} {'librosa growth':>14} "
              f"{'asr/librosa':>11} {'asr x real time':>15} {'words':>6}")
    print(header)
    for row in rows:
        ours, peer = row["asr"], row["librosa"]
        print(f"{row['minutes']:>7g} {ours['peak_rss_mb']:>12.0f} {ours['peak_rss_mb'] - ours['rss_before_mb']:>10.0f} "
              f"{peer['peak_rss_mb']:>12.0f} {peer['peak_rss_mb'] - peer['rss_before_mb']:>14.0f} "
              f"{ours['peak_rss_mb'] / peer['peak_rss_mb']:>11.2f} {ours['audio_s'] / ours['seconds']:>15.0f} "
              f"{ours['words']:>6}")
    first, last = rows[0]["asr"], rows[-1]["asr"]
    flat = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(f"asr peak at {rows[-1]['minutes']:g} min / at {rows[0]['minutes']:g} min: {flat:.3f} "
          f"(librosa: {rows[-1]['librosa']['peak_rss_mb'] / rows[0]['librosa']['peak_rss_mb']:.2f})")
    import torch

    hardware = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
                f"{cpu_model()}, {os.cpu_count()} logical CPUs, {args.threads} torch thread(s)")
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *(argv or sys.argv[1:])])
    wall = time.time() - started
    print(f"# {hardware}; load {os.getloadavg()[0]:.2f}; commit {git_commit()}; wall {wall:.0f} s; {command}")
    if args.json:
        write_json_atomic(Path(args.json), {"command": command, "commit": git_commit(), "hardware": hardware,
                                            "load_avg_1min": os.getloadavg()[0], "wall_s": wall, "speech": source,
                                            "rows": rows, "asr_peak_ratio_last_first": flat})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
