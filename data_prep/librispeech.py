"""LibriSpeech (OpenSLR 12): download and manifests.

Standard layout, as the tarballs unpack it:

    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt-id> TEXT" per line

One manifest per part is written as `<out>/librispeech_<part>.tsv`.

    python -m data_prep.librispeech --corpus /data/LibriSpeech --out data/manifests
    python -m data_prep.librispeech --download /data --parts dev-clean test-clean --out data/manifests
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from asr.manifest import write_manifest
from asr.text import normalize_text
from data_prep.common import DataPrepError, download_file, make_utterances, run_cli, safe_extract

log = logging.getLogger(__name__)

OPENSLR_URL = "https://www.openslr.org/resources/12"
# part -> (url, md5). The MD5s are those of the official md5sum.txt in OpenSLR resource 12.
LIBRISPEECH_PARTS: dict[str, tuple[str, str | None]] = {
    "dev-clean": (f"{OPENSLR_URL}/dev-clean.tar.gz", "42e2234ba48799c1f50f24a7926300a1"),
    "dev-other": (f"{OPENSLR_URL}/dev-other.tar.gz", "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean": (f"{OPENSLR_URL}/test-clean.tar.gz", "32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other": (f"{OPENSLR_URL}/test-other.tar.gz", "fb5a50374b501bb3bac4815ee91d3135"),
    "train-clean-100": (f"{OPENSLR_URL}/train-clean-100.tar.gz", "2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360": (f"{OPENSLR_URL}/train-clean-360.tar.gz", "c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500": (f"{OPENSLR_URL}/train-other-500.tar.gz", "d1a0fd59409feb2c614ce4d30c387708"),
}


def download_librispeech(target: Path, parts: Sequence[str], mirror: str | None = None) -> Path:
    """Download (resumably, MD5-checked) and extract `parts` into `target`; return `target/LibriSpeech`.

    `mirror` replaces the OpenSLR base URL (e.g. `https://us.openslr.org/resources/12`).
    Archives are kept in `target` so an interrupted run resumes and a finished one is skipped.
    """
    target = Path(target)
    unknown = [part for part in parts if part not in LIBRISPEECH_PARTS]
    if unknown:
        raise DataPrepError(f"unknown LibriSpeech part(s) {', '.join(unknown)}; known: {', '.join(LIBRISPEECH_PARTS)}")
    for part in parts:
        url, md5 = LIBRISPEECH_PARTS[part]
        if mirror:
            url = f"{mirror.rstrip('/')}/{part}.tar.gz"
        archive = download_file(url, target / f"{part}.tar.gz", md5)
        safe_extract(archive, target)
    return target / "LibriSpeech"


def find_parts(corpus_dir: Path) -> list[str]:
    """Official part names present as sub-folders of `corpus_dir`, in the official order."""
    return [part for part in LIBRISPEECH_PARTS if (Path(corpus_dir) / part).is_dir()]


def read_trans(path: Path) -> list[tuple[str, str]]:
    """(utt_id, normalised text) for each line `<utt-id> TEXT` of a `.trans.txt` file."""
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt_id, _, text = line.strip().partition(" ")
        if not text.strip():
            raise DataPrepError(f"{path}:{number}: expected '<utt-id> TEXT', got {line.strip()!r}")
        rows.append((utt_id, normalize_text(text)))
    return rows


def prepare_librispeech(
    corpus_dir: Path, out_dir: Path, parts: Sequence[str] | None = None, jobs: int = 2
) -> dict[str, Path]:
    """Write `<out_dir>/librispeech_<part>.tsv` per part; return {part: manifest path}.

    `corpus_dir` is the `LibriSpeech` folder (or a folder containing it). `parts=None` prepares
    every official part present. Durations are read with `jobs` processes.
    """
    corpus = _corpus_root(Path(corpus_dir))
    present = find_parts(corpus)
    wanted = list(parts) if parts is not None else present
    missing = [part for part in wanted if part not in present]
    if missing or not wanted:
        raise DataPrepError(
            f"{corpus}: LibriSpeech part(s) {', '.join(missing) or '(any)'} not found; present: {', '.join(present) or 'none'}"
        )
    manifests: dict[str, Path] = {}
    for part in wanted:
        utterances = make_utterances(_part_rows(corpus / part), jobs)
        manifests[part] = Path(out_dir) / f"librispeech_{part}.tsv"
        write_manifest(manifests[part], utterances)
        log.info("librispeech %s: %d utterances, %d speakers -> %s", part, len(utterances),
                 len({u.speaker for u in utterances}), manifests[part])
    return manifests


def _corpus_root(corpus: Path) -> Path:
    """Accept the LibriSpeech folder or a folder holding `LibriSpeech/`."""
    if not find_parts(corpus) and find_parts(corpus / "LibriSpeech"):
        return corpus / "LibriSpeech"
    if not corpus.is_dir():
        raise DataPrepError(f"{corpus}: no such folder")
    return corpus


def _part_rows(part_dir: Path) -> list[tuple[str, str, Path, str]]:
    """(utt_id, speaker, flac path, text) for every transcript line under one part, sorted by id."""
    rows: list[tuple[str, str, Path, str]] = []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for utt_id, text in read_trans(trans):
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise DataPrepError(f"{trans}: audio {audio.name} for {utt_id} is missing")
            rows.append((utt_id, utt_id.split("-")[0], audio, text))
    if not rows:
        raise DataPrepError(f"{part_dir}: no <speaker>/<chapter>/*.trans.txt transcripts")
    return sorted(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.librispeech`: write LibriSpeech manifests (downloading first if asked)."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.librispeech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="the LibriSpeech/ folder holding the part folders")
    parser.add_argument("--download", type=Path, metavar="DIR", help="download and extract --parts into DIR first")
    parser.add_argument("--mirror", help="base URL replacing https://www.openslr.org/resources/12")
    parser.add_argument("--out", type=Path, required=True, help="folder for the librispeech_<part>.tsv manifests")
    parser.add_argument("--parts", nargs="+", help=f"parts ({', '.join(LIBRISPEECH_PARTS)}); default: all present")
    parser.add_argument("--jobs", type=int, default=2, help="processes reading audio headers")

    def body(args: argparse.Namespace) -> None:
        if args.download is not None:
            if not args.parts:
                raise DataPrepError("--download needs --parts (which parts to fetch)")
            corpus = download_librispeech(args.download, args.parts, args.mirror)
        elif args.corpus is not None:
            corpus = args.corpus
        else:
            raise DataPrepError("give --corpus DIR or --download DIR")
        for part, path in prepare_librispeech(corpus, args.out, args.parts, args.jobs).items():
            print(f"{part}\t{path}")

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
