"""Sub-commands `asr index build|add` and `asr search` (registered through asr.cli.EXTRA_COMMANDS).

    asr index build --model exp/search/contrastive/model.pt recordings/ -o my.index
    asr index add my.index more.wav
    asr search my.index query.wav --top 5 --format jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SEARCH_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "search.pt"  # no torch import here


def _model_path(value: str | None) -> Path:
    from asr.cli import UserError

    path = Path(value) if value else DEFAULT_SEARCH_MODEL
    if not path.is_file():
        hint = " (no bundled search model; train one with recipes/search/run.sh)" if value is None else ""
        raise UserError(f"{path}: search model not found{hint}")
    return path


def _audio_paths(items: list[str]) -> tuple[list[Path], list[str]]:
    from asr.audio import AudioError, find_audio_files

    paths, errors = [], []
    for item in items:
        try:
            paths += find_audio_files([item])
        except AudioError as exc:
            errors.append(str(exc))
    return paths, errors


def _finish(index, folder: str, errors: list[str], started_count: int) -> int:
    from asr.cli import error
    from asr.search.index import save_index

    save_index(index, folder)
    for line in errors:
        error(line)
    print(json.dumps({"index": folder, "files": len(index.meta["files"]), "segments": len(index),
                      "added_segments": len(index) - started_count, "failed": len(errors)}))
    return 1 if errors else 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from asr.cli import UserError, error
    from asr.search.index import Embedder, SearchIndexError, build_index

    embedder = Embedder.load(_model_path(args.model), args.am)
    paths, errors = _audio_paths(args.paths)
    try:
        widths = tuple(float(w) for w in args.widths.split(","))
    except ValueError:
        raise UserError(f"--widths {args.widths!r}: expected comma-separated seconds, e.g. 0.3,0.5,0.8") from None
    if not widths or min(widths) <= 0 or args.hop <= 0:
        raise UserError("--widths and --hop must be positive seconds")
    index, more = build_index(embedder, paths, widths, args.hop)
    if not index.meta["files"]:  # nothing could be indexed: write no empty index, only the reasons
        for line in errors + more:
            error(line)
        raise UserError(f"{args.out}: no input could be indexed; nothing written")
    try:
        return _finish(index, args.out, errors + more, 0)
    except SearchIndexError as exc:
        raise UserError(str(exc)) from None


def cmd_index_add(args: argparse.Namespace) -> int:
    from asr.cli import UserError
    from asr.search.index import SearchIndexError, add_files
    from asr.search.query import load_for_search

    try:
        index, embedder = load_for_search(args.index, args.model, args.am)
        paths, errors = _audio_paths(args.paths)
        before = len(index)
        more = add_files(index, embedder, paths)
        return _finish(index, args.index, errors + more, before)
    except SearchIndexError as exc:
        raise UserError(str(exc)) from None


def cmd_search(args: argparse.Namespace) -> int:
    from asr.audio import load_audio
    from asr.cli import UserError
    from asr.search.index import SearchIndexError
    from asr.search.query import load_for_search, search
    from asr.transcribe import band_cutoff

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    try:
        index, embedder = load_for_search(args.index, args.model, args.am)
    except SearchIndexError as exc:
        raise UserError(str(exc)) from None
    wave = load_audio(args.query)
    hits = search(index, embedder, wave, band_cutoff(args.query), args.top, name=str(args.query))
    for rank, hit in enumerate(hits, start=1):
        if args.format == "jsonl":
            sys.stdout.write(json.dumps(hit.to_json(rank)) + "\n")
        else:
            sys.stdout.write(f"{hit.path}\t{hit.start:.2f}\t{hit.end:.2f}\t{hit.score:.4f}\n")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `index build`, `index add` and `search` on the `asr` command's sub-parsers."""
    from asr.search import DEFAULT_HOP, DEFAULT_WIDTHS

    p = sub.add_parser("index", help="build or extend a search-by-example index of audio files")
    index_sub = p.add_subparsers(dest="index_command", required=True)
    p = index_sub.add_parser("build", help="embed candidate segments of audio files into a new index")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories (walked recursively)")
    p.add_argument("-o", "--out", required=True, help="index folder to write (replaced atomically)")
    p.add_argument("--model", help=f"search model (default: {DEFAULT_SEARCH_MODEL.name} if bundled)")
    p.add_argument("--am", help="acoustic model the search model was trained with (default: the bundled model)")
    p.add_argument("--widths", default=",".join(str(w) for w in DEFAULT_WIDTHS),
                   help="sliding-window widths in seconds, comma-separated")
    p.add_argument("--hop", type=float, default=DEFAULT_HOP, help="sliding-window hop in seconds")
    p.set_defaults(func=cmd_index_build)
    p = index_sub.add_parser("add", help="add audio files to an existing index")
    p.add_argument("index", help="index folder")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", help="search model (default: the one the index was built with)")
    p.add_argument("--am", help="acoustic model the search model was trained with")
    p.set_defaults(func=cmd_index_add)

    p = sub.add_parser("search", help="find where a recorded word or phrase is spoken in an index")
    p.add_argument("index", help="index folder from `asr index build`")
    p.add_argument("query", help="audio file with the spoken term")
    p.add_argument("--top", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text")
    p.add_argument("--model", help="search model (default: the one the index was built with)")
    p.add_argument("--am", help="acoustic model the search model was trained with")
    p.set_defaults(func=cmd_search)
