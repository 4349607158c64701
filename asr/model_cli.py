"""`asr model info | average | export`: look inside a checkpoint, average several, shrink one for inference."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _first_float_dtype(weights: dict) -> str:
    """The dtype name of the first floating-point tensor (e.g. 'float16' for an exported model)."""
    for tensor in weights.values():
        if tensor.is_floating_point():
            return str(tensor.dtype).removeprefix("torch.")
    return "none"


def _decode_settings_summary(model_path: Path) -> dict | None:
    """What `asr tune` stored next to the model (None if nothing is): beam, weights, LM, what they were tuned on."""
    from asr.tune import load_decode_settings, settings_path

    if not settings_path(model_path).is_file():
        return None
    settings = load_decode_settings(model_path)
    tuned = settings.tuned or {}
    return {"file": settings_path(model_path).name, "beam": settings.beam, "alpha": settings.alpha,
            "beta": settings.beta, "lexicon": settings.lexicon, "oov_penalty": settings.oov_penalty,
            "lm": settings.lm, "tuned_on": tuned.get("manifest"), "tuned_utterances": tuned.get("utterances"),
            "tuned_wer": tuned.get("wer")}


def describe_checkpoint(path: str | os.PathLike) -> dict:
    """Everything a user may want to know about a model file, as plain JSON-able values.

    Raises CheckpointError (one line naming the file) for anything that is not a loadable asr model.
    """
    from asr.checkpoint import model_from_state, read_checkpoint
    from asr.cli import model_default_decoder

    path = Path(path)
    state = read_checkpoint(path)
    loaded = model_from_state(state, path)  # checks that the weights fit the config and are finite
    info = state["info"]
    config: dict = info["config"] if isinstance(info.get("config"), dict) else {}
    data: dict = config["data"] if isinstance(config.get("data"), dict) else {}
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "format": state["format"],
        "weights_dtype": _first_float_dtype(state["state_dict"]),
        "resumable": "training_state" in state,
        "parameters": loaded.model.num_parameters(),
        "model": state["model_config"],
        "features": state["feature_config"],
        "cmvn": "cmvn.mean" in state["state_dict"],
        "symbols": ["<blank>", *loaded.tokenizer.chars],
        "training": {"epoch": info.get("epoch"), "step": info.get("step"), "averaged_from": info.get("averaged_from"),
                     "init_from": config.get("init_from"), "train": data.get("train"), "dev": info.get("dev")},
        "decode_settings": _decode_settings_summary(path),
        "default_decoder": model_default_decoder(path)[0],  # what `asr transcribe --model M` decodes with
    }


def _dev_line(dev: dict) -> str:
    """{'an4': {'wer': 0.15, 'cer': 0.06, ...}, ...} → 'an4 WER 15.00 % CER 6.00 %; ...'."""
    parts = [f"{name} WER {100 * scores['wer']:.2f} % CER {100 * scores['cer']:.2f} %"
             for name, scores in dev.items() if isinstance(scores, dict) and {"wer", "cer"} <= set(scores)]
    return "; ".join(parts)


def format_description(desc: dict) -> str:
    """The human-readable report of `asr model info`, a few aligned lines."""
    model, feats, training = desc["model"], desc["features"], desc["training"]
    rate = feats["sample_rate"]
    projection = model.get("projection_size") or "none"
    lines = [
        f"{desc['path']}: {desc['format']}, {desc['bytes'] / 1e6:.1f} MB, {desc['weights_dtype']} weights, "
        + ("with optimiser state (resumable)" if desc["resumable"] else "inference only"),
        f"model:     Bi{model['cell'].upper()} {model['num_layers']} × {model['hidden_size']} (projection {projection}), "
        f"×{model['subsampling']} frame stacking, dropout {model['dropout']:g}, "
        f"{desc['parameters'] / 1e6:.2f} M parameters",
        f"features:  {feats['n_mels']} log-mel, {1000 * feats['win_length'] / rate:g} ms window / "
        f"{1000 * feats['hop_length'] / rate:g} ms hop at {rate} Hz, {feats['f_min']:g}-{feats['f_max']:g} Hz"
        + (", CMVN statistics stored" if desc["cmvn"] else ""),
        f"output:    {len(desc['symbols'])} symbols: <blank> and {''.join(desc['symbols'][1:])!r}",
    ]
    averaged = training.get("averaged_from") or []
    if averaged:
        lines.append(f"training:  the average of {len(averaged)} checkpoints, {averaged[0]} … {averaged[-1]}")
    elif training.get("epoch") is not None:
        lines.append(f"training:  epoch {training['epoch']}, step {training['step']}")
    if training.get("init_from"):
        lines.append(f"  from:    {training['init_from']}")
    if training.get("train"):
        lines.append(f"  data:    {', '.join(str(t) for t in training['train'])}")
    if training.get("dev") and _dev_line(training["dev"]):
        lines.append(f"  dev:     {_dev_line(training['dev'])}")
    settings = desc["decode_settings"]
    if settings is None:
        lines.append("beam:      no .decode.json next to the model (built-in defaults; `asr tune` writes one)")
    else:
        vocabulary = "lexicon" if settings["lexicon"] else "open vocabulary"
        tuned = (f" (tuned on {settings['tuned_utterances']} utterances of {settings['tuned_on']}: "
                 f"WER {settings['tuned_wer']:.2f} %)" if settings["tuned_wer"] is not None else "")
        lines.append(f"beam:      {settings['file']}: beam {settings['beam']}, alpha {settings['alpha']:g}, "
                     f"beta {settings['beta']:g}, {vocabulary}, LM {settings['lm'] or 'none'}{tuned}")
    lines.append(f"decoder:   {desc['default_decoder']} by default (without --decoder or beam flags)")
    return "\n".join(lines) + "\n"


def cmd_model_info(args: argparse.Namespace) -> int:
    """`asr model info [--json] [MODEL]`."""
    from asr.transcribe import DEFAULT_MODEL

    desc = describe_checkpoint(args.model or DEFAULT_MODEL)
    sys.stdout.write(json.dumps(desc) + "\n" if args.json else format_description(desc))
    return 0


def cmd_model_average(args: argparse.Namespace) -> int:
    """`asr model average -o OUT CKPT...`: the element-wise mean of the weights, written atomically."""
    from asr.checkpoint import atomic_torch_save, average_checkpoints

    averaged = average_checkpoints([Path(p) for p in args.checkpoints])
    atomic_torch_save(averaged, args.out)
    print(f"{args.out}: average of {len(args.checkpoints)} checkpoints", file=sys.stderr)
    return 0


def cmd_model_export(args: argparse.Namespace) -> int:
    """`asr model export SRC -o DST [--float32]`: drop the optimiser state, store float16 weights."""
    from asr.checkpoint import export_for_inference

    export_for_inference(args.checkpoint, args.out, half=not args.float32)
    print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `model info`, `model average` and `model export` on the `asr` command's sub-parsers."""
    p = sub.add_parser("model", help="inspect, average or export acoustic model checkpoints")
    model_sub = p.add_subparsers(dest="model_command", required=True)
    p = model_sub.add_parser("info", help="architecture, features, training data and dev scores, decode settings")
    p.add_argument("model", nargs="?", help="model file (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_model_info)
    p = model_sub.add_parser("average", help="average the weights of checkpoints of one model (e.g. the last epochs)")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("-o", "--out", required=True, help="output model file (written atomically)")
    p.set_defaults(func=cmd_model_average)
    p = model_sub.add_parser("export", help="strip the optimiser state and halve the weights for inference")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--out", required=True, help="output model file (written atomically)")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    p.set_defaults(func=cmd_model_export)
