"""Query by example: a recording of a word or phrase → ranked places in the indexed files.

The query's leading and trailing silence is trimmed, it is embedded like a cut-out segment, and
every indexed candidate is scored by cosine similarity (one matrix-vector product). Candidates
that overlap a better-scoring hit in the same file are merged into it (`merged` counts them),
so one spoken word is reported once even though several windows cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.search.index import Embedder, SearchIndex


@dataclass
class Hit:
    """One ranked answer: `[start, end)` seconds of `path`, cosine `score`, candidates merged into it."""

    path: str
    start: float
    end: float
    score: float
    merged: int = 0

    def to_json(self, rank: int) -> dict:
        return {"rank": rank, "path": self.path, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 4), "merged": self.merged}


def rank_candidates(scores: np.ndarray, file: np.ndarray, start: np.ndarray, end: np.ndarray, top: int,
                    pool: int | None = None) -> list[tuple[int, int]]:
    """Greedy merging of overlapping candidates: (candidate id, merged count) of the best `top` hits.

    Only the best `pool` candidates (default max(500, 50·top)) are considered; scores (N,).
    """
    n = len(scores)
    pool = min(n, pool or max(500, 50 * top))
    if pool == 0:
        return []
    best = np.argpartition(-scores, pool - 1)[:pool] if pool < n else np.arange(n)
    best = best[np.argsort(-scores[best], kind="stable")]
    kept: list[list[int]] = []  # [candidate, merged]
    by_file: dict[int, list[int]] = {}
    for c in best:
        f = int(file[c])
        for k in by_file.get(f, []):
            if start[c] < end[kept[k][0]] and start[kept[k][0]] < end[c]:
                kept[k][1] += 1
                break
        else:
            if len(kept) == top:
                continue
            by_file.setdefault(f, []).append(len(kept))
            kept.append([int(c), 0])
    return [(c, m) for c, m in kept]


def search(index: SearchIndex, embedder: Embedder, wave: np.ndarray | None, cutoff: float = 0.0, top: int = 10,
           vector: np.ndarray | None = None, name: str = "query") -> list[Hit]:
    """Ranked hits for a 16 kHz query waveform (or an already embedded `vector` (E,))."""
    if vector is None:
        if wave is None:
            raise TypeError("search() needs a query waveform or its vector")
        vector, _, _ = embedder.embed_query(wave, cutoff, name)
    if len(index) == 0:
        return []
    scores = index.vectors @ vector.astype(np.float32)  # (N,)
    files = index.meta["files"]
    return [Hit(files[int(index.file[c])]["path"], float(index.start[c]), float(index.end[c]), float(scores[c]), m)
            for c, m in rank_candidates(scores, index.file, index.start, index.end, top)]


def load_for_search(index_path: str | Path, model: str | Path | None = None, am: str | Path | None = None
                    ) -> tuple[SearchIndex, Embedder]:
    """The index and the search model it was built with (or `model`, if it is the same file by hash)."""
    from asr.checkpoint import CheckpointError
    from asr.search.features import file_sha256
    from asr.search.index import load_index

    index = load_index(index_path)
    path: Path | None
    if model:
        path = Path(model)
        if not path.is_file():
            raise CheckpointError(f"{path}: search model not found")
        if file_sha256(path) != index.meta["model_sha256"]:
            raise CheckpointError(f"{path}: not the search model {index_path} was built with "
                                  f"(rebuild the index with `asr index build --model {path}`)")
    else:
        path = find_index_model(Path(index_path), index.meta)
        if path is None and Path(index.meta["model"]).is_file():
            raise CheckpointError(f"{index.meta['model']}: changed since {index_path} was built with it (rebuild "
                                  f"the index with `asr index build --model {index.meta['model']}`)")
        if path is None:
            raise CheckpointError(f"{index_path}: built with search model {index.meta['model']}, which is not there "
                                  "any more (pass --model)")
    index.meta["model"] = str(path.resolve())  # where it is now: `index add` saves this
    return index, Embedder.load(path, am)


def find_index_model(index_path: Path, meta: dict) -> Path | None:
    """The search model an index was built with, by SHA-256: at its recorded path, or, when the index
    or the repository was moved, at the same path relative to the index, or the bundled model."""
    from asr.search.cli import DEFAULT_SEARCH_MODEL
    from asr.search.features import file_sha256

    candidates = [Path(meta["model"]), DEFAULT_SEARCH_MODEL]
    if meta.get("model_relative"):
        candidates.insert(1, index_path / meta["model_relative"])
    for path in candidates:
        if path.is_file() and file_sha256(path) == meta["model_sha256"]:
            return path
    return None
