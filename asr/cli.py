"""The `asr` command (also `python -m asr`): transcribe, decode, align, lm build, train.

User errors (bad paths, unreadable audio, malformed manifests, broken checkpoints) print one
line on stderr and give a non-zero exit code; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from asr.fileio import atomic_write_text
from asr.formats import DOCUMENT_FORMATS, EXTENSIONS, format_transcript

if TYPE_CHECKING:  # at run time asr.tune is imported where it is used, like the rest of this module's work (numpy, soundfile)
    from asr.tune import DecodeSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(ValueError):
    """An error caused by the user's input; printed as one line (a ValueError for Python callers)."""


def error(message: str) -> None:
    print(f"asr: error: {message}", file=sys.stderr)


def stored_decode_settings(model_path: Path) -> DecodeSettings:
    """The settings of the model's `*.decode.json` (asr.tune; the defaults where there is none); a file
    that cannot be read is a one-line UserError."""
    from asr.tune import load_decode_settings

    try:
        return load_decode_settings(model_path)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def beam_settings(args: argparse.Namespace, stored: DecodeSettings) -> DecodeSettings:
    """Flags first, then the model's stored `*.decode.json` settings (`stored_decode_settings`), then the
    built-in defaults.

    The tuned alpha/beta only apply with the LM they were tuned for: naming another LM with --lm
    falls back to the defaults for whatever is not given. `--lm none` decodes without an LM.
    """
    from asr.tune import DEFAULT_ALPHA, DEFAULT_BETA, DecodeSettings

    if args.lm is not None and args.lm.lower() == "none":
        lm = None
    elif args.lm is not None:
        lm = args.lm
    else:
        lm = stored.lm
    same_lm = lm == stored.lm or (lm is not None and stored.lm is not None
                                  and Path(lm).resolve() == Path(stored.lm).resolve())
    if lm and not Path(lm).is_file():
        raise UserError(f"{lm}: language model file not found")

    def pick(flag, tuned, default):
        return flag if flag is not None else (tuned if same_lm else default)

    return DecodeSettings(lm=lm, beam=args.beam if args.beam is not None else stored.beam,
                          alpha=pick(args.alpha, stored.alpha, DEFAULT_ALPHA),
                          beta=pick(args.beta, stored.beta, DEFAULT_BETA),
                          lexicon=pick(args.lexicon, stored.lexicon, False) and lm is not None,
                          oov_penalty=pick(args.oov_penalty, stored.oov_penalty, None))


BEAM_ONLY_OPTIONS = ("lm", "beam", "alpha", "beta", "lexicon", "oov_penalty")  # flags greedy decoding has no use for


def numba_cache_present(source: str, function: str) -> bool:
    """Whether numba has a cached compilation of `function` of the module file `source`: next to it in
    `__pycache__`, or under `$NUMBA_CACHE_DIR`. A heuristic, only used to tell the user why a first run waits."""
    import os

    stem = Path(source).stem
    pattern = f"{stem}.{function}-*.nbi"
    places = [Path(source).parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        places.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    return any(next(place.rglob(pattern), None) is not None for place in places if place.is_dir())


def note_first_compile(source: str, function: str, what: str, seconds: int) -> None:
    """One stderr line before a search numba has not compiled on this machine yet (a first run waits)."""
    if not numba_cache_present(source, function):
        print(f"asr: note: compiling the {what} for this machine (first use only, about {seconds} s)", file=sys.stderr)


def model_default_decoder(model_path: Path, stored: DecodeSettings | None = None) -> tuple[str, str | None]:
    """The decoder a model gets without --decoder or beam flags, and why not beam where that needs saying:
    beam search when it ships tuned beam-search settings that name an existing LM (its `.decode.json`, as
    the bundled model does: on unseen speakers its beam + LM makes about a third fewer word errors than
    greedy), else greedy. `stored`: those settings where the caller has read them already."""
    from asr.tune import settings_path

    if stored is None:
        stored = stored_decode_settings(model_path)
    if stored.lm is None:
        return "greedy", None
    if not Path(stored.lm).is_file():
        return "greedy", (f"{settings_path(model_path)} names the LM {stored.lm}, which is missing: decoding greedily "
                          "(give --decoder beam --lm FILE to search with another LM)")
    return "beam", None


def resolve_decoder(args: argparse.Namespace, model_path: Path, stored: DecodeSettings) -> str:
    """The decoder to run: --decoder when given; else beam search when a beam-search flag is given; else
    the model's default (`model_default_decoder`, from its already read `stored` settings)."""
    if args.decoder is not None:
        return args.decoder
    if any(getattr(args, name, None) is not None for name in BEAM_ONLY_OPTIONS):
        return "beam"
    decoder, note = model_default_decoder(model_path, stored)
    if note:
        print(f"asr: note: {note}", file=sys.stderr)
    return decoder


def build_decoder(args: argparse.Namespace, transcriber) -> None:
    """Swap in the decoder named by --decoder, or the model's default one (`resolve_decoder`);
    `args.decoder` is set to the decoder chosen. The model's `.decode.json` is read once, here."""
    stored = stored_decode_settings(transcriber.loaded.path)
    args.decoder = resolve_decoder(args, transcriber.loaded.path, stored)
    if args.decoder == "greedy":
        ignored = [f"--{name.replace('_', '-')}" for name in BEAM_ONLY_OPTIONS if getattr(args, name, None) is not None]
        if ignored:
            print(f"asr: note: {', '.join(ignored)} only apply to --decoder beam (or hybrid); greedy decoding "
                  "ignores them", file=sys.stderr)
        return
    if args.decoder == "beam":
        from asr.decoding import beam as beam_module
        from asr.decoding.beam import BeamSearchDecoder
        from asr.decoding.lm import load_arpa

        settings = beam_settings(args, stored)
        lm = None
        if settings.lm:
            try:
                lm = load_arpa(settings.lm)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        try:
            transcriber.decoder = BeamSearchDecoder(transcriber.tokenizer, lm=lm, beam_size=settings.beam,
                                                    alpha=settings.alpha, beta=settings.beta,
                                                    lexicon=settings.lexicon, oov_penalty=settings.oov_penalty)
        except ValueError as exc:
            raise UserError(f"beam search: {exc}") from None
        note_first_compile(beam_module.__file__, "_beam_search", "beam search", 25)
        return
    if args.decoder == "hybrid":
        try:
            from asr.hybrid import viterbi as viterbi_module
            from asr.hybrid.decode import build_hybrid_decoder
        except ImportError:
            raise UserError("decoder 'hybrid' is not available in this version (use --decoder greedy or beam)") from None
        transcriber.decoder = build_hybrid_decoder(args, transcriber)
        note_first_compile(viterbi_module.__file__, "_viterbi", "hybrid Viterbi search", 15)
        return
    raise UserError(f"unknown decoder {args.decoder!r}")


def cmd_lm(args: argparse.Namespace) -> int:
    from asr.decoding.lm import cmd_lm_build

    try:
        summary = cmd_lm_build(Path(args.text), args.order, Path(args.out))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(summary))
    return EXIT_OK


def cmd_tune(args: argparse.Namespace) -> int:
    from asr.tune import (DEFAULT_ALPHAS, DEFAULT_BETAS, grid_edge_warnings, parse_grid, parse_oov_grid,
                          save_decode_settings, tune)
    from asr.transcribe import Transcriber

    try:
        alphas, betas = parse_grid(args.alphas, DEFAULT_ALPHAS), parse_grid(args.betas, DEFAULT_BETAS)
        oov_penalties = parse_oov_grid(args.oov_penalties)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not Path(args.lm).is_file():
        raise UserError(f"{args.lm}: language model file not found")
    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    try:
        settings, points = tune(transcriber, args.manifest, args.lm, alphas, betas, beam=args.beam,
                                lexicon=args.lexicon, oov_penalties=oov_penalties)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for point in points[: args.show]:
        oov = "" if oov_penalties == [None] else f"  oov {'unk' if point.oov_penalty is None else f'{point.oov_penalty:g}':>5}"
        print(f"alpha {point.alpha:5.2f}  beta {point.beta:5.2f}{oov}  WER {point.wer:6.2f}%  CER {point.cer:6.2f}%")
    chosen, grids = {"--alphas": settings.alpha, "--betas": settings.beta}, {"--alphas": alphas, "--betas": betas}
    if settings.oov_penalty is not None:  # the numeric penalties form the grid; 'unk' is no end of it
        chosen["--oov-penalties"] = settings.oov_penalty
        grids["--oov-penalties"] = [p for p in oov_penalties if p is not None]
    for line in grid_edge_warnings(chosen, grids, limits={"--alphas": (0.0, None), "--oov-penalties": (0.0, None)}):
        print(line, file=sys.stderr)
    target = transcriber.loaded.path if args.out is None else Path(args.out)
    written = save_decode_settings(target, settings)
    greedy = settings.tuned.get("greedy_wer")
    baseline = f" (greedy {greedy:.2f}%)" if greedy is not None else ""
    oov = "" if settings.oov_penalty is None else f" oov_penalty {settings.oov_penalty:g}"
    print(f"best: alpha {settings.alpha} beta {settings.beta}{oov} beam {settings.beam}: WER {settings.tuned['wer']:.2f}%"
          f"{baseline} on {settings.tuned['utterances']} utterances -> {written}")
    return EXIT_OK


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.audio import AudioError, find_audio_files
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    build_decoder(args, transcriber)
    paths: list[Path] = []
    failed = 0
    for item in args.paths:
        try:
            paths += find_audio_files([item])
        except AudioError as exc:
            error(str(exc))
            failed += 1
    if args.format in DOCUMENT_FORMATS and not args.output_dir and len(paths) > 1:
        raise UserError(f"--format {args.format} writes one subtitle file per input: give --output-dir DIR for these "
                        f"{len(paths)} files")
    extension = EXTENSIONS[args.format]
    if args.output_dir:
        try:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{args.output_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    written: set[Path] = set()
    for result in transcriber.transcribe_files(paths, with_words=args.format != "text"):
        if isinstance(result, Exception):
            error(str(result))
            failed += 1
            continue
        rendered = format_transcript(result, args.format)
        if args.output_dir:
            target = Path(args.output_dir) / f"{Path(result.path).stem}.{extension}"
            if target in written:
                error(f"{result.path}: output {target} was already written for another input with the same name")
                failed += 1
                continue
            try:
                atomic_write_text(target, rendered)
            except OSError as exc:
                error(f"{target}: cannot write ({exc.strerror or exc})")
                failed += 1
                continue
            written.add(target)
        else:
            sys.stdout.write(rendered)
            sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from asr.manifest import read_manifest
    from asr.metrics import error_counts, utterance_errors
    from asr.text import normalize_text, unspellable_characters
    from asr.transcribe import Transcriber

    utterances = read_manifest(args.manifest, check_audio=True)
    unscorable = [u for u in utterances if unspellable_characters(u.text)]
    if unscorable:
        first = unscorable[0]
        print(f"asr: note: {len(unscorable)} reference(s) in {args.manifest} hold characters the model cannot spell, "
              f"dropped before scoring (e.g. {unspellable_characters(first.text)!r} in {first.utt_id}); write "
              "numbers as words", file=sys.stderr)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)  # fail now, not after decoding everything
    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    build_decoder(args, transcriber)
    rows, refs, hyps, failed = [], [], [], 0
    results = transcriber.transcribe_files([u.audio_path for u in utterances], with_words=False)
    for utt, result in zip(utterances, results):
        if isinstance(result, Exception):
            error(str(result))
            failed += 1
            continue
        ref, hyp = normalize_text(utt.text), result.text
        counts = utterance_errors(ref, hyp)
        refs.append(ref)
        hyps.append(hyp)
        rows.append(f"{utt.utt_id}\t{counts['errors']}\t{counts['ref_len']}\t{ref}\t{hyp}")
        print(f"{utt.utt_id}\terrors {counts['errors']}/{counts['ref_len']}\tref: {ref}\thyp: {hyp}")
    if not refs:
        raise UserError(f"{args.manifest}: none of its {len(utterances)} utterances could be decoded; nothing written")
    words, chars = error_counts(refs, hyps, "word"), error_counts(refs, hyps, "char")
    wer = 100 * words["errors"] / max(1, words["ref_len"])
    cer = 100 * chars["errors"] / max(1, chars["ref_len"])
    summary = {"manifest": str(args.manifest), "model": str(transcriber.loaded.path), "decoder": args.decoder,
               "utterances": len(refs), "failed": failed, "wer": wer, "cer": cer, "word_counts": words,
               "char_counts": chars}
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "hyps.tsv", "utt_id\terrors\tref_words\tref\thyp\n" + "\n".join(rows) + "\n")
        atomic_write_text(out / "wer.json", json.dumps(summary, indent=2) + "\n")
    print(f"WER {wer:.2f}% ({words['errors']}/{words['ref_len']}: {words['substitutions']} sub "
          f"{words['deletions']} del {words['insertions']} ins) | CER {cer:.2f}% | {len(refs)} utterances"
          + (f", {failed} failed and not scored" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def read_text_argument(value: str) -> str:
    """The text itself, or the contents of the file it names."""
    try:
        is_file = Path(value).is_file()
    except OSError:  # a long transcript is not a valid file name (ENAMETOOLONG)
        is_file = False
    return Path(value).read_text(encoding="utf-8") if is_file else value


def cmd_align(args: argparse.Namespace) -> int:
    from asr.audio import SAMPLE_RATE, load_audio
    from asr.decoding.align import align_words
    from asr.text import normalize_text, unspellable_characters
    from asr.transcribe import Transcriber, band_cutoff, clamp_words

    text = read_text_argument(args.text)
    dropped = unspellable_characters(text)
    if dropped:
        raise UserError(f"the text holds characters the model cannot spell ({dropped!r}): it spells A-Z and "
                        "apostrophes, so write numbers and other scripts as words (98 → NINETY EIGHT)")
    if not normalize_text(text):
        raise UserError("the text holds no word to align")
    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    wave = load_audio(args.audio)
    log_probs, lengths = transcriber.log_probs([wave], [band_cutoff(args.audio)])
    try:
        words = align_words(log_probs[0, : lengths[0]], text, transcriber.tokenizer, transcriber.frame_shift_s)
    except ValueError as exc:
        raise UserError(f"{args.audio}: cannot align text ({exc})") from None
    words = clamp_words(words, len(wave) / SAMPLE_RATE)
    for word in words:
        print(json.dumps({"word": word.word, "start": round(word.start, 3), "end": round(word.end, 3),
                          "conf": round(word.conf, 3)}))
    return EXIT_OK


def config_task(path: str) -> str:
    """The `task:` key of a training YAML: ctc (default), hybrid or autoencoder."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where} ({problem})") from None
    task = raw.get("task", "ctc") if isinstance(raw, dict) else "ctc"
    if task not in TRAIN_TASKS:
        raise UserError(f"{path}: unknown task {task!r} (expected one of {', '.join(TRAIN_TASKS)})")
    return task


# task → module whose `train_from_args(args) -> int` handles `asr train` for that kind of model.
TRAIN_TASKS = {"ctc": None, "hybrid": "asr.hybrid.train", "autoencoder": "asr.search.train"}


def cmd_train(args: argparse.Namespace) -> int:
    from asr.train import TrainConfig, train

    module = TRAIN_TASKS[config_task(args.config)]
    if module is not None:
        return importlib.import_module(module).train_from_args(args)
    config = TrainConfig.from_yaml(args.config, args.set or ())
    if args.out_dir:
        config.out_dir = args.out_dir
    final = train(config, resume=args.resume, stop_after_epochs=args.stop_after, device=args.device)
    print(final)
    return EXIT_OK


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint file (default: the bundled model)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")


def add_decoder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decoder", choices=["greedy", "beam", "hybrid"],
                        help="default: beam search with the model's tuned LM settings when it ships them (its "
                        ".decode.json, as the bundled model does) or when a beam flag below is given; else greedy")
    beam = parser.add_argument_group("beam search (--decoder beam)")
    beam.add_argument("--lm", help="word n-gram LM in ARPA format (plain or .gz) for shallow fusion; 'none' for "
                      "no LM (default: the LM in the model's .decode.json, e.g. the bundled one)")
    beam.add_argument("--beam", type=int, help="beam width (default: the model's .decode.json, else 16)")
    beam.add_argument("--alpha", type=float, help="LM weight (default: tuned value, else 0.5)")
    beam.add_argument("--beta", type=float, help="word insertion bonus (default: tuned value, else 1.0)")
    beam.add_argument("--lexicon", action=argparse.BooleanOptionalAction, default=None,
                      help="only output words in the LM's vocabulary (default: tuned value, else off)")
    beam.add_argument("--oov-penalty", type=float, help="open vocabulary: a word the LM does not know costs this much "
                      "(natural log, before beta) instead of alpha·ln P(<unk>) (default: tuned value, else the LM's <unk>)")
    from asr.hybrid.options import add_hybrid_args

    add_hybrid_args(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="BiLSTM-CTC speech recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories (walked recursively)")
    add_model_args(p)
    add_decoder_args(p)
    p.add_argument("--format", choices=list(EXTENSIONS), default="text",
                   help="text: path<TAB>text; jsonl: text, duration and timed words; srt/vtt: subtitles (one file "
                        "per input); ctm: one line per timed word (NIST/Kaldi scoring)")
    p.add_argument("--output-dir", help="write one file per input here (atomically) instead of stdout")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("decode", help="decode a manifest and score WER/CER")
    add_model_args(p)
    add_decoder_args(p)
    p.add_argument("--manifest", required=True, help="TSV manifest with reference text")
    p.add_argument("--out", help="folder for hyps.tsv and wer.json")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("tune", help="grid-search LM weight / word bonus on a dev set, save them next to the model")
    add_model_args(p)
    p.add_argument("--manifest", required=True, help="dev TSV manifest (speakers not used in training)")
    p.add_argument("--lm", required=True, help="word n-gram LM (ARPA, plain or .gz)")
    p.add_argument("--beam", type=int, default=16, help="beam width (default 16)")
    p.add_argument("--lexicon", action="store_true", help="tune the lexicon-constrained mode")
    p.add_argument("--alphas", help="LM weights: 'a,b,c' or 'start:stop:step' (default 0:3:0.25)")
    p.add_argument("--betas", help="word bonuses, same syntax (default -4:4:0.5; write --betas=-4:4:0.5, since a value "
                   "starting with '-' would read as an option)")
    p.add_argument("--oov-penalties", help="also tune the open-vocabulary OOV word cost: 'unk,2,4,…' or "
                   "'start:stop:step' ('unk' = the LM's <unk> score; default: only that)")
    p.add_argument("--out", help="write settings for this model path instead (default: next to --model)")
    p.add_argument("--show", type=int, default=5, help="print the best N grid points (default 5)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("align", help="CTC forced alignment of a transcript to audio")
    p.add_argument("audio")
    p.add_argument("text", help="the transcript, or a file holding it")
    add_model_args(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("lm", help="n-gram language models")
    lm_sub = p.add_subparsers(dest="lm_command", required=True)
    p = lm_sub.add_parser("build", help="estimate a modified Kneser-Ney n-gram LM and write it as ARPA")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--text", required=True, help="training text, one sentence per line (.gz ok), or a manifest "
                   "TSV (its text column)")
    p.add_argument("-o", "--out", required=True, help="output ARPA file (.gz to compress)")
    p.set_defaults(func=cmd_lm)

    p = sub.add_parser("train", help="train an acoustic model from a YAML config")
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--out-dir", help="override the config's out_dir")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one setting, e.g. --set model.hidden_size=256 --set seed=1 (repeatable)")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs in this run (resume later)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_train)

    for module in EXTRA_COMMANDS:
        importlib.import_module(module).add_parsers(sub)
    return parser


# Modules that register more sub-commands through `add_parsers(subparsers)`.
EXTRA_COMMANDS: list[str] = ["asr.search.cli", "asr.model_cli"]


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input', reported in one line."""
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError
    from asr.manifest import ManifestError
    from asr.train import ConfigError, TrainingDataError
    from asr.transcribe import ModelNotFoundError

    return (UserError, AudioError, CheckpointError, ManifestError, ModelNotFoundError, TrainingDataError, ConfigError,
            FileNotFoundError)


def check_device(name: str | None) -> None:
    """Refuse a `--device` this machine cannot use, in one line, before any work starts."""
    if name is None:
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (expected cpu, cuda or cuda:N)") from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise UserError(f"--device {name}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        check_device(getattr(args, "device", None))
        return handler(args)
    except user_error_types() as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # an output that cannot be written (read-only folder, a file in the way, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
