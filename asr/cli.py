"""The `asr` command (also `python -m asr`): transcribe, decode, align, lm build, train.

User errors (bad paths, unreadable audio, malformed manifests, broken checkpoints) print one
line on stderr and give a non-zero exit code; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def error(message: str) -> None:
    print(f"asr: error: {message}", file=sys.stderr)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def srt_time(seconds: float) -> str:
    """Seconds → `HH:MM:SS,mmm`."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(transcript, max_words: int = 10, max_seconds: float = 6.0) -> str:
    """Group timed words into numbered subtitle cues."""
    cues, current = [], []
    for word in transcript.words:
        if current and (len(current) >= max_words or word.end - current[0].start > max_seconds):
            cues.append(current)
            current = []
        current.append(word)
    if current:
        cues.append(current)
    if not cues and transcript.text:
        return f"1\n{srt_time(0)} --> {srt_time(transcript.duration)}\n{transcript.text}\n"
    blocks = [f"{n}\n{srt_time(c[0].start)} --> {srt_time(c[-1].end)}\n{' '.join(w.word for w in c)}\n"
              for n, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def format_transcript(transcript, fmt: str) -> str:
    """Render one Transcript as text (`path<TAB>text`), one JSON line, or SRT."""
    if fmt == "jsonl":
        return json.dumps(transcript.to_json()) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    return f"{transcript.path}\t{transcript.text}\n"


def build_decoder(args: argparse.Namespace, transcriber) -> None:
    """Swap in the decoder named by --decoder (greedy is the default)."""
    if args.decoder == "greedy":
        return
    if args.decoder == "beam":
        from asr.decoding.beam import BeamSearchDecoder
        from asr.decoding.lm import load_arpa

        lm = None
        if args.lm:
            try:
                lm = load_arpa(args.lm)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        transcriber.decoder = BeamSearchDecoder(transcriber.tokenizer, lm=lm, beam_size=args.beam, alpha=args.alpha,
                                                beta=args.beta, lexicon=args.lexicon)
        return
    raise UserError(f"decoder {args.decoder!r} is not available in this version (use --decoder greedy or beam)")


def cmd_lm(args: argparse.Namespace) -> int:
    from asr.decoding.lm import cmd_lm_build

    try:
        summary = cmd_lm_build(Path(args.text), args.order, Path(args.out))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(summary))
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
    extension = {"text": "txt", "jsonl": "json", "srt": "srt"}[args.format]
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
            atomic_write_text(target, rendered)
            written.add(target)
        else:
            sys.stdout.write(rendered)
            sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from asr.manifest import read_manifest
    from asr.metrics import error_counts, utterance_errors
    from asr.text import normalize_text
    from asr.transcribe import Transcriber

    utterances = read_manifest(args.manifest, check_audio=True)
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
          f"{words['deletions']} del {words['insertions']} ins) | CER {cer:.2f}% | {len(refs)} utterances")
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
    from asr.transcribe import Transcriber, band_cutoff, clamp_words

    transcriber = Transcriber.from_pretrained(args.model, device=args.device)
    text = read_text_argument(args.text)
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


def cmd_train(args: argparse.Namespace) -> int:
    from asr.train import TrainConfig, train

    config = TrainConfig.from_yaml(args.config)
    if args.out_dir:
        config.out_dir = args.out_dir
    final = train(config, resume=args.resume, stop_after_epochs=args.stop_after, device=args.device)
    print(final)
    return EXIT_OK


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint file (default: the bundled model)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")


def add_decoder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decoder", choices=["greedy", "beam", "hybrid"], default="greedy")
    beam = parser.add_argument_group("beam search (--decoder beam)")
    beam.add_argument("--lm", help="word n-gram LM in ARPA format (plain or .gz) for shallow fusion")
    beam.add_argument("--beam", type=int, default=16, help="beam width (default 16)")
    beam.add_argument("--alpha", type=float, default=0.5, help="LM weight (default 0.5)")
    beam.add_argument("--beta", type=float, default=1.0, help="word insertion bonus (default 1.0)")
    beam.add_argument("--lexicon", action="store_true", help="only output words in the LM's vocabulary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="BiLSTM-CTC speech recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories (walked recursively)")
    add_model_args(p)
    add_decoder_args(p)
    p.add_argument("--format", choices=["text", "jsonl", "srt"], default="text")
    p.add_argument("--output-dir", help="write one file per input here (atomically) instead of stdout")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("decode", help="decode a manifest and score WER/CER")
    add_model_args(p)
    add_decoder_args(p)
    p.add_argument("--manifest", required=True, help="TSV manifest with reference text")
    p.add_argument("--out", help="folder for hyps.tsv and wer.json")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("align", help="CTC forced alignment of a transcript to audio")
    p.add_argument("audio")
    p.add_argument("text", help="the transcript, or a file holding it")
    add_model_args(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("lm", help="n-gram language models")
    lm_sub = p.add_subparsers(dest="lm_command", required=True)
    p = lm_sub.add_parser("build", help="estimate a modified Kneser-Ney n-gram LM and write it as ARPA")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--text", required=True, help="training text, one sentence per line (.gz ok)")
    p.add_argument("-o", "--out", required=True, help="output ARPA file (.gz to compress)")
    p.set_defaults(func=cmd_lm)

    p = sub.add_parser("train", help="train an acoustic model from a YAML config")
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--out-dir", help="override the config's out_dir")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs in this run (resume later)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_train)
    return parser


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input', reported in one line."""
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError
    from asr.manifest import ManifestError
    from asr.train import TrainingDataError
    from asr.transcribe import ModelNotFoundError

    return (UserError, AudioError, CheckpointError, ManifestError, ModelNotFoundError, TrainingDataError,
            FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except user_error_types() as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
