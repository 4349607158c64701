"""Speaker-disjoint train/dev split of a manifest.

    python -m data_prep.split --manifest data/manifests/an4_train.tsv --dev-fraction 0.1 --out-dir data/an4

writes `<out-dir>/train.tsv` and `<out-dir>/dev.tsv` (no speaker in both; same seed, same split).
Recipes that pin their dev speakers name them instead of a fraction:

    python -m data_prep.split --manifest an4/manifest.tsv --dev-speakers fnsv mbmg --out-dir data/an4

Training utterances whose transcript cannot be aligned by CTC (more characters, plus one blank
between each adjacent repeat, than the model has output frames at `--subsampling`, 3 by default)
are dropped and counted in the log; dev keeps them; `--subsampling 0` keeps everything.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from asr.manifest import Utterance, read_manifest, write_manifest
from asr.text import CharTokenizer
from data_prep.common import DataPrepError, run_cli, speaker_split

FRAMES_PER_SECOND = 100  # the front end's 10 ms hop

log = logging.getLogger(__name__)


def ctc_fits(text: str, duration_s: float, subsampling: int, tokenizer: CharTokenizer) -> bool:
    """Whether CTC can align `text` to `duration_s` of audio: labels + adjacent repeats ≤ output frames."""
    targets = tokenizer.encode(text)
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    return len(targets) + repeats <= int(duration_s * FRAMES_PER_SECOND) // subsampling


def drop_unalignable(utterances: list[Utterance], subsampling: int) -> tuple[list[Utterance], list[Utterance]]:
    """(kept, dropped): utterances whose transcript is longer than the subsampled frame count are dropped."""
    if subsampling <= 0:
        return utterances, []
    tokenizer = CharTokenizer()
    kept: list[Utterance] = []
    dropped: list[Utterance] = []
    for utt in utterances:
        (kept if ctc_fits(utt.text, utt.duration_s, subsampling, tokenizer) else dropped).append(utt)
    return kept, dropped


def split_by_speakers(utterances: list[Utterance], dev_speakers: set[str]) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) where dev holds exactly the named speakers; input order is kept in both parts."""
    missing = dev_speakers - {u.speaker for u in utterances}
    if missing:
        raise DataPrepError(f"dev speakers not in the manifest: {' '.join(sorted(missing))}")
    return [u for u in utterances if u.speaker not in dev_speakers], [u for u in utterances if u.speaker in dev_speakers]


def split_manifest(
    manifest: Path, out_dir: Path, dev_fraction: float | None = None, seed: int = 0, min_dev_speakers: int = 1,
    dev_speakers: Sequence[str] | None = None, subsampling: int = 3,
) -> tuple[Path, Path]:
    """Split `manifest` by speaker into `<out_dir>/train.tsv` and `<out_dir>/dev.tsv`; return both paths.

    With `dev_speakers` (possibly empty: everything goes to train) the fraction and seed are unused.
    Training utterances whose transcript is longer than the frame count at `subsampling` are
    dropped and counted (`subsampling` 0 keeps all); dev keeps them, they are part of the test.
    """
    utterances = read_manifest(manifest, check_audio=True)
    if dev_speakers is not None:
        train, dev = split_by_speakers(utterances, set(dev_speakers))
    elif dev_fraction is None:
        raise DataPrepError("give either a dev fraction or the dev speakers")
    else:
        train, dev = speaker_split(utterances, dev_fraction, seed, min_dev_speakers)
    train, dropped = drop_unalignable(train, subsampling)
    if dropped:
        log.warning("train: dropped %d utterances whose transcript is longer than their %d×-subsampled frames "
                    "(first: %s)", len(dropped), subsampling, dropped[0].utt_id)
    train_path, dev_path = Path(out_dir) / "train.tsv", Path(out_dir) / "dev.tsv"
    write_manifest(train_path, train)
    write_manifest(dev_path, dev)
    log.info("train: %d utterances / %d speakers, dev: %d utterances / %d speakers", len(train),
             len({u.speaker for u in train}), len(dev), len({u.speaker for u in dev}))
    return train_path, dev_path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.split`: speaker-disjoint train.tsv / dev.tsv from one manifest."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="manifest to split")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--dev-fraction", type=float, help="fraction of speakers for dev, in [0, 1)")
    choice.add_argument("--dev-speakers", nargs="*", metavar="SPEAKER", help="exactly these speakers go to dev")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for train.tsv and dev.tsv")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the speaker shuffle")
    parser.add_argument("--min-dev-speakers", type=int, default=1, help="at least this many dev speakers")
    parser.add_argument("--subsampling", type=int, default=3,
                        help="drop utterances whose transcript has more characters than output frames at this "
                             "subsampling (default 3, the bundled model's; 0 keeps all)")

    def body(args: argparse.Namespace) -> None:
        for path in split_manifest(args.manifest, args.out_dir, args.dev_fraction, args.seed, args.min_dev_speakers,
                                   args.dev_speakers, args.subsampling):
            print(path)

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
