"""Beam-search decode settings: stored next to a model, tuned on a dev set by grid search (`asr tune`).

A model file `M.pt` may have a sibling `M.decode.json` holding the LM and the beam settings to use
with it; `asr transcribe/decode --decoder beam` reads it when the flags are not given, so the
bundled model decodes with its LM and tuned weights out of the box:

    {"lm": "lm.arpa.gz", "beam": 16, "alpha": 0.8, "beta": 1.5, "lexicon": false, "oov_penalty": null,
     "tuned": {...}}

`lm` is relative to the JSON file's folder (or absolute). `asr tune --model M --manifest DEV --lm
ARPA` computes the model's log-probs for DEV once (files cut into pieces exactly as `asr decode`
cuts them), decodes them for every (alpha, beta) of a grid, and writes the pair with the lowest
WER (ties: lower CER, then smaller alpha) to `M.decode.json`. With `--oov-penalties` it also tunes
what a word outside the LM's vocabulary costs in the open-vocabulary search (`oov_penalty`; null: the
LM's own <unk> probability).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio
from asr.fileio import atomic_write_text
from asr.metrics import error_counts

if TYPE_CHECKING:
    import torch

    from asr.decoding.align import WordSpan
    from asr.segment import Span

DEFAULT_BEAM, DEFAULT_ALPHA, DEFAULT_BETA = 16, 0.5, 1.0
DEFAULT_ALPHAS = tuple(np.round(np.arange(0.0, 3.01, 0.25), 2).tolist())
DEFAULT_BETAS = tuple(np.round(np.arange(-4.0, 4.01, 0.5), 2).tolist())


@dataclass
class DecodeSettings:
    """How to beam-search with one model: its LM (None: no LM) and the fusion weights."""

    lm: str | None = None
    beam: int = DEFAULT_BEAM
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    lexicon: bool = False
    oov_penalty: float | None = None  # an out-of-vocabulary word scores -oov_penalty + beta (None: alpha·ln P(<unk>))
    tuned: dict = field(default_factory=dict)  # where the values came from (manifest, grid, WER)


def settings_path(model_path: str | os.PathLike) -> Path:
    """`dir/model.pt` → `dir/model.decode.json`."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.decode.json")


def load_decode_settings(model_path: str | os.PathLike) -> DecodeSettings:
    """The settings stored next to `model_path` (LM path made absolute), or the defaults if there are none."""
    path = settings_path(model_path)
    if not path.is_file():
        return DecodeSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        settings = DecodeSettings(**raw)
        settings.beam, settings.alpha, settings.beta = int(settings.beam), float(settings.alpha), float(settings.beta)
        if settings.lm is not None and not isinstance(settings.lm, str) or not isinstance(settings.lexicon, bool):
            raise TypeError("'lm' must be a path or null and 'lexicon' true or false")
        if settings.oov_penalty is not None:
            settings.oov_penalty = float(settings.oov_penalty)
    except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid decode settings file ({exc})") from None
    if settings.lm:
        settings.lm = str((path.parent / settings.lm).resolve())
    return settings


def save_decode_settings(model_path: str | os.PathLike, settings: DecodeSettings) -> Path:
    """Write `settings` next to the model (LM path stored relative to it when it lies in the same tree)."""
    path = settings_path(model_path)
    stored = asdict(settings)
    if settings.lm:
        lm = Path(settings.lm).resolve()
        stored["lm"] = os.path.relpath(lm, path.parent.resolve()) if lm.is_relative_to(path.parent.resolve()) else str(lm)
    atomic_write_text(path, json.dumps(stored, indent=2) + "\n")
    return path


def compute_log_probs(transcriber, paths: Sequence[str | os.PathLike], batch_seconds: float = 100.0
                      ) -> list[np.ndarray]:
    """The model's (T', V) log-probs for each whole file, in input order (length-sorted batches inside)."""
    from asr.transcribe import band_cutoff

    waves = [load_audio(p) for p in paths]
    return batched_log_probs(transcriber, waves, [band_cutoff(p) for p in paths], batch_seconds)


def batched_log_probs(transcriber, waves: Sequence[np.ndarray], cutoffs: Sequence[float],
                      batch_seconds: float = 100.0) -> list[np.ndarray]:
    """(T'_i, V) log-probs of 16 kHz waves, in input order; batches of similar length, each at most
    `batch_seconds` of padded audio (a longer wave is a batch of its own)."""
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    out: list[np.ndarray | None] = [None] * len(waves)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and len(waves[order[stop]]) / SAMPLE_RATE * (stop - start + 1) <= batch_seconds:
            stop += 1
        batch = order[start:stop]
        log_probs, lengths = transcriber.log_probs([waves[i] for i in batch], [cutoffs[i] for i in batch])  # (B, T', V)
        for row, i in enumerate(batch):
            out[i] = log_probs[row, : lengths[row]].numpy()
        start = stop
    return out  # type: ignore[return-value]


@dataclass
class TuningFile:
    """One tuning recording cut into pieces exactly as `asr decode` cuts it, with each piece's log-probs."""

    duration: float  # seconds
    spans: list[Span]  # where each piece lies in the recording
    log_probs: list[np.ndarray]  # per piece (T'_i, V)


def compute_piece_log_probs(transcriber, paths: Sequence[str | os.PathLike], batch_seconds: float = 100.0
                            ) -> list[TuningFile]:
    """Each file cut by `transcriber`'s segmenter (a file up to `whole_file_s` stays whole; a
    near-silent one has no piece) and every piece's log-probs, computed once for a whole grid."""
    from asr.segment import Segmenter
    from asr.transcribe import band_cutoff

    files: list[TuningFile] = []
    pieces, cutoffs, owners = [], [], []  # flat over files
    for path in paths:
        wave = load_audio(path)
        segmenter = Segmenter(transcriber.segment_config)
        found = segmenter.feed(wave) + segmenter.finish()
        files.append(TuningFile(len(wave) / SAMPLE_RATE, [piece.span for piece in found], []))
        pieces += [piece.wave for piece in found]
        cutoffs += [band_cutoff(path)] * len(found)
        owners += [len(files) - 1] * len(found)
    for i, log_probs in enumerate(batched_log_probs(transcriber, pieces, cutoffs, batch_seconds)):
        files[owners[i]].log_probs.append(log_probs)
    return files


def plain_pieces(files: Sequence[TuningFile]) -> list[np.ndarray]:
    """Log-probs of the pieces that overlap no neighbour, in order: their text is the decoder's output as is."""
    return [lp for f in files for span, lp in zip(f.spans, f.log_probs) if not span.overlaps]


def join_files(transcriber, files: Sequence[TuningFile], plain_texts: Sequence[str]) -> list[str]:
    """Whole-recording texts as `asr decode` makes them from the pieces (`plain_texts` = the decoded
    `plain_pieces`, in order). Pieces that overlap a neighbour are decoded here with
    `transcriber.decoder` and keep only their own words, as in decoding."""
    from asr.transcribe import join_pieces

    texts = iter(plain_texts)
    results = []
    for f in files:
        overlapping = [lp for span, lp in zip(f.spans, f.log_probs) if span.overlaps]
        decoded: Iterator[tuple[str, list[WordSpan]]] = iter([])
        if overlapping:
            batch, lengths = _stack(overlapping)  # (B, T', V)
            durations = [(span.end - span.start) / SAMPLE_RATE for span in f.spans if span.overlaps]
            decoded = iter(transcriber.decode_log_probs(batch, lengths, durations, [True] * len(overlapping)))
        parts = [(span, *next(decoded)) if span.overlaps else (span, next(texts), []) for span in f.spans]
        results.append(join_pieces(parts, f.duration))
    return results


@dataclass
class GridPoint:
    """WER/CER of one (alpha, beta, OOV penalty) on the tuning set (penalty None: the LM's <unk> score)."""

    alpha: float
    beta: float
    wer: float
    cer: float
    oov_penalty: float | None = None


def score_texts(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER in percent."""
    words, chars = error_counts(refs, hyps, "word"), error_counts(refs, hyps, "char")
    return 100 * words["errors"] / max(1, words["ref_len"]), 100 * chars["errors"] / max(1, chars["ref_len"])


def grid_search(transcriber, files: Sequence[TuningFile], refs: Sequence[str], lm, alphas: Sequence[float],
                betas: Sequence[float], beam: int = DEFAULT_BEAM, lexicon: bool = False,
                oov_penalties: Sequence[float | None] = (None,)) -> list[GridPoint]:
    """Decode every file for every (alpha, beta, OOV penalty), as `asr decode` would; return the points best first.

    Ranking: lowest WER, then lowest CER, then the LM's own <unk> score (penalty None) before any penalty
    and a smaller penalty before a larger one, then the smallest alpha and |beta| (the least LM that does
    as well).
    """
    from asr.decoding.beam import BeamSearchDecoder

    plain = plain_pieces(files)
    batch = _stack(plain) if plain else None  # (B, T, V), (B,): one batch, searched in parallel threads
    trial = copy.copy(transcriber)  # the caller's transcriber keeps its decoder
    points = []
    for oov_penalty in oov_penalties:
        for alpha in alphas:
            for beta in betas:
                trial.decoder = BeamSearchDecoder(transcriber.tokenizer, lm=lm, beam_size=beam, alpha=alpha, beta=beta,
                                                  lexicon=lexicon, oov_penalty=oov_penalty)
                hyps = join_files(trial, files, trial.decoder.decode(*batch) if batch is not None else [])
                wer, cer = score_texts(refs, hyps)
                points.append(GridPoint(float(alpha), float(beta), wer, cer, oov_penalty))
    return sorted(points, key=lambda p: (round(p.wer, 6), round(p.cer, 6), p.oov_penalty is not None,
                                         p.oov_penalty or 0.0, p.alpha, abs(p.beta)))


def parse_oov_grid(text: str | None) -> list[float | None]:
    """`--oov-penalties`: `"unk,2,4"` or `"0:20:2"` (or both, comma-joined) → penalties, `unk` = None (the
    LM's own <unk> score); None → [None], the search as it is without the flag."""
    if text is None:
        return [None]
    values: list[float | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "unk":
            values.append(None)
        elif part:
            values += parse_grid(part, ())
    if not values:
        raise ValueError(f"bad grid {text!r}: it holds no value")
    if any(v is not None and v < 0 for v in values):
        raise ValueError(f"bad grid {text!r}: an OOV penalty is a cost, 0 or more")
    return list(dict.fromkeys(values))  # in order, each once


def parse_grid(text: str | None, default: Sequence[float]) -> list[float]:
    """`"0,0.5,1"` or `"0:2:0.25"` (start:stop:step, stop included) → floats; None → `default`."""
    if text is None:
        return list(default)
    try:
        if ":" in text:
            lo, hi, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise ValueError
            values = [round(v, 6) for v in np.arange(lo, hi + step / 2, step)]
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"bad grid {text!r}: expected comma-separated numbers or start:stop:step") from None
    if not values:
        raise ValueError(f"bad grid {text!r}: it holds no value")
    return values


def grid_edge_warnings(chosen: Mapping[str, float], grids: Mapping[str, Sequence[float]],
                       limits: Mapping[str, tuple[float | None, float | None]] | None = None) -> list[str]:
    """One line per chosen value that lies on the edge of its grid: the best point may lie outside it.

    `chosen` and `grids` are keyed by the option that sets the grid (e.g. "--betas"). A grid of one
    value has no edge to warn about, and a value at its parameter's natural limit (`limits`: (lowest,
    highest), None for none, e.g. (0, None) for an LM weight) is a real answer, not an edge.
    """
    lines = []
    for option, value in chosen.items():
        grid = sorted(grids[option])
        low_limit, high_limit = (limits or {}).get(option, (None, None))
        if len(grid) < 2 or value not in (grid[0], grid[-1]) or value in (low_limit, high_limit):
            continue
        side = "lowest" if value == grid[0] else "highest"
        lines.append(f"note: the best {option} value {value:g} is the {side} of its grid ({grid[0]:g} … "
                     f"{grid[-1]:g}); widen {option} to be sure the best point lies inside it")
    return lines


def tune(transcriber, manifest: str | os.PathLike, lm_path: str | os.PathLike | None, alphas: Sequence[float],
         betas: Sequence[float], beam: int = DEFAULT_BEAM, lexicon: bool = False,
         oov_penalties: Sequence[float | None] = (None,)) -> tuple[DecodeSettings, list[GridPoint]]:
    """Grid-search alpha/beta (and the OOV penalty) for `transcriber`'s model on `manifest`; the best
    settings and all points."""
    from asr.decoding.lm import load_arpa
    from asr.manifest import read_manifest
    from asr.text import normalize_text

    tunes_oov = list(oov_penalties) != [None]
    if lexicon and tunes_oov:
        raise ValueError("an OOV penalty applies to the open-vocabulary search: the lexicon mode outputs no OOV word")
    if not lm_path and tunes_oov:
        raise ValueError("an OOV penalty needs an LM: without one no word is out of vocabulary")
    started = time.perf_counter()
    utterances = read_manifest(manifest, check_audio=True)
    if not utterances:
        raise ValueError(f"{manifest}: no utterances to tune on")
    lm = load_arpa(lm_path) if lm_path else None
    files = compute_piece_log_probs(transcriber, [u.audio_path for u in utterances])
    refs = [normalize_text(u.text) for u in utterances]
    greedy = transcriber.decoder.__class__.__name__ == "GreedyDecoder"
    points = grid_search(transcriber, files, refs, lm, alphas, betas, beam, lexicon, oov_penalties)
    best = points[0]
    baseline = {}
    if greedy:
        plain = plain_pieces(files)
        hyps = join_files(transcriber, files, transcriber.decoder.decode(*_stack(plain)) if plain else [])
        baseline = dict(zip(("greedy_wer", "greedy_cer"), score_texts(refs, hyps)))
    info = {"manifest": str(manifest), "utterances": len(refs), "wer": round(best.wer, 3), "cer": round(best.cer, 3),
            **{k: round(v, 3) for k, v in baseline.items()}, "alphas": list(alphas), "betas": list(betas),
            **({"oov_penalties": list(oov_penalties)} if tunes_oov else {}),
            "seconds": round(time.perf_counter() - started, 1)}
    settings = DecodeSettings(lm=str(lm_path) if lm_path else None, beam=beam, alpha=best.alpha, beta=best.beta,
                              lexicon=lexicon, oov_penalty=best.oov_penalty, tuned=info)
    return settings, points


def _stack(log_probs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, V) arrays → padded (B, T, V) tensor and (B,) lengths."""
    import torch

    lengths = torch.tensor([len(lp) for lp in log_probs])
    batch = torch.zeros(len(log_probs), int(lengths.max()), log_probs[0].shape[1])
    for i, lp in enumerate(log_probs):
        batch[i, : len(lp)] = torch.from_numpy(lp)
    return batch, lengths
