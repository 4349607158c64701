"""Search index: embeddings of candidate segments of every indexed file (`asr index build|add`).

Candidates of a file: the words the recognizer itself hears (greedy decode + forced alignment of
its own output, each word and each pair of adjacent words), sliding windows of several widths (so
a misrecognised word can still be found; windows where the recognizer hears no character at all
are dropped), and the whole file when it is short (isolated words). All come from one
acoustic-model pass over the file.

On disk an index is a folder:

    INDEX/index.json             format, model (path, path relative to the index, SHA-256), files
                                 [{path, duration, text}], settings, the name and SHA-256 of the
                                 vectors file
    INDEX/vectors-<sha12>.npz    vectors (N, E) float32 L2-normalised,
                                 file_id (N,) int32,
                                 start / end (N,) float32 seconds, kind (N,) int8 (0 window, 1 word, 2 file)

Both are written to temporary files and renamed; `index.json` is renamed last and names the
vectors file by its hash, so a reader sees either the old or the new index, never a mix. Nothing
is pickled (json, npz with allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from asr.checkpoint import CheckpointError
from asr.fileio import atomic_output, atomic_write_text, path_from_folder, read_tagged_json
from asr.search import DEFAULT_HOP, DEFAULT_WIDTHS
from asr.search.features import FileFeatures, SegmentFeaturizer, file_sha256
from asr.search.model import SegmentAutoencoder, load_search_model
from asr.search.segments import frame_db, trim_span
from asr.search.train import embed_arrays

log = logging.getLogger(__name__)

INDEX_FORMAT = "asr-search-index-v1"
WORD_PAD_S = 0.06
SPEECH_PROB = 0.5  # a window is kept when some step has P(non-blank) above this
WHOLE_FILE_MAX_S = 2.0
KIND_WINDOW, KIND_WORD, KIND_FILE = 0, 1, 2
MIN_QUERY_S = 0.1


class SearchIndexError(ValueError):
    """An index folder is missing, malformed or inconsistent; the message names it."""


@dataclass
class Candidates:
    """Candidate segments of one file: (N,) start and end seconds and kinds."""

    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray


@dataclass
class SearchIndex:
    """Vectors and metadata of indexed candidate segments."""

    meta: dict
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (N, E)
    file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (N,)
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    def __len__(self) -> int:
        return len(self.file)

    def append(self, file_id: int, cands: Candidates, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors.reshape(-1, vectors.shape[1]), vectors.astype(np.float32)])
        self.file = np.concatenate([self.file, np.full(len(cands.start), file_id, np.int32)])
        self.start = np.concatenate([self.start, cands.start.astype(np.float32)])
        self.end = np.concatenate([self.end, cands.end.astype(np.float32)])
        self.kind = np.concatenate([self.kind, cands.kind.astype(np.int8)])


def sliding_windows(duration: float, widths: tuple[float, ...], hop: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows of each width every `hop` seconds inside `[0, duration]` → (N,) starts, (N,) ends."""
    starts, ends = [], []
    for width in widths:
        if width > duration:
            continue
        s = np.arange(0.0, duration - width + 1e-6, hop)
        starts.append(s)
        ends.append(s + width)
    if not starts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(starts), np.concatenate(ends)


class Embedder:
    """A search model with its featurizer: file candidates and queries → L2-normalised vectors."""

    def __init__(self, model: SegmentAutoencoder, info: dict, featurizer: SegmentFeaturizer, path: Path) -> None:
        self.model, self.info, self.featurizer, self.path = model, info, featurizer, path
        self.am = featurizer if featurizer.kind.startswith("am") else SegmentFeaturizer("am", featurizer.transcriber)

    @classmethod
    def load(cls, model_path: str | os.PathLike, am_path: str | os.PathLike | None = None) -> "Embedder":
        """Load a search model and the acoustic model it was trained with (checked by SHA-256)."""
        from asr.transcribe import DEFAULT_MODEL, Transcriber

        model, info = load_search_model(model_path)
        wanted = info.get("am_sha256", "")
        candidates = [Path(am_path)] if am_path else [DEFAULT_MODEL] + ([Path(info["am_model"])] if info.get("am_model") else [])
        chosen = None
        for path in candidates:
            if path.is_file() and (not wanted or file_sha256(path) == wanted):
                chosen = path
                break
        if chosen is None:
            raise CheckpointError(f"{model_path}: trained on the hidden states of another acoustic model "
                                  f"(SHA-256 {wanted[:12]}…); pass that model with --am")
        transcriber = Transcriber.from_pretrained(chosen, device="cpu")
        return cls(model, info, SegmentFeaturizer(model.config.input, transcriber), Path(model_path))

    def word_candidates(self, log_probs: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray, str]:
        """The recognizer's own words (and adjacent word pairs), widened by WORD_PAD_S: (N,) starts, ends; its text."""
        from asr.decoding.align import align_words
        from asr.decoding.greedy import greedy_decode

        transcriber = self.featurizer.transcriber
        tokens = greedy_decode(torch.from_numpy(log_probs)[None], None, transcriber.tokenizer.blank_id)[0]
        text = transcriber.tokenizer.decode(tokens)
        if not text.strip():
            return np.zeros(0), np.zeros(0), text
        try:
            words = align_words(log_probs, text, transcriber.tokenizer, transcriber.frame_shift_s)
        except ValueError:
            return np.zeros(0), np.zeros(0), text
        s = np.array([w.start for w in words]) - WORD_PAD_S
        e = np.array([w.end for w in words]) + WORD_PAD_S
        starts, ends = np.r_[s, s[:-1]], np.r_[e, e[1:]]
        return np.clip(starts, 0, duration), np.clip(ends, 0, duration), text

    def candidates(self, am_feats: FileFeatures, duration: float, widths: tuple[float, ...], hop: float
                   ) -> tuple[Candidates, str]:
        """Word candidates, speech-bearing sliding windows and (for short files) the whole file; the transcript."""
        log_probs = am_feats.log_probs
        assert log_probs is not None  # `self.am` is an "am" featurizer: its files come with log-probs
        ws, we, text = self.word_candidates(log_probs, duration)
        ss, se = sliding_windows(duration, widths, hop)
        speech = (1.0 - np.exp(log_probs[:, self.featurizer.transcriber.tokenizer.blank_id])) > SPEECH_PROB
        count = np.r_[0, np.cumsum(speech)]  # (T'+1,) speech steps before each step
        shift = am_feats.frame_shift_s
        first = np.clip(np.round(ss / shift).astype(int), 0, len(speech))
        last = np.clip(np.round(se / shift).astype(int), 0, len(speech))
        keep = count[last] > count[first]
        ss, se = ss[keep], se[keep]
        fs, fe = (np.array([0.0]), np.array([duration])) if duration <= WHOLE_FILE_MAX_S else (np.zeros(0), np.zeros(0))
        start = np.r_[ws, ss, fs]
        end = np.r_[we, se, fe]
        kind = np.r_[np.full(len(ws), KIND_WORD), np.full(len(ss), KIND_WINDOW), np.full(len(fs), KIND_FILE)]
        ok = end - start >= MIN_QUERY_S
        return Candidates(start[ok], end[ok], kind[ok]), text

    def embed_files(self, waves: list[np.ndarray], cutoffs: list[float], widths: tuple[float, ...], hop: float
                    ) -> list[tuple[Candidates, np.ndarray, str]]:
        """Per file: its candidates, their (N, E) vectors, and the recognizer's transcript."""
        am_feats = self.am.files(waves, cutoffs)
        feats = am_feats if self.featurizer.kind == self.am.kind else self.featurizer.files(waves, cutoffs)
        out = []
        for wave, am, f in zip(waves, am_feats, feats):
            cands, text = self.candidates(am, len(wave) / SAMPLE_RATE, widths, hop)
            arrays = [self.featurizer.slice_frames(f, s, e) for s, e in zip(cands.start, cands.end)]
            out.append((cands, embed_arrays(self.model, arrays), text))
        return out

    def embed_query(self, wave: np.ndarray, cutoff: float = 0.0, name: str = "query") -> tuple[np.ndarray, float, float]:
        """Trim leading/trailing silence, embed → (E,) vector and the kept span in seconds."""
        if len(wave) == 0 or float(np.max(np.abs(wave))) < 1e-4:
            raise AudioError(f"{name}: query contains only silence")
        duration = len(wave) / SAMPLE_RATE
        start, end = trim_span(frame_db(wave), 0.0, duration, min_s=0.0)
        if end - start < MIN_QUERY_S:
            raise AudioError(f"{name}: query has only {end - start:.2f} s of speech after trimming silence "
                             f"(need at least {MIN_QUERY_S} s)")
        piece = wave[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]
        [feats] = self.featurizer.segments([piece], [cutoff])
        return embed_arrays(self.model, [feats])[0], start, end


def _new_meta(embedder: Embedder, widths: tuple[float, ...], hop: float) -> dict:
    return {"format": INDEX_FORMAT, "model": str(embedder.path.resolve()), "model_sha256": file_sha256(embedder.path),
            "embed_dim": embedder.model.config.embed_dim, "widths": list(widths), "hop": hop, "files": []}


def add_files(index: SearchIndex, embedder: Embedder, paths: list[Path], batch_seconds: float = 120.0) -> list[str]:
    """Embed the candidates of `paths` into `index` (files already indexed are skipped). Returns error lines."""
    from asr.transcribe import band_cutoff

    known = {f["path"] for f in index.meta["files"]}
    errors: list[str] = []
    pending: list[tuple[Path, float, float]] = []  # (path, seconds from its header, band cutoff)
    for path in paths:
        key = str(Path(path).resolve())
        if key in known:
            log.info("%s: already indexed, skipped", path)
            continue
        try:
            pending.append((Path(path), audio_duration(path), band_cutoff(path)))
        except AudioError as exc:
            errors.append(str(exc))
            continue
        known.add(key)
    pending.sort(key=lambda item: item[1])
    widths, hop = tuple(index.meta["widths"]), float(index.meta["hop"])
    batch: list[tuple[Path, float, float]] = []

    def flush() -> None:
        """Load the batch's files (only now, so memory holds one batch), embed them, append to the index."""
        loaded = []
        for path, _, cutoff in batch:
            try:
                loaded.append((path, load_audio(path), cutoff))
            except AudioError as exc:  # e.g. truncated after a readable header
                errors.append(str(exc))
        results = embedder.embed_files([w for _, w, _ in loaded], [c for _, _, c in loaded], widths, hop) \
            if loaded else []
        for (path, wave, _), (cands, vectors, text) in zip(loaded, results):
            file_id = len(index.meta["files"])
            index.meta["files"].append({"path": str(path.resolve()), "duration": round(len(wave) / SAMPLE_RATE, 3),
                                        "text": text})
            index.append(file_id, cands, vectors)
        batch.clear()

    for item in pending:
        if batch and item[1] * (len(batch) + 1) > batch_seconds:
            flush()
        batch.append(item)
    if batch:
        flush()
    return errors


def build_index(embedder: Embedder, paths: list[Path], widths: tuple[float, ...] = DEFAULT_WIDTHS,
                hop: float = DEFAULT_HOP) -> tuple[SearchIndex, list[str]]:
    """A new index of `paths`; also returns one error line per unreadable file."""
    index = SearchIndex(_new_meta(embedder, widths, hop),
                        vectors=np.zeros((0, embedder.model.config.embed_dim), np.float32))
    errors = add_files(index, embedder, paths)
    return index, errors


def save_index(index: SearchIndex, folder: str | os.PathLike) -> None:
    """Write the index into `folder` atomically (vectors file first, then index.json; old vectors removed)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SearchIndexError(f"{folder}: exists and is not an index folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "index.json").is_file():
        raise SearchIndexError(f"{folder}: folder is not empty and holds no index.json; refusing to overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".vectors.npz"
    with atomic_output(staging) as tmp:
        with open(tmp, "wb") as handle:  # a handle, so that np.savez does not append ".npz" to the name
            np.savez(handle, vectors=index.vectors.astype(np.float32), file_id=index.file, start=index.start,
                     end=index.end, kind=index.kind)
        digest = file_sha256(tmp)
    name = f"vectors-{digest[:12]}.npz"
    os.replace(staging, folder / name)
    meta = {**index.meta, "vectors": name, "vectors_sha256": digest, "count": len(index),
            "model_relative": Path(path_from_folder(index.meta["model"], folder)).as_posix()}
    atomic_write_text(folder / "index.json", json.dumps(meta, indent=1) + "\n")
    for old in folder.glob("vectors-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
    index.meta = meta


def load_index(folder: str | os.PathLike) -> SearchIndex:
    """Read an index folder; any problem raises SearchIndexError naming it."""
    folder = Path(folder)
    meta = read_tagged_json(folder / "index.json", INDEX_FORMAT, SearchIndexError, what="a search index",
                            missing=f"{folder}: not a search index (no index.json; build one with `asr index build`)")
    vectors_path = folder / str(meta.get("vectors", ""))
    if not vectors_path.is_file() or file_sha256(vectors_path) != meta.get("vectors_sha256"):
        raise SearchIndexError(f"{folder}: vectors file {vectors_path.name} is missing or does not match index.json")
    try:
        with np.load(vectors_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("vectors", "start", "end", "kind")}
            arrays["file"] = npz["file_id"]
    except (OSError, ValueError, KeyError) as exc:
        raise SearchIndexError(f"{vectors_path}: unreadable vectors ({exc})") from None
    missing = [key for key in ("embed_dim", "files", "count") if key not in meta]
    if missing:
        raise SearchIndexError(f"{folder / 'index.json'}: index metadata lacks {', '.join(missing)} (rebuild the index)")
    n = len(arrays["file"])
    if arrays["vectors"].shape != (n, meta["embed_dim"]) or n != meta.get("count") or (
            n and int(arrays["file"].max()) >= len(meta["files"])):
        raise SearchIndexError(f"{vectors_path}: shapes do not match index.json")
    return SearchIndex(meta, **arrays)


def index_digest(index: SearchIndex) -> str:
    """SHA-256 over the vectors and segment table (for round-trip checks)."""
    digest = hashlib.sha256()
    for array in (index.vectors, index.file, index.start, index.end, index.kind):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
