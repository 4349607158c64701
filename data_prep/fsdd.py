"""Free Spoken Digit Dataset (FSDD): manifest from `recordings/{digit}_{speaker}_{index}.wav`.

The transcript is the digit as an upper-case word (`7_jackson_3.wav` → `SEVEN`), the speaker is
the middle field of the file name. The manifest is written as `<out>/fsdd.tsv`. FSDD's own
test convention (indices 0–4) is not speaker-disjoint; use `data_prep.split` for a dev set.

    python -m data_prep.fsdd --corpus /data/fsdd --out data/manifests
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Sequence

from asr.manifest import write_manifest
from data_prep.common import DataPrepError, make_utterances, run_cli

log = logging.getLogger(__name__)

DIGIT_WORDS: tuple[str, ...] = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_FILE_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>.+)_(?P<index>\d+)$")


def parse_fsdd_name(stem: str) -> tuple[str, str] | None:
    """(speaker, text) from a recording's stem such as `7_jackson_3`; None if it does not match."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    return match.group("speaker"), DIGIT_WORDS[int(match.group("digit"))]


def prepare_fsdd(corpus_dir: Path, out_dir: Path, jobs: int = 1) -> Path:
    """Write `<out_dir>/fsdd.tsv` for every recording; return its path.

    `corpus_dir` is the FSDD folder (holding `recordings/`) or the recordings folder itself.
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
    """Accept the FSDD folder (with recordings/) or the recordings folder."""
    if (corpus / "recordings").is_dir():
        return corpus / "recordings"
    if corpus.is_dir():
        return corpus
    raise DataPrepError(f"{corpus}: no such folder")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.fsdd`: write the FSDD manifest."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.fsdd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="FSDD folder (with recordings/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for fsdd.tsv")
    parser.add_argument("--jobs", type=int, default=1, help="processes reading audio headers")

    def body(args: argparse.Namespace) -> None:
        print(prepare_fsdd(args.corpus, args.out, args.jobs))

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
