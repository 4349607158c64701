"""Free Spoken Digit Dataset (FSDD): manifest from `recordings/{digit}_{speaker}_{index}.wav`.

The transcript is the digit as an upper-case word (`7_jackson_3.wav` → `SEVEN`), the speaker is
the middle field of the file name. The manifest is written as `<out>/fsdd.tsv`. FSDD's own
test convention (indices 0–4) is not speaker-disjoint; use `data_prep.split` for a dev set.

`download_fsdd` fetches the v1.0.10 release archive from GitHub (resumable), extracts it safely
into `<dir>/free-spoken-digit-dataset-1.0.10/` and checks the recordings (names and count).

    python -m data_prep.fsdd --corpus /data/fsdd --out data/manifests
    python -m data_prep.fsdd --download --corpus /data --out data/manifests
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from asr.manifest import write_manifest
from data_prep.common import DataPrepError, download_file, make_utterances, run_cli, safe_extract_zip

log = logging.getLogger(__name__)

FSDD_VERSION = "1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.zip"
FSDD_DIR = f"free-spoken-digit-dataset-{FSDD_VERSION}"
# GitHub generates tag archives on the fly and publishes no checksum for them (nor promises
# byte-stable archives), so none is checked; the extracted recordings are verified instead.
FSDD_MD5: str | None = None
FSDD_FILES = 3000  # v1.0.10: 6 speakers x 10 digits x 50 takes

DIGIT_WORDS: tuple[str, ...] = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_FILE_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>.+)_(?P<index>\d+)$")


def parse_fsdd_name(stem: str) -> tuple[str, str] | None:
    """(speaker, text) from a recording's stem such as `7_jackson_3`; None if it does not match."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    return match.group("speaker"), DIGIT_WORDS[int(match.group("digit"))]


def download_fsdd(
    target: Path, url: str | None = None, md5: str | None = FSDD_MD5, expected_files: int | None = FSDD_FILES
) -> Path:
    """Download and extract FSDD into `target`; return the corpus folder `target/free-spoken-digit-dataset-1.0.10`.

    The zip (`url`, default the GitHub v1.0.10 tag archive; give another for a mirror) is fetched
    resumably into `target` and kept. `md5` is None by default because GitHub publishes no
    checksum for its generated archives; the content is checked instead (`verify_fsdd`) with
    `expected_files` recordings (None skips the count). Extraction goes to a temporary folder
    renamed into place once verified, so an interrupted run leaves no half corpus. When the
    corpus folder already exists it is verified and returned without downloading anything.
    """
    target = Path(target)
    corpus = target / FSDD_DIR
    if corpus.is_dir():
        verify_fsdd(corpus, expected_files)
        log.info("%s already present, not downloading FSDD again", corpus)
        return corpus
    archive = download_file(url or FSDD_URL, target / f"{FSDD_DIR}.zip", md5)
    _install(archive, corpus, expected_files)
    return corpus


def verify_fsdd(corpus: Path, expected_files: int | None = FSDD_FILES, where: str | None = None) -> int:
    """Check `corpus/recordings`; return its number of recordings.

    Raises DataPrepError (naming `where`, by default the recordings folder) when the folder is
    missing, a `*.wav` name does not parse with `parse_fsdd_name`, or the count is not
    `expected_files` (None skips the count).
    """
    recordings = Path(corpus) / "recordings"
    where = where or str(recordings)
    if not recordings.is_dir():
        raise DataPrepError(f"{where}: no recordings/ folder")
    names = sorted(wav.name for wav in recordings.glob("*.wav"))
    bad = [name for name in names if parse_fsdd_name(Path(name).stem) is None]
    if bad:
        raise DataPrepError(f"{where}: {len(bad)} file name(s) not {{digit}}_{{speaker}}_{{index}}.wav, e.g. {bad[0]!r}")
    if expected_files is not None and len(names) != expected_files:
        raise DataPrepError(f"{where}: {len(names)} recordings, expected {expected_files}")
    return len(names)


def _install(archive: Path, corpus: Path, expected_files: int | None) -> None:
    """Extract `archive` into a temporary folder beside `corpus`, verify it, rename it to `corpus`."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{corpus.name}.", suffix=".partial", dir=corpus.parent))
    try:
        safe_extract_zip(archive, scratch)
        root = _extracted_root(scratch, archive)
        verify_fsdd(root, expected_files, where=f"{corpus} (from {archive.name}, not installed)")
        os.replace(root, corpus)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("fsdd: installed %s", corpus)


def _extracted_root(scratch: Path, archive: Path) -> Path:
    """The extracted folder holding `recordings/`: the archive's single top folder, or its top."""
    if (scratch / "recordings").is_dir():
        return scratch
    tops = [path for path in scratch.iterdir() if (path / "recordings").is_dir()]
    if len(tops) != 1:
        raise DataPrepError(f"{archive}: no recordings/ folder at the top or in one top-level folder")
    return tops[0]


def prepare_fsdd(corpus_dir: Path, out_dir: Path, jobs: int = 1) -> Path:
    """Write `<out_dir>/fsdd.tsv` for every recording; return its path.

    `corpus_dir` is the FSDD folder (holding `recordings/`), the recordings folder itself, or the
    folder `download_fsdd` extracted into (holding `free-spoken-digit-dataset-1.0.10/`).
    WAV files whose names do not follow `{digit}_{speaker}_{index}.wav` are skipped with a warning.
    """
    recordings = _recordings_dir(Path(corpus_dir))
    rows: list[tuple[str, str, Path, str]] = []
    for wav in sorted(recordings.glob("*.wav")):
        parsed = parse_fsdd_name(wav.stem)
        if parsed is None:
            log.warning("%s: name is not {digit}_{speaker}_{index}.wav; skipped", wav)
            continue
        speaker, text = parsed
        rows.append((wav.stem, speaker, wav, text))
    if not rows:
        raise DataPrepError(f"{recordings}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav)")
    manifest = Path(out_dir) / "fsdd.tsv"
    utterances = make_utterances(rows, jobs)
    write_manifest(manifest, utterances)
    log.info("fsdd: %d utterances, %d speakers -> %s", len(utterances), len({u.speaker for u in utterances}), manifest)
    return manifest


def _recordings_dir(corpus: Path) -> Path:
    """Accept the FSDD folder (with recordings/), its parent from `download_fsdd`, or recordings/."""
    for candidate in (corpus, corpus / FSDD_DIR):
        if (candidate / "recordings").is_dir():
            return candidate / "recordings"
    if corpus.is_dir():
        return corpus
    raise DataPrepError(f"{corpus}: no such folder")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.fsdd`: write the FSDD manifest (downloading the corpus first if asked)."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.fsdd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="FSDD folder (with recordings/); with a bare --download, "
                        "the folder to download into")
    parser.add_argument("--download", nargs="?", const=True, type=Path, metavar="DIR",
                        help="download and extract FSDD into DIR (or into --corpus) first")
    parser.add_argument("--url", help=f"archive URL, e.g. a mirror (default {FSDD_URL})")
    parser.add_argument("--expected-files", type=int, default=FSDD_FILES, metavar="N",
                        help=f"recordings the download must hold (default {FSDD_FILES}; 0 skips the count)")
    parser.add_argument("--out", type=Path, required=True, help="folder for fsdd.tsv")
    parser.add_argument("--jobs", type=int, default=1, help="processes reading audio headers")

    def body(args: argparse.Namespace) -> None:
        corpus = args.corpus
        if args.download is not None:
            target = args.corpus if args.download is True else args.download  # bare --download
            if target is None:
                raise DataPrepError("give --download DIR, or --download with --corpus DIR")
            corpus = download_fsdd(target, args.url, expected_files=args.expected_files or None)
        if corpus is None:
            raise DataPrepError("give --corpus DIR or --download [DIR]")
        print(prepare_fsdd(corpus, args.out, args.jobs))

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
