"""Query-by-example evaluation on held-out speakers: our embeddings side by side with DTW.

    python bench/search_eval.py --model exp/search/contrastive/model.pt [--model other.pt ...] \
        [--segments exp/search/segments/an4_dev.tsv ...] [--min-chars 3] [--json OUT]

Word segments of speakers never used for training (default: the dev-speaker segments written by
recipes/search/run.sh stage 1) are cut out of their recordings. Each method scores every pair:

- `emb:<name>`: cosine similarity of the search model's embeddings (features of the cut-out audio).
- `dtw-mfcc`: DTW (librosa.sequence.dtw) on 13 MFCC + Δ + ΔΔ (librosa.feature.mfcc, 40 mel bands,
  25 ms / 10 ms, mean and variance normalised per segment), cosine frame distance, cost / (N + M).
- `dtw-post`: DTW on the bundled acoustic model's character posteriors, frame distance
  -log(p·q), cost / (N + M).

Reported: same-different average precision over all pairs (`ap`) and over different-speaker pairs
only (`ap_xspk`); every segment as a query against the others: MAP and precision@10 (`map`, `p10`,
and `map_xspk`/`p10_xspk` with the query speaker's own segments removed); query latency (one query
against the whole collection, median of `--latency-queries`, features of the query included).
Then an index of all held-out recordings is built with the first model (candidate words + sliding
windows, typically > 10,000 segments) and one query against it is timed end to end (`asr search`
without the process start and model loading), beside DTW-MFCC over the same candidates.

Located: before that top-up, every held-out segment is searched for in the index of the held-out
recordings as a user would (`asr search`: cosine scores, overlapping candidates merged, top 10),
and a hit counts when its midpoint falls inside a true occurrence of the word (P@1, P@5, MAP@10):
`all` searches every recording but the query's own, `xspk` only other speakers' recordings. A
spread-out subset of the queries (`--located-dtw-queries`) is also ranked by DTW-MFCC over the same
candidates with the same merging.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.metrics import average_precision, mean_average_precision  # noqa: E402
from asr.search.segments import Segment, read_segments  # noqa: E402
from asr.search.train import cut  # noqa: E402
from asr.transcribe import band_cutoff  # noqa: E402

DEFAULT_SEGMENTS = ["exp/search/segments/an4_dev.tsv", "exp/search/segments/fsdd_dev.tsv",
                    "exp/search/segments/librispeech_dev.tsv"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- DTW baselines

def mfcc_frames(wave: np.ndarray) -> np.ndarray:
    """(N,) samples → (T, 39) MFCC + Δ + ΔΔ, mean/variance normalised, rows L2-normalised."""
    m = librosa.feature.mfcc(y=wave, sr=SAMPLE_RATE, n_mfcc=13, n_fft=512, win_length=400, hop_length=160,
                             n_mels=40, fmin=20, fmax=7600)  # (13, T)
    width = min(9, m.shape[1] - (1 - m.shape[1] % 2)) if m.shape[1] >= 3 else 0
    parts = [m] + ([librosa.feature.delta(m, width=width, order=o, mode="nearest") for o in (1, 2)] if width >= 3
                   else [np.zeros_like(m)] * 2)
    f = np.concatenate(parts).T  # (T, 39)
    f = (f - f.mean(0)) / (f.std(0) + 1e-5)
    return (f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def dtw_cost(cost: np.ndarray) -> float:
    """Normalised DTW alignment cost of a (N, M) frame-distance matrix (librosa, steps (1,1),(1,0),(0,1))."""
    acc = librosa.sequence.dtw(C=cost, backtrack=False)
    return float(acc[-1, -1]) / (cost.shape[0] + cost.shape[1])


def mfcc_distance(a: np.ndarray, b: np.ndarray) -> float:
    return dtw_cost(np.maximum(0.0, 1.0 - a @ b.T))  # cosine distance of unit rows


def posterior_distance(a: np.ndarray, b: np.ndarray) -> float:
    return dtw_cost(-np.log(np.clip(a @ b.T, 1e-8, None)))  # a, b: (T, V) probabilities


def pairwise(feats: list[np.ndarray], distance) -> np.ndarray:
    """(N, N) symmetric distances (each pair computed once)."""
    n = len(feats)
    out = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = distance(feats[i], feats[j])
        if i % 200 == 0:
            log(f"  {i}/{n}")
    return out


# ---------------------------------------------------------------- metrics

def retrieval_metrics(similarity: np.ndarray, words: np.ndarray, speakers: np.ndarray) -> dict[str, float]:
    """Same-different AP (all pairs, different-speaker pairs) and per-query MAP / P@10."""
    n = len(words)
    same = words[:, None] == words[None, :]
    other_speaker = speakers[:, None] != speakers[None, :]
    upper = np.triu_indices(n, k=1)
    result = {"ap": average_precision(similarity[upper], same[upper])}
    cross = other_speaker[upper]
    result["ap_xspk"] = average_precision(similarity[upper][cross], same[upper][cross])
    for suffix, allowed in (("", ~np.eye(n, dtype=bool)), ("_xspk", other_speaker)):
        queries, p10 = [], []
        for q in range(n):
            keep = allowed[q]
            if not (same[q] & keep).any():
                continue
            queries.append((similarity[q, keep], same[q, keep]))
            top = np.argsort(-similarity[q, keep], kind="stable")[:10]
            p10.append(float(same[q, keep][top].mean()))
        result["map" + suffix] = mean_average_precision(queries)
        result["p10" + suffix] = float(np.mean(p10)) if p10 else float("nan")
    return result


def candidate_mfccs(index, first: int, waves_by_file: dict) -> list[np.ndarray]:
    """MFCCs (DTW's features) of the index's candidates from number `first` on; every recording is
    read once (from `waves_by_file` when it is there)."""
    import os

    known = {os.path.realpath(p): w for p, w in waves_by_file.items()}
    out = []
    for f in range(len(index.meta["files"])):
        ids = np.flatnonzero(np.asarray(index.file[first:]) == f) + first
        if len(ids) == 0:
            continue
        path = index.meta["files"][f]["path"]
        wave = known.get(os.path.realpath(path))
        wave = load_audio(path) if wave is None else wave
        out.extend((int(c), mfcc_frames(cut(wave, float(index.start[c]), float(index.end[c])))) for c in ids)
    return [m for _, m in sorted(out, key=lambda item: item[0])]


def evaluate_located(index, emb, segments: list[Segment], pieces: list[np.ndarray], cutoffs: list[float],
                     cand_mfcc: list[np.ndarray], dtw_queries: int) -> dict:
    """Every held-out segment as a query against the index of the held-out recordings, ranked as
    `asr search` ranks (cosine scores, overlapping candidates merged, top 10), in two settings: `all`
    (every recording but the query's own) and `xspk` (only recordings of other speakers). A spread-out
    subset of `dtw_queries` queries is also ranked by DTW-MFCC over the same candidates with the same
    merging, beside our embeddings on that subset. A query that `asr search` refuses (too short after
    trimming its silence) counts as a miss."""
    import os

    from asr.audio import AudioError
    from asr.search.query import rank_candidates

    real = [os.path.realpath(s.source) for s in segments]
    speaker_of = dict(zip(real, (s.speaker for s in segments)))
    files = [os.path.realpath(f["path"]) for f in index.meta["files"]]
    cand_file = np.asarray(index.file)
    cand_speaker = np.array([speaker_of.get(files[f], "") for f in cand_file])
    occurrences: dict[str, list[tuple[str, float, float, str]]] = {}
    for seg, path in zip(segments, real):
        occurrences.setdefault(seg.word, []).append((path, seg.start, seg.end, seg.speaker))
    file_id = {p: i for i, p in enumerate(files)}
    own_file = [file_id.get(p, -1) for p in real]

    def allowed(q: int, setting: str) -> np.ndarray:
        return cand_file != own_file[q] if setting == "all" else cand_speaker != segments[q].speaker

    def ranked(scores: np.ndarray, keep: np.ndarray) -> list[tuple[str, float, float]]:
        ids = np.flatnonzero(keep)
        return [(files[int(cand_file[ids[c]])], float(index.start[ids[c]]), float(index.end[ids[c]]))
                for c, _ in rank_candidates(scores[ids], cand_file[ids], index.start[ids], index.end[ids], 10)]

    emb_scores: list[np.ndarray | None] = []
    for q in range(len(segments)):
        try:
            vector, _, _ = emb.embed_query(pieces[q], cutoffs[q])
            emb_scores.append(index.vectors @ vector.astype(np.float32))  # (N,)
        except AudioError:
            emb_scores.append(None)
    refused = sum(v is None for v in emb_scores)
    settings = ("all", "xspk")
    rankings: dict[str, dict] = {}
    for setting in settings:
        hits = [ranked(v, allowed(q, setting)) if v is not None else [] for q, v in enumerate(emb_scores)]
        rankings[f"emb (asr search), {setting}"] = located_metrics(hits, segments, real, setting, occurrences)
    if dtw_queries > 0:
        subset = np.unique(np.linspace(0, len(segments) - 1, min(dtw_queries, len(segments))).astype(int))
        dtw_scores = {}
        for q in subset:
            query = mfcc_frames(pieces[q])
            dtw_scores[int(q)] = -np.array([mfcc_distance(query, m) for m in cand_mfcc])  # (N,)
        sub = [segments[q] for q in subset], [real[q] for q in subset]
        for setting in settings:
            for name, scores in (("emb", {int(q): emb_scores[q] for q in subset}), ("dtw-mfcc", dtw_scores)):
                hits = [ranked(scores[q], allowed(q, setting)) if scores[q] is not None else [] for q in subset]
                rankings[f"{name}, same {len(subset)} queries, {setting}"] = located_metrics(
                    hits, sub[0], sub[1], setting, occurrences)
    return {"candidates": len(index), "files": len(index.meta["files"]), "refused_queries": refused,
            "rankings": rankings}


def located_metrics(ranked: list[list[tuple[str, float, float]]], queries: list[Segment], query_files: list[str],
                    setting: str, occurrences: dict[str, list[tuple[str, float, float, str]]], k: int = 10
                    ) -> dict[str, float]:
    """Index-level retrieval: are the returned places where the query's word is really spoken?

    `ranked[q]`: (path, start, end) hits of query q, best first, already restricted to the recordings
    the setting allows (`all`: not the query's own; `xspk`: none of its speaker's). A hit is correct
    when its midpoint falls inside a not yet found occurrence of the query's word in an allowed
    recording (`occurrences[word]`: (path, start, end, speaker) of every true one). Returns P@1, P@5
    and MAP@k (AP over the first k hits, normalised by min(k, allowed occurrences)) over the queries
    whose word is spoken in at least one allowed recording.
    """
    p1, p5, aps = [], [], []
    for hits, query, own in zip(ranked, queries, query_files):
        truth = [o for o in occurrences.get(query.word, [])
                 if o[0] != own and (setting == "all" or o[3] != query.speaker)]
        if not truth:
            continue
        found: set[int] = set()
        correct = []
        for path, start, end in hits[:k]:
            mid = 0.5 * (start + end)
            match = next((i for i, (p, s, e, _) in enumerate(truth) if i not in found and p == path and s <= mid <= e),
                         None)
            if match is not None:
                found.add(match)
            correct.append(match is not None)
        correct_arr = np.array(correct + [False] * (k - len(correct)), dtype=bool)
        precision = np.cumsum(correct_arr) / np.arange(1, k + 1)
        aps.append(float((precision * correct_arr).sum() / min(k, len(truth))))
        p1.append(float(correct_arr[0]))
        p5.append(float(correct_arr[:5].mean()))
    return {"queries": len(aps), "p1": float(np.mean(p1)) if aps else float("nan"),
            "p5": float(np.mean(p5)) if aps else float("nan"), "map": float(np.mean(aps)) if aps else float("nan")}


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="search model(s); the first builds the index")
    parser.add_argument("--segments", nargs="+", default=DEFAULT_SEGMENTS, help="held-out segment TSVs")
    parser.add_argument("--min-chars", type=int, default=3, help="only words with at least this many letters")
    parser.add_argument("--latency-queries", type=int, default=20)
    parser.add_argument("--index-dtw-queries", type=int, default=3, help="DTW queries timed over the big index")
    parser.add_argument("--skip-index", action="store_true", help="skip the 10,000-segment index timing")
    parser.add_argument("--index-size", type=int, default=10000, help="candidates wanted in the timed index")
    parser.add_argument("--filler", default="exp/default/data/an4/train.tsv",
                        help="manifest whose recordings top the timed index up to --index-size (timing only)")
    parser.add_argument("--located-dtw-queries", type=int, default=100,
                        help="queries also ranked by DTW-MFCC over the held-out index's candidates (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every number here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    from asr.search.index import Embedder, add_files, build_index
    from asr.search.query import search
    from asr.search.train import embed_arrays

    tagged = [(s, Path(p).stem) for p in args.segments for s in read_segments(p)]
    tagged = [(s, c) for s, c in tagged if len(s.word.replace("'", "")) >= args.min_chars]
    segments: list[Segment] = [s for s, _ in tagged]
    corpus = np.array([c for _, c in tagged])  # the segment file each came from
    words = np.array([s.word for s in segments])
    speakers = np.array([s.speaker for s in segments])
    log(f"{len(segments)} segments, {len(set(words))} words, {len(set(speakers))} speakers")
    waves_by_file = {p: load_audio(p) for p in sorted({s.source for s in segments})}
    pieces = [cut(waves_by_file[s.source], s.start, s.end) for s in segments]
    cutoffs = [band_cutoff(s.source) for s in segments]

    embedders = {Path(m).parent.name or Path(m).stem: Embedder.load(m) for m in args.model}
    am = next(iter(embedders.values())).am
    methods: dict[str, dict] = {}
    similarities: dict[str, np.ndarray] = {}

    def query_latency(fn, count: int) -> float:
        times = []
        for q in range(min(count, len(pieces))):
            t0 = time.perf_counter()
            fn(q)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    for name, emb in embedders.items():
        t0 = time.time()
        vectors = embed_arrays(emb.model, emb.featurizer.segments(pieces, cutoffs))
        log(f"emb:{name}: embedded {len(pieces)} segments in {time.time() - t0:.1f} s")

        def one_query(q: int, emb=emb, vectors=vectors) -> None:
            [f] = emb.featurizer.segments([pieces[q]], [cutoffs[q]])
            v = embed_arrays(emb.model, [f])[0]
            np.argsort(-(vectors @ v))[:10]

        similarities[f"emb:{name}"] = vectors @ vectors.T
        methods[f"emb:{name}"] = {**retrieval_metrics(vectors @ vectors.T, words, speakers),
                                  "latency_ms": 1000 * query_latency(one_query, args.latency_queries)}

    mfcc = [mfcc_frames(p) for p in pieces]
    t0 = time.time()
    dist = pairwise(mfcc, mfcc_distance)
    log(f"dtw-mfcc: all pairs in {time.time() - t0:.0f} s")

    def mfcc_query(q: int) -> None:
        query = mfcc_frames(pieces[q])
        np.argsort([mfcc_distance(query, m) for m in mfcc])[:10]

    similarities["dtw-mfcc"] = -dist
    methods["dtw-mfcc"] = {**retrieval_metrics(-dist, words, speakers),
                           "latency_ms": 1000 * query_latency(mfcc_query, args.latency_queries)}

    post = [np.exp(f.log_probs) for f in am.files(pieces, cutoffs)] if len(pieces) < 64 else [
        np.exp(f.log_probs) for first in range(0, len(pieces), 64)
        for f in am.files(pieces[first: first + 64], cutoffs[first: first + 64])]
    t0 = time.time()
    dist = pairwise(post, posterior_distance)
    log(f"dtw-post: all pairs in {time.time() - t0:.0f} s")

    def post_query(q: int) -> None:
        query = np.exp(am.files([pieces[q]], [cutoffs[q]])[0].log_probs)
        np.argsort([posterior_distance(query, p) for p in post])[:10]

    similarities["dtw-post"] = -dist
    methods["dtw-post"] = {**retrieval_metrics(-dist, words, speakers),
                           "latency_ms": 1000 * query_latency(post_query, args.latency_queries)}

    subsets = {}
    for name, sim in similarities.items():
        for c in sorted(set(corpus)):
            keep = np.flatnonzero(corpus == c)
            if len(keep) > 1:
                subsets.setdefault(c, {})[name] = retrieval_metrics(sim[np.ix_(keep, keep)], words[keep], speakers[keep])
    base = methods["dtw-mfcc"]["ap"]
    print(f"held-out segments: {len(segments)} ({len(set(words))} words ≥ {args.min_chars} letters, "
          f"{len(set(speakers))} speakers); latency = one query against all {len(segments)}")
    header = f"{'method':24s} {'AP':>6s} {'AP/dtw':>7s} {'AP xspk':>8s} {'MAP':>6s} {'P@10':>6s} " \
             f"{'MAP xspk':>9s} {'P@10 xspk':>9s} {'ms/query':>9s}"
    print(header)
    for name, m in methods.items():
        print(f"{name:24s} {m['ap']:6.3f} {m['ap'] / base:7.2f} {m['ap_xspk']:8.3f} {m['map']:6.3f} {m['p10']:6.3f} "
              f"{m['map_xspk']:9.3f} {m['p10_xspk']:9.3f} {m['latency_ms']:9.1f}")

    print("\nper corpus (pairs within one corpus): AP / AP xspk / MAP")
    for c, rows in subsets.items():
        n = int((corpus == c).sum())
        print(f"  {c:12s} ({n:4d} segments, {len(set(speakers[corpus == c]))} speakers): " + "  ".join(
            f"{name} {m['ap']:.3f}/{m['ap_xspk']:.3f}/{m['map']:.3f}" for name, m in rows.items()))
    print()
    index_result = None
    if not args.skip_index:
        first_model = args.model[0]
        emb = Embedder.load(first_model)
        files = sorted(waves_by_file)
        t0 = time.time()
        index, _ = build_index(emb, files)
        build_s = time.time() - t0
        cand_mfcc = candidate_mfccs(index, 0, waves_by_file)
        located = evaluate_located(index, emb, segments, pieces, cutoffs, cand_mfcc, args.located_dtw_queries)
        if len(index) < args.index_size and args.filler:
            # Timing only: top the held-out collection up to --index-size candidates with more recordings.
            from asr.manifest import read_manifest

            extra = [u.audio_path for u in read_manifest(args.filler)]
            for first in range(0, len(extra), 50):
                add_files(index, emb, extra[first: first + 50])
                if len(index) >= args.index_size:
                    break
        log(f"index: {len(index)} candidates of {len(files)} files in {build_s:.0f} s")
        search_ms = 1000 * query_latency(lambda q: search(index, emb, pieces[q], cutoffs[q], top=10),
                                         args.latency_queries)
        vector = emb.embed_query(pieces[0], cutoffs[0])[0]
        search_only_ms = 1000 * query_latency(lambda q: search(index, emb, None, top=10, vector=vector),
                                              args.latency_queries)
        # DTW-MFCC over the same candidates: MFCCs of each candidate (precomputed), one query timed.
        cand_mfcc += candidate_mfccs(index, len(cand_mfcc), waves_by_file)

        def dtw_index_query(q: int) -> None:
            query = mfcc_frames(pieces[q])
            np.argsort([mfcc_distance(query, m) for m in cand_mfcc])[:10]

        dtw_ms = 1000 * query_latency(dtw_index_query, args.index_dtw_queries)
        index_result = {"candidates": len(index), "files": len(index.meta["files"]), "build_s": round(build_s, 1),
                        "emb_query_ms": search_ms, "emb_search_only_ms": search_only_ms, "dtw_mfcc_query_ms": dtw_ms,
                        "located": located}
        print(f"index of {len(index)} candidate segments ({len(index.meta['files'])} files; held-out ones "
              f"built in {build_s:.0f} s): "
              f"asr search {search_ms:.1f} ms/query (of which ranking + merging {search_only_ms:.2f} ms), "
              f"DTW-MFCC {dtw_ms:.0f} ms/query ({dtw_ms / search_ms:.0f}× slower)")
        print(f"\nlocated in the held-out index ({located['candidates']} candidates of {located['files']} recordings; "
              "a hit counts when its midpoint falls inside a true occurrence of the word; all = any other "
              "recording, xspk = other speakers' only; "
              f"{located['refused_queries']} queries refused as too short, counted as misses):")
        print(f"  {'ranking':40s} {'queries':>7s} {'P@1':>6s} {'P@5':>6s} {'MAP@10':>7s}")
        for name, m in located["rankings"].items():
            print(f"  {name:40s} {m['queries']:7d} {m['p1']:6.3f} {m['p5']:6.3f} {m['map']:7.3f}")

    if args.json:
        from runinfo import cpu_model, git_commit, write_json_atomic

        write_json_atomic(Path(args.json), {
            "bench": "search_eval", "command": "python " + " ".join([sys.argv[0]] + (argv or sys.argv[1:])),
            "commit": git_commit(), "hardware": {"cpu": cpu_model(), "torch_threads": args.threads},
            "segments": len(segments), "words": len(set(words)), "speakers": len(set(speakers)),
            "min_chars": args.min_chars, "segment_files": args.segments, "methods": methods, "per_corpus": subsets, "index": index_result,
            "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
