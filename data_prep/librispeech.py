"""LibriSpeech (OpenSLR 12) and its language-model resources (OpenSLR 11): download and manifests.

Standard layout, as the tarballs unpack it:

    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt-id> TEXT" per line

One manifest per part is written as `<out>/librispeech_<part>.tsv`; `--combine NAME` also writes
the listed parts as one manifest `<out>/NAME.tsv`. Chapters are read by `--jobs` processes.
The LM resources (ARPA 3-/4-grams, vocabulary, lexicon, LM text) download the same way: resumable,
MD5-checked, kept once complete.

    python -m data_prep.librispeech --corpus /data/LibriSpeech --out data/manifests
    python -m data_prep.librispeech --download /data --parts dev-clean test-clean --out data/manifests
    python -m data_prep.librispeech --lm-dir /data/lm --lm-files 3-gram.pruned.1e-7.arpa.gz librispeech-vocab.txt
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from asr.manifest import write_manifest
from asr.text import normalize_text
from asr.manifest import Utterance
from data_prep.common import (
    DataPrepError,
    audio_info,
    combine_manifests,
    download_file,
    parallel_map,
    run_cli,
    safe_extract,
)

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

OPENSLR_LM_URL = "https://www.openslr.org/resources/11"
# file -> md5 of the OpenSLR 11 LM resources. OpenSLR's page lists no checksums; these are the values
# recorded by pydrobert-speech's LibriSpeech preparation (its SLR12 values agree with the table above).
LIBRISPEECH_LM_FILES: dict[str, str] = {
    "3-gram.arpa.gz": "74cbb837e582378c26c602e1c8cbcb9c",
    "3-gram.pruned.1e-7.arpa.gz": "9a0f1325bcaf3a0f7b7be4be10823c2a",
    "3-gram.pruned.3e-7.arpa.gz": "8f67ec741827742eee05799ab7605b50",
    "4-gram.arpa.gz": "6abdcd5b055bd482e4f9defe91d40408",
    "librispeech-vocab.txt": "bf3cc7a50112831ed8b0afa40cae96a5",
    "librispeech-lexicon.txt": "28f72663f6bfed7cd346283c064c315b",
    "librispeech-lm-norm.txt.gz": "c83c64c726a1aedfe65f80aa311de402",
}
# What a first-pass decoder needs: a pruned 3-gram (34 MB), the 200k-word vocabulary and the lexicon.
DEFAULT_LM_FILES: tuple[str, ...] = ("3-gram.pruned.1e-7.arpa.gz", "librispeech-vocab.txt", "librispeech-lexicon.txt")


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


def download_librispeech_lm(target: Path, files: Sequence[str] = DEFAULT_LM_FILES,
                            mirror: str | None = None) -> dict[str, Path]:
    """Download OpenSLR 11 LM resources into `target` (resumable, MD5-checked); return {file: path}.

    Files are kept as published (ARPA stays gzipped: `asr.decoding.lm.load_arpa` reads `.gz`).
    A file already present with the right MD5 is not downloaded again. `mirror` replaces
    `https://www.openslr.org/resources/11`.
    """
    unknown = [name for name in files if name not in LIBRISPEECH_LM_FILES]
    if unknown:
        raise DataPrepError(f"unknown LibriSpeech LM file(s) {', '.join(unknown)}; known: {', '.join(LIBRISPEECH_LM_FILES)}")
    base = (mirror or OPENSLR_LM_URL).rstrip("/")
    return {name: download_file(f"{base}/{name}", Path(target) / name, LIBRISPEECH_LM_FILES[name]) for name in files}


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
    every official part present. Chapters (transcript + audio headers) are read by `jobs`
    processes, with a progress bar per part; rows are sorted by utterance id.
    """
    corpus = _corpus_root(Path(corpus_dir))
    present = find_parts(corpus)
    wanted = list(dict.fromkeys(parts)) if parts is not None else present
    missing = [part for part in wanted if part not in present]
    if missing or not wanted:
        raise DataPrepError(
            f"{corpus}: LibriSpeech part(s) {', '.join(missing) or '(any)'} not found; present: {', '.join(present) or 'none'}"
        )
    manifests: dict[str, Path] = {}
    for part in wanted:
        transcripts = [str(t) for t in sorted((corpus / part).glob("*/*/*.trans.txt"))]
        if not transcripts:
            raise DataPrepError(f"{corpus / part}: no <speaker>/<chapter>/*.trans.txt transcripts")
        chapters = parallel_map(chapter_utterances, transcripts, jobs, desc=f"librispeech {part}")
        utterances = sorted((utt for chapter in chapters for utt in chapter), key=lambda u: u.utt_id)
        manifests[part] = Path(out_dir) / f"librispeech_{part}.tsv"
        write_manifest(manifests[part], utterances)
        log.info("librispeech %s: %d utterances, %d speakers, %.2f h -> %s", part, len(utterances),
                 len({u.speaker for u in utterances}), sum(u.duration_s for u in utterances) / 3600, manifests[part])
    return manifests


def chapter_utterances(trans_path: str) -> list[Utterance]:
    """The utterances of one chapter: its `.trans.txt` lines with durations from the FLAC headers."""
    trans = Path(trans_path)
    utterances = []
    for utt_id, text in read_trans(trans):
        audio = trans.parent / f"{utt_id}.flac"
        if not audio.is_file():
            raise DataPrepError(f"{trans}: audio {audio.name} for {utt_id} is missing")
        duration, rate = audio_info(audio)
        utterances.append(Utterance(utt_id, utt_id.split("-")[0], audio.resolve(), duration, rate, text))
    return utterances


def _corpus_root(corpus: Path) -> Path:
    """Accept the LibriSpeech folder or a folder holding `LibriSpeech/`."""
    if not find_parts(corpus) and find_parts(corpus / "LibriSpeech"):
        return corpus / "LibriSpeech"
    if not corpus.is_dir():
        raise DataPrepError(f"{corpus}: no such folder")
    return corpus


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.librispeech`: write LibriSpeech manifests (downloading first if asked)."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.librispeech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="the LibriSpeech/ folder holding the part folders")
    parser.add_argument("--download", type=Path, metavar="DIR", help="download and extract --parts into DIR first")
    parser.add_argument("--mirror", help="base URL replacing https://www.openslr.org/resources/12")
    parser.add_argument("--out", type=Path, help="folder for the librispeech_<part>.tsv manifests "
                        "(without it, --download only downloads)")
    parser.add_argument("--parts", nargs="+", help=f"parts ({', '.join(LIBRISPEECH_PARTS)}); default: all present")
    parser.add_argument("--combine", metavar="NAME", help="also write the --parts together as OUT/NAME.tsv")
    parser.add_argument("--jobs", type=int, default=2, help="processes reading chapters (default 2)")
    parser.add_argument("--lm-dir", type=Path, help="download OpenSLR 11 LM resources into this folder")
    parser.add_argument("--lm-files", nargs="+", default=list(DEFAULT_LM_FILES),
                        help=f"LM resources to fetch ({', '.join(LIBRISPEECH_LM_FILES)}); "
                             f"default: {' '.join(DEFAULT_LM_FILES)}")
    parser.add_argument("--lm-mirror", help="base URL replacing https://www.openslr.org/resources/11")

    def body(args: argparse.Namespace) -> None:
        if args.lm_dir is not None:
            for name, path in download_librispeech_lm(args.lm_dir, args.lm_files, args.lm_mirror).items():
                print(f"{name}\t{path}")
        if args.download is None and args.corpus is None:
            if args.lm_dir is not None:
                return
            raise DataPrepError("give --corpus DIR or --download DIR (or --lm-dir DIR)")
        if args.download is not None:
            if not args.parts:
                raise DataPrepError("--download needs --parts (which parts to fetch)")
            corpus = download_librispeech(args.download, args.parts, args.mirror)
            if args.out is None:  # download only
                print(corpus)
                return
        else:
            corpus = args.corpus
        if args.out is None:
            raise DataPrepError("--out DIR is needed to write manifests")
        manifests = prepare_librispeech(corpus, args.out, args.parts, args.jobs)
        for part, path in manifests.items():
            print(f"{part}\t{path}")
        if args.combine:
            combined = Path(args.out) / f"{args.combine}.tsv"
            utterances = combine_manifests(manifests.values(), combined)
            print(f"{args.combine}\t{combined}\t{len(utterances)} utterances")

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
