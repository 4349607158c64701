"""`--decoder hybrid`: acoustic posteriors ÷ priors as HMM emissions, Viterbi with a lexicon and an n-gram LM.

Emission score of HMM state s at frame t (both scales configurable, defaults in the assets):

    acoustic_scale · (log p(column(s) | x_t) − prior_scale · log p(column(s)))

Two emission sources (``--hybrid-emissions``):

* ``ctc`` (default; it scored better on the bundled model's tuning speakers): the CTC model's own
  posteriors with the CTC token topology (blank states optional).
* ``trained``: the hybrid state head on the CTC model's encoder (:mod:`asr.hybrid.model`); the
  transcriber's model is swapped for a :class:`HybridModel` that outputs CTC log-probs and state
  log-posteriors side by side.

Word times (``--format jsonl``) come from the Viterbi path's own word boundaries, trimmed to the
word's letters by a CTC alignment inside them; a word's confidence is its letters' mean posterior.

The path score adds ``--alpha`` × ln P_LM(word | history) and ``--beta`` per word
(:mod:`asr.hybrid.viterbi`). Unset flags take the values tuned for the assets (``python -m
asr.hybrid.tune``, stored in the assets' ``decode`` entry). Without ``--lm`` the LM named in the
model's ``.decode.json`` is used (the bundled model's 4-gram); ``--lm none`` decodes with the
lexicon alone, every word equally likely. The lexicon is the training
transcripts' vocabulary stored in the assets (``--lexicon``: the LM's vocabulary instead).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from asr.checkpoint import CheckpointError
from asr.decoding.align import WordSpan, align_words
from asr.decoding.threads import map_utterances
from asr.hybrid.model import HybridAssets, HybridModel, encoder_fingerprint
from asr.hybrid.viterbi import ViterbiDecoder, ViterbiResult, build_graph

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_ASSETS = PRETRAINED_DIR / "hybrid.npz"
SPECIAL_WORDS = {"<s>", "</s>", "<unk>"}


class HybridDecoder:
    """Batch decoder with the Transcriber's `.decode(log_probs, lengths) -> list[str]` interface."""

    def __init__(self, assets: HybridAssets, emissions: str = "ctc", lm=None, lm_weight: float = 0.5,
                 word_bonus: float = 1.0, acoustic_scale: float | None = None, prior_scale: float | None = None,
                 beam: float = 14.0, max_active: int = 1000, transition_scale: float = 1.0,
                 ctc_columns: int = 29, lexicon: list[str] | None = None) -> None:
        if emissions not in ("trained", "ctc"):
            raise ValueError(f"unknown emission source {emissions!r} (trained or ctc)")
        self.assets = assets
        self.emissions = emissions
        defaults = assets.decode.get(emissions, {})
        self.acoustic_scale = float(acoustic_scale if acoustic_scale is not None else defaults.get("acoustic_scale", 1.0))
        self.prior_scale = float(prior_scale if prior_scale is not None else defaults.get("prior_scale", 1.0))
        topology = assets.topology if emissions == "trained" else assets.ctc_topology
        priors = assets.priors if emissions == "trained" else assets.ctc_priors
        self.offset = ctc_columns if emissions == "trained" else 0  # first column of our posteriors
        self.log_prior = np.log(np.asarray(priors, dtype=np.float64))  # (C,)
        words = lexicon if lexicon is not None else assets.lexicon
        self.graph = build_graph(topology, [w for w in words if w not in SPECIAL_WORDS])
        self.viterbi = ViterbiDecoder(self.graph, lm=lm, lm_weight=lm_weight, word_bonus=word_bonus, beam=beam,
                                      max_active=max_active, transition_scale=transition_scale)

    def emission_scores(self, log_probs: np.ndarray) -> np.ndarray:
        """One utterance's model output (T, V[+S]) → (T, C) emission scores."""
        columns = self.log_prior.shape[0]
        posts = np.asarray(log_probs, dtype=np.float64)[:, self.offset:self.offset + columns]  # (T, C)
        if posts.shape[1] != columns:
            raise ValueError(f"model gives {log_probs.shape[1]} outputs; the hybrid assets expect "
                             f"{self.offset + columns} ({self.emissions} emissions)")
        return self.acoustic_scale * (posts - self.prior_scale * self.log_prior)

    def decode_results(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[ViterbiResult]:
        """(B, T, V[+S]) log-probs and (B,) lengths → one ViterbiResult (words, frames, score) each."""
        lp = log_probs.detach().float().cpu().numpy()
        return map_utterances(lambda b: self.viterbi.decode(self.emission_scores(lp[b, : int(lengths[b])])),
                              lp.shape[0])

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [" ".join(r.words) for r in self.decode_results(log_probs, lengths)]

    def decode_words(self, log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer, frame_shift_s: float,
                     wanted: list[bool] | None = None) -> list[tuple[str, list[WordSpan]]]:
        """(B, T, V[+S]) log-probs → (text, timed words) per utterance (no words where `wanted[b]` is False).

        The Viterbi path decides which frames belong to each word; inside them a CTC forced alignment
        of the word's letters trims the blank or silence frames the path gives the word before its
        first and after its last letter, and its mean letter score is the word's confidence. Where
        the word's frames are too few to align its letters, the Viterbi span is kept with confidence 0.
        """
        ctc = log_probs[..., : tokenizer.vocab_size].detach().float().cpu().numpy()  # (B, T, V)
        out = []
        for b, result in enumerate(self.decode_results(log_probs, lengths)):
            spans = []
            for word, start, end in zip(result.words, result.starts, result.ends):
                if wanted is not None and not wanted[b]:
                    break
                offset = start * frame_shift_s
                try:
                    [inside] = align_words(ctc[b, start:end], word, tokenizer, frame_shift_s)
                    spans.append(WordSpan(word, offset + inside.start, offset + inside.end, inside.conf))
                except ValueError:
                    spans.append(WordSpan(word, offset, end * frame_shift_s, 0.0))
            out.append((" ".join(result.words), spans))
        return out


def _user_error(message: str) -> Exception:
    from asr.cli import UserError

    return UserError(message)


def resolve_lm_path(args: argparse.Namespace, model_path: Path) -> str | None:
    """`--lm PATH`, `--lm none` (no LM), or else the LM named in the model's `.decode.json` (the bundled one)."""
    if args.lm is not None:
        return None if args.lm.lower() == "none" else args.lm
    try:
        from asr.tune import load_decode_settings
    except ImportError:  # pragma: no cover - older trees without asr.tune
        return None
    try:
        return load_decode_settings(model_path).lm
    except ValueError as exc:
        raise _user_error(str(exc)) from None


def _given(value, default):
    """`value` unless it is None (0 is a value, to be validated, not replaced)."""
    return default if value is None else value


def tuned_emissions(assets: HybridAssets, model) -> str:
    """The emission source whose tuned scales scored the lower WER on the tuning set (recorded in the
    assets by `python -m asr.hybrid.tune --write`); "ctc" when nothing was tuned, on a tie, or when the
    state head belongs to another encoder than `model`."""
    def tuned_wer(source: str) -> float:
        best = assets.decode.get(source, {}).get("tuned", {}).get("best", {})
        return float(best.get("wer", float("inf")))

    usable = encoder_fingerprint(model) == assets.fingerprint
    return "trained" if usable and tuned_wer("trained") < tuned_wer("ctc") else "ctc"


def build_hybrid_decoder(args: argparse.Namespace, transcriber) -> HybridDecoder:
    """The decoder for `asr transcribe/decode --decoder hybrid`; swaps in the hybrid model if needed."""
    from asr.decoding.lm import load_arpa

    path = Path(getattr(args, "hybrid_model", None) or DEFAULT_ASSETS)
    if not path.is_file():
        raise _user_error(f"{path}: hybrid assets not found (build them with `asr train --config "
                          "recipes/default/conf/hybrid.yaml`, or pass --hybrid-model)")
    assets = HybridAssets.load(path)
    emissions = getattr(args, "hybrid_emissions", None) or tuned_emissions(assets, transcriber.model)
    lm_path = resolve_lm_path(args, Path(transcriber.loaded.path))
    lm = None
    if lm_path:
        if not Path(lm_path).is_file():
            raise _user_error(f"{lm_path}: language model file not found")
        try:
            lm = load_arpa(lm_path)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
    lexicon = None
    if getattr(args, "lexicon", None):
        if lm is None:
            raise _user_error("--lexicon needs an LM (--lm) to take the vocabulary from")
        lexicon = [w for w in lm.vocab if w not in SPECIAL_WORDS]
    if emissions == "trained":
        model = transcriber.model
        if encoder_fingerprint(model) != assets.fingerprint:
            raise _user_error(f"{path}: the state head was trained on another encoder than "
                              f"{transcriber.loaded.path} (use --hybrid-emissions ctc, or train hybrid assets for "
                              "this model)")
        try:
            head = assets.build_head()
        except CheckpointError as exc:
            raise _user_error(f"{path}: {exc}") from None
        transcriber.model = HybridModel(model, head).to(transcriber.device).eval()
    defaults = assets.decode.get(emissions, {})

    def pick(flag: str, key: str, default: float) -> float:
        value = getattr(args, flag, None)
        return float(value if value is not None else defaults.get(key, default))

    try:
        return HybridDecoder(assets, emissions, lm=lm, lm_weight=pick("alpha", "lm_weight", 0.5),
                             word_bonus=pick("beta", "word_bonus", 0.0),
                             acoustic_scale=pick("acoustic_scale", "acoustic_scale", 1.0),
                             prior_scale=pick("prior_scale", "prior_scale", 1.0),
                             beam=_given(getattr(args, "viterbi_beam", None), 14.0),
                             max_active=_given(getattr(args, "max_active", None), 1000),
                             ctc_columns=transcriber.tokenizer.vocab_size, lexicon=lexicon)
    except ValueError as exc:
        raise _user_error(f"{path}: {exc}") from None
