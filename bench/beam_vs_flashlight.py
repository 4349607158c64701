"""Our CTC prefix beam search side by side with flashlight-text's decoders on the same emissions.

    python bench/beam_vs_flashlight.py [--model M] [--manifest TSV] [--lm ARPA] [--beam 16]
                                       [--alpha A] [--beta B] [--repeats 3] [--json OUT]

The acoustic model runs once; both decoders then decode the same (T, V) log-probs, so only the
search is timed (median of `--repeats` passes, after one untimed warm-up that also compiles our
numba code). Two matched pairs:

* **lexicon + word LM**: flashlight's `LexiconDecoder` (KenLM on the same ARPA file, a trie of the
  LM's words spelled in our letters) vs ours with `lexicon=True`. Both use beam `--beam`, every
  token at every frame, log-add merging of paths, LM weight `alpha` on natural-log probabilities
  (flashlight's KenLM scores are log10, so its `lm_weight` is `alpha * ln 10`) and word bonus `beta`.
* **lexicon-free, no LM**: flashlight's `LexiconFreeDecoder` with its `ZeroLM` vs ours without an LM.

Defaults: the bundled model, its LM and tuned alpha/beta (`asr/pretrained/model.decode.json`), the
AN4 speaker-disjoint dev split. Prints WER/CER and decode wall time of both and our/flashlight ratio.
Needs `pip install flashlight-text` (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.runinfo import cpu_model, git_commit, write_json_atomic  # noqa: E402

DEFAULT_MANIFEST = Path("exp/default/data/an4/dev.tsv")
FALLBACK_MANIFEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "an4" / "manifest.tsv"


def plain_arpa(path: Path, folder: Path) -> Path:
    """KenLM reads plain ARPA; decompress a .gz copy into `folder` if needed."""
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    if not gz:
        return path
    out = folder / (path.name.removesuffix(".gz") or "lm.arpa")
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


class FlashlightLexicon:
    """flashlight-text LexiconDecoder over our character vocabulary and a word ARPA LM."""

    def __init__(self, tokenizer, lm_words: Sequence[str], arpa: Path, beam: int, alpha: float, beta: float) -> None:
        from flashlight.lib.text.decoder import (CriterionType, KenLM, LexiconDecoder, LexiconDecoderOptions,
                                                 SmearingMode, Trie)
        from flashlight.lib.text.dictionary import Dictionary

        self.tokenizer = tokenizer
        letters = {ch: i for i, ch in enumerate(tokenizer.vocab)}
        spellable = [w for w in lm_words if w not in ("<s>", "</s>", "<unk>") and all(c in letters for c in w)]
        self.words = Dictionary(list(spellable) + ["<unk>"])
        self.words.set_default_index(self.words.get_index("<unk>"))
        self.lm = KenLM(str(arpa), self.words)
        start = self.lm.start(False)
        trie = Trie(tokenizer.vocab_size, tokenizer.space_id)
        for word in spellable:
            _, score = self.lm.score(start, self.words.get_index(word))
            trie.insert([letters[c] for c in word], self.words.get_index(word), score)
        trie.smear(SmearingMode.MAX)
        options = LexiconDecoderOptions(beam_size=beam, beam_size_token=tokenizer.vocab_size, beam_threshold=1e9,
                                        lm_weight=alpha * np.log(10.0), word_score=beta, unk_score=float("-inf"),
                                        sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC)
        self.decoder = LexiconDecoder(options, trie, self.lm, tokenizer.space_id, tokenizer.blank_id,
                                      self.words.get_index("<unk>"), [], False)

    def decode(self, log_probs: np.ndarray) -> str:
        """(T, V) float32 log-probs → the best word sequence."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        best = self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])[0]
        return " ".join(self.words.get_entry(w) for w in best.words if w >= 0)


class FlashlightLexiconFree:
    """flashlight-text LexiconFreeDecoder with no LM (ZeroLM): plain CTC prefix beam search."""

    def __init__(self, tokenizer, beam: int) -> None:
        from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions, ZeroLM

        self.tokenizer = tokenizer
        options = LexiconFreeDecoderOptions(beam_size=beam, beam_size_token=tokenizer.vocab_size,
                                            beam_threshold=1e9, lm_weight=0.0, sil_score=0.0, log_add=True,
                                            criterion_type=CriterionType.CTC)
        self.decoder = LexiconFreeDecoder(options, ZeroLM(), tokenizer.space_id, tokenizer.blank_id, [])

    def decode(self, log_probs: np.ndarray) -> str:
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        best = self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])[0]
        # CTC collapse of the token path: flashlight returns one token per frame, blanks included.
        tokens, previous = [], -1
        for token in best.tokens:
            if token != previous and token != self.tokenizer.blank_id and token >= 0:
                tokens.append(token)
            previous = token
        return " ".join(self.tokenizer.decode(tokens).split())


def time_decoder(decode: Callable[[np.ndarray], str], log_probs: Sequence[np.ndarray], repeats: int
                 ) -> tuple[list[str], float]:
    """Decode every utterance once untimed (warm-up / JIT), then `repeats` timed passes → texts, median s."""
    texts = [decode(lp) for lp in log_probs]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for lp in log_probs:
            decode(lp)
        times.append(time.perf_counter() - start)
    return texts, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--manifest", type=Path, help="TSV manifest (default: AN4 speaker-disjoint dev split)")
    parser.add_argument("--lm", help="word ARPA LM (default: the model's .decode.json LM)")
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--alpha", type=float, help="LM weight on ln P (default: the tuned value)")
    parser.add_argument("--beta", type=float, help="word bonus (default: the tuned value)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the acoustic model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("flashlight") is None:  # the peer: say so before the acoustic model runs
        raise SystemExit("error: flashlight-text is not installed (pip install flashlight-text, or "
                         "pip install -e '.[bench]')")

    import torch

    from asr.decoding.beam import BeamSearchDecoder
    from asr.decoding.lm import load_arpa
    from asr.manifest import read_manifest
    from asr.text import normalize_text
    from asr.transcribe import Transcriber
    from asr.tune import compute_log_probs, load_decode_settings, score_texts

    wall_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    manifest = args.manifest or (DEFAULT_MANIFEST if DEFAULT_MANIFEST.is_file() else FALLBACK_MANIFEST)
    transcriber = Transcriber.from_pretrained(args.model, device="cpu")
    stored = load_decode_settings(transcriber.loaded.path)
    lm_path = Path(args.lm or stored.lm or "")
    if not lm_path.is_file():
        parser.error("no LM: pass --lm ARPA (the model has no .decode.json naming one)")
    same_lm = args.lm is None
    alpha = args.alpha if args.alpha is not None else (stored.alpha if same_lm else 0.5)
    beta = args.beta if args.beta is not None else (stored.beta if same_lm else 1.0)

    utterances = read_manifest(manifest, check_audio=True)
    refs = [normalize_text(u.text) for u in utterances]
    print(f"computing log-probs for {len(refs)} utterances of {manifest} ...", file=sys.stderr)
    log_probs = compute_log_probs(transcriber, [u.audio_path for u in utterances])
    frames = sum(len(lp) for lp in log_probs)
    tok = transcriber.tokenizer
    lm = load_arpa(lm_path)

    with tempfile.TemporaryDirectory() as folder:
        arpa = plain_arpa(lm_path, Path(folder))
        systems = {
            "lexicon + LM": (
                BeamSearchDecoder(tok, lm=lm, beam_size=args.beam, alpha=alpha, beta=beta, lexicon=True,
                                  token_prune=1.0, blank_skip=None),
                FlashlightLexicon(tok, lm.vocab, arpa, args.beam, alpha, beta)),
            "lexicon-free, no LM": (
                BeamSearchDecoder(tok, beam_size=args.beam, token_prune=1.0, blank_skip=None),
                FlashlightLexiconFree(tok, args.beam)),
        }
        rows = []
        for name, (ours, theirs) in systems.items():
            for who, decode in (("asr", lambda lp, d=ours: d.decode(lp[None])[0]), ("flashlight", theirs.decode)):
                print(f"{name}: {who} ...", file=sys.stderr)
                texts, seconds = time_decoder(decode, log_probs, args.repeats)
                wer, cer = score_texts(refs, texts)
                rows.append({"setting": name, "system": who, "wer": wer, "cer": cer, "seconds": seconds,
                             "ms_per_utt": 1000 * seconds / len(refs), "frames_per_s": frames / seconds})

    print(f"\nbeam {args.beam}, alpha {alpha} (flashlight lm_weight {alpha * np.log(10):.4f}), beta {beta}, "
          f"LM {lm_path} ({lm!r})")
    print(f"{len(refs)} utterances, {frames} frames of log-probs, from {manifest}\n")
    print(f"{'setting':22} {'system':11} {'WER %':>7} {'CER %':>7} {'decode s':>9} {'ms/utt':>8}")
    print("-" * 68)
    for row in rows:
        print(f"{row['setting']:22} {row['system']:11} {row['wer']:7.2f} {row['cer']:7.2f} {row['seconds']:9.3f} "
              f"{row['ms_per_utt']:8.2f}")
    ratios = {}
    for name in systems:
        ours, theirs = (r for r in rows if r["setting"] == name)
        ratios[name] = ours["seconds"] / theirs["seconds"]
        print(f"\n{name}: our time / flashlight time = {ratios[name]:.2f}   (<= 1 means we are faster); "
              f"WER {ours['wer']:.2f} vs {theirs['wer']:.2f}")
    wall = time.perf_counter() - wall_start
    info = f"{cpu_model()}, torch threads {args.threads} (decoders single-threaded) | commit {git_commit()} | wall {wall:.1f} s"
    command = "python bench/beam_vs_flashlight.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nhardware: {info}\ncommand: {command.strip()}")
    if args.json:
        write_json_atomic(args.json, {"rows": rows, "time_ratio_ours_over_flashlight": ratios, "beam": args.beam,
                                      "alpha": alpha, "beta": beta, "lm": str(lm_path), "manifest": str(manifest),
                                      "utterances": len(refs), "frames": frames, "hardware": cpu_model(),
                                      "commit": git_commit(), "wall_s": wall, "command": command.strip()})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
