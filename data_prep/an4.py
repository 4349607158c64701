"""CMU AN4 (alphanumeric "census" database): download and manifests.

The tarball unpacks to `an4/` with the Sphinx layout:

    an4/etc/an4_{train,test}.transcription   "<s> WORDS </s> (an251-fash-b)" per line
    an4/etc/an4_{train,test}.fileids         "an4_clstk/fash/an251-fash-b" per line
    an4/wav/an4_clstk/<speaker>/<utt>.sph    (an4test_clstk for the test part)

The audio may also be FLAC or WAV with the same stem (as in ../shared/data/an4).
Manifests are written as `<out>/an4_<part>.tsv`.

    python -m data_prep.an4 --corpus /data/an4 --out data/manifests --parts train test
    python -m data_prep.an4 --download /data --out data/manifests
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Sequence

from asr.manifest import write_manifest
from asr.text import normalize_text
from data_prep.common import DataPrepError, download_file, make_utterances, run_cli, safe_extract

log = logging.getLogger(__name__)

AN4_URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
# CMU publishes no checksum for this tarball that we could confirm, so none is checked.
AN4_MD5: str | None = None
PART_DIRS = {"train": "an4_clstk", "test": "an4test_clstk"}
AUDIO_SUFFIXES = (".sph", ".flac", ".wav")
_TRANSCRIPT_LINE = re.compile(r"^(?P<words>.*?)\s*\((?P<utt>[^()\s]+)\)\s*$")


def download_an4(target: Path, url: str | None = None, md5: str | None = AN4_MD5) -> Path:
    """Download and extract the AN4 tarball into `target`; return the corpus folder `target/an4`.

    The download resumes an interrupted one (`download_file`) and checks `md5` when one is given
    (`url` replaces the CMU address, e.g. for a mirror). With no published checksum, the content
    is checked instead (`verify_an4`): every utterance the corpus lists must have its audio file.
    """
    target = Path(target)
    archive = download_file(url or AN4_URL, target / "an4_sphere.tar.gz", md5)
    safe_extract(archive, target)
    corpus = target / "an4"
    if not (corpus / "etc").is_dir():
        raise DataPrepError(f"{archive}: extracted, but {corpus / 'etc'} is missing")
    verify_an4(corpus, archive)
    return corpus


def verify_an4(corpus: Path, archive: Path | None = None) -> int:
    """Check that every file id of `etc/an4_{train,test}.fileids` has its audio; return how many.

    Raises DataPrepError naming the corpus (and `archive`, if given) and the first missing file.
    """
    listed = [fileid for part in PART_DIRS for fileid in read_fileids(corpus / "etc" / f"an4_{part}.fileids").values()]
    if not listed:
        raise DataPrepError(f"{corpus}: no etc/an4_train.fileids or an4_test.fileids to check the audio against")
    missing = [fileid for fileid in listed
               if not any((corpus / "wav" / f"{fileid}{suffix}").is_file() for suffix in AUDIO_SUFFIXES)]
    if missing:
        source = f" (extracted from {archive}: remove both to download again)" if archive else ""
        raise DataPrepError(f"{corpus}{source}: {len(missing)} of {len(listed)} listed recordings are missing, "
                            f"e.g. wav/{missing[0]}")
    return len(listed)


def read_transcription(path: Path) -> list[tuple[str, str]]:
    """(utt_id, normalised text) per line of a Sphinx transcription; `<s>`/`</s>` are dropped."""
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match is None:
            raise DataPrepError(f"{path}:{number}: expected '<s> WORDS </s> (utt-id)', got {line.strip()!r}")
        words = [w for w in match.group("words").split() if w.lower() not in ("<s>", "</s>", "<sil>")]
        rows.append((match.group("utt"), normalize_text(" ".join(words))))
    return rows


def read_fileids(path: Path) -> dict[str, str]:
    """Map utterance id (the last path component) to its file id (`an4_clstk/spk/utt`)."""
    if not Path(path).is_file():
        return {}
    lines = Path(path).read_text(encoding="utf-8").split()
    return {PurePosixPath(fileid).name: fileid for fileid in lines}


def prepare_an4(
    corpus_dir: Path, out_dir: Path, parts: Sequence[str] = ("train",), jobs: int = 1
) -> dict[str, Path]:
    """Write `<out_dir>/an4_<part>.tsv` for each part; return {part: manifest path}.

    Text is normalised with `normalize_text`; the speaker is the folder above the audio file.
    Utterances whose text is empty after normalisation are left out (with a warning).
    """
    corpus = _corpus_root(Path(corpus_dir))
    manifests: dict[str, Path] = {}
    for part in parts:
        rows = _part_rows(corpus, part)
        utterances = make_utterances(rows, jobs)
        manifests[part] = Path(out_dir) / f"an4_{part}.tsv"
        write_manifest(manifests[part], utterances)
        log.info("an4 %s: %d utterances, %d speakers -> %s", part, len(utterances),
                 len({u.speaker for u in utterances}), manifests[part])
    return manifests


def _corpus_root(corpus: Path) -> Path:
    """Accept the `an4` folder itself or a folder containing it."""
    for candidate in (corpus, corpus / "an4"):
        if (candidate / "etc").is_dir():
            return candidate
    raise DataPrepError(f"{corpus}: not an AN4 corpus (no etc/ folder with transcriptions)")


def _part_rows(corpus: Path, part: str) -> list[tuple[str, str, Path, str]]:
    """(utt_id, speaker, audio path, text) for every transcribed utterance of `part`."""
    transcription = corpus / "etc" / f"an4_{part}.transcription"
    if not transcription.is_file():
        raise DataPrepError(f"{corpus}: no transcription for part {part!r} ({transcription} is missing)")
    fileids = read_fileids(corpus / "etc" / f"an4_{part}.fileids")
    rows: list[tuple[str, str, Path, str]] = []
    seen: set[str] = set()
    for utt_id, text in read_transcription(transcription):
        if utt_id in seen:
            raise DataPrepError(f"{transcription}: utterance {utt_id!r} appears twice")
        seen.add(utt_id)
        if not text:
            log.warning("%s: %s has no text after normalisation; skipped", transcription, utt_id)
            continue
        fileid = fileids.get(utt_id) or _default_fileid(part, utt_id)
        rows.append((utt_id, PurePosixPath(fileid).parent.name, _find_audio(corpus / "wav" / fileid), text))
    return rows


def _default_fileid(part: str, utt_id: str) -> str:
    """Sphinx file id for an utterance missing from the fileids list: `<dir>/<speaker>/<utt>`."""
    fields = utt_id.split("-")
    if len(fields) != 3:
        raise DataPrepError(f"AN4 {part}: cannot tell the speaker of utterance {utt_id!r}")
    return f"{PART_DIRS.get(part, f'an4{part}_clstk')}/{fields[1]}/{utt_id}"


def _find_audio(stem: Path) -> Path:
    """The audio file for a Sphinx file id, whichever of .sph/.flac/.wav is present."""
    for suffix in AUDIO_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    raise DataPrepError(f"{stem}: no audio file ({'/'.join(AUDIO_SUFFIXES)})")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.an4`: write AN4 manifests (downloading the corpus first if asked)."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.an4", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="the an4/ folder (with etc/ and wav/)")
    parser.add_argument("--download", type=Path, metavar="DIR", help="download and extract AN4 into DIR first")
    parser.add_argument("--url", help=f"tarball URL, e.g. a mirror (default {AN4_URL})")
    parser.add_argument("--out", type=Path, required=True, help="folder for the an4_<part>.tsv manifests")
    parser.add_argument("--parts", nargs="+", default=["train"], help="parts to prepare (train, test)")
    parser.add_argument("--jobs", type=int, default=1, help="processes reading audio headers")

    def body(args: argparse.Namespace) -> None:
        if args.download is None and args.corpus is None:
            raise DataPrepError("give --corpus DIR or --download DIR")
        corpus = download_an4(args.download, args.url) if args.download is not None else args.corpus
        for part, path in prepare_an4(corpus, args.out, args.parts, args.jobs).items():
            print(f"{part}\t{path}")

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
