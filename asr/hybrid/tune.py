"""Grid search of the hybrid decoder's scales on a dev manifest; optionally store the best in the assets.

    python -m asr.hybrid.tune --manifest exp/default/data/an4/dev_tune.tsv [--emissions trained|ctc]
        [--model M] [--hybrid-model X.npz] [--lm ARPA|none] [--prior-scales 0:1:0.25]
        [--lm-weights 0,0.25,0.5] [--word-bonuses=-16:3:1] [--write]

The model's outputs are computed once, for files cut into pieces exactly as `asr decode` cuts them;
each grid point (prior scale κ, LM weight α, word bonus β; acoustic scale 1, which only trades off
against the other three) re-runs the Viterbi search.
Points are ranked by WER, then CER, then the smallest α, |β| and κ. `--write` stores the winner in the
assets' ``decode[emissions]`` entry, which `--decoder hybrid` uses when the flags are not given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from asr.cli import UserError, user_error_types
from asr.hybrid.decode import DEFAULT_ASSETS, HybridDecoder, resolve_lm_path
from asr.hybrid.model import HybridAssets, HybridModel, encoder_fingerprint
from asr.manifest import read_manifest
from asr.text import normalize_text
from asr.transcribe import Transcriber
from asr.tune import compute_piece_log_probs, grid_edge_warnings, join_files, parse_grid, plain_pieces, score_texts

DEFAULT_PRIOR_SCALES = [0.0, 0.25, 0.5, 0.75, 1.0]  # κ
DEFAULT_LM_WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0]  # α
# β: -16 … -10 in steps of 2, then -8 … 3 in steps of 1 (state heads on AN4 want as low as -12)
DEFAULT_WORD_BONUSES = [-16.0, -14.0, -12.0, -10.0] + [float(b) for b in range(-8, 4)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m asr.hybrid.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--model", help="CTC checkpoint (default: the bundled model)")
    parser.add_argument("--hybrid-model", default=str(DEFAULT_ASSETS), help="assets .npz (default: bundled)")
    parser.add_argument("--emissions", choices=["trained", "ctc"], default="ctc")
    parser.add_argument("--lm", help="ARPA LM, or 'none' (default: the model's .decode.json LM)")
    parser.add_argument("--lexicon", action="store_true", help="use the LM's vocabulary as the lexicon")
    parser.add_argument("--prior-scales", help="κ grid (default 0:1:0.25)")
    parser.add_argument("--lm-weights", help="α grid (default 0:2:0.25, 2.5, 3)")
    parser.add_argument("--word-bonuses", help="β grid (default -16 to -10 in steps of 2, then -8 to 3 in steps "
                        "of 1; write --word-bonuses=-4:2:1, since a value starting with '-' would read as an option)")
    parser.add_argument("--viterbi-beam", type=float, default=14.0)
    parser.add_argument("--max-active", type=int, default=1000)
    parser.add_argument("--write", action="store_true", help="store the best point in the assets file")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Tune; returns a summary with the best point and the top of the ranking."""
    from asr.decoding.lm import load_arpa

    started = time.time()
    assets = HybridAssets.load(args.hybrid_model)
    utts = read_manifest(args.manifest, check_audio=True)
    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    lm_path = resolve_lm_path(args, Path(transcriber.loaded.path))
    lm = load_arpa(lm_path) if lm_path else None
    if args.emissions == "trained":
        if encoder_fingerprint(transcriber.model) != assets.fingerprint:
            raise UserError(f"{args.hybrid_model}: state head trained on another encoder than {transcriber.loaded.path}")
        # A drop-in for the BiLSTMCTC that asr/transcribe.py types `Transcriber.model` as.
        transcriber.model = HybridModel(transcriber.model, assets.build_head()).eval()  # type: ignore[assignment]
    files = compute_piece_log_probs(transcriber, [u.audio_path for u in utts])  # pieces as `asr decode` cuts them
    outputs = plain_pieces(files)  # per piece (T', V[+S])
    refs = [normalize_text(u.text) for u in utts]
    lexicon = [w for w in lm.vocab if w not in ("<s>", "</s>", "<unk>")] if args.lexicon and lm else None
    decoder = HybridDecoder(assets, args.emissions, lm=lm, acoustic_scale=1.0, beam=args.viterbi_beam,
                            max_active=args.max_active, ctc_columns=transcriber.tokenizer.vocab_size, lexicon=lexicon)
    transcriber.decoder = decoder  # decodes the pieces that overlap a neighbour (join_files), with the grid's values
    grids = {"--prior-scales": parse_grid(args.prior_scales, DEFAULT_PRIOR_SCALES),
             "--lm-weights": parse_grid(args.lm_weights, DEFAULT_LM_WEIGHTS),
             "--word-bonuses": parse_grid(args.word_bonuses, DEFAULT_WORD_BONUSES)}
    points = []
    for kappa in grids["--prior-scales"]:
        decoder.prior_scale = kappa
        emissions = [decoder.emission_scores(o) for o in outputs]
        for alpha in grids["--lm-weights"]:
            decoder.viterbi.lm_weight = alpha
            for beta in grids["--word-bonuses"]:
                decoder.viterbi.word_bonus = beta
                hyps = join_files(transcriber, files, [" ".join(decoder.viterbi.decode(e).words) for e in emissions])
                wer, cer = score_texts(refs, hyps)
                points.append({"prior_scale": kappa, "lm_weight": alpha, "word_bonus": beta, "wer": wer, "cer": cer})
    points.sort(key=lambda p: (round(p["wer"], 6), round(p["cer"], 6), p["lm_weight"], abs(p["word_bonus"]),
                               p["prior_scale"]))
    best = points[0]
    edges = grid_edge_warnings({"--prior-scales": best["prior_scale"], "--lm-weights": best["lm_weight"],
                                "--word-bonuses": best["word_bonus"]}, grids,
                               limits={"--prior-scales": (0.0, 1.0), "--lm-weights": (0.0, None)})
    summary = {"manifest": str(args.manifest), "emissions": args.emissions, "lm": lm_path, "utterances": len(utts),
               "grid_points": len(points), "best": best, "top": points[:10], "grid_edges": edges,
               "seconds": round(time.time() - started, 1)}
    if args.write:
        assets.decode[args.emissions] = {"acoustic_scale": 1.0, "prior_scale": best["prior_scale"],
                                         "lm_weight": best["lm_weight"], "word_bonus": best["word_bonus"],
                                         "tuned": {k: v for k, v in summary.items() if k != "top"}}
        assets.save(args.hybrid_model)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:
        summary = run(args)
    except user_error_types() + (ValueError,) as exc:
        print(f"asr: error: {exc}", file=sys.stderr)
        return 1
    for p in summary["top"]:
        print(f"kappa {p['prior_scale']:.2f} alpha {p['lm_weight']:.2f} beta {p['word_bonus']:+.2f}  "
              f"WER {p['wer']:.2f}  CER {p['cer']:.2f}")
    for line in summary["grid_edges"]:
        print(line, file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("top", "grid_edges")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
