"""One self-describing file per model: config, weights, tokenizer, features, training info.

Files are written atomically and read with `torch.load(weights_only=True)`, so loading a
checkpoint never runs pickled code.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.fileio import atomic_output
from asr.features import FeatureConfig
from asr.model import BiLSTMCTC, ModelConfig
from asr.text import CharTokenizer

FORMAT = "asr-checkpoint-v1"
REQUIRED_KEYS = {"model_config": dict, "state_dict": dict, "tokenizer": dict, "feature_config": dict, "info": dict}


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or not ours; the message names it."""


@dataclass
class LoadedModel:
    """A model ready for inference plus everything needed to feed it."""

    model: BiLSTMCTC
    tokenizer: CharTokenizer
    feature_config: FeatureConfig
    info: dict
    path: Path


def atomic_torch_save(obj: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def build_state(model: BiLSTMCTC, tokenizer: CharTokenizer, feature_config: FeatureConfig, info: dict,
                training_state: dict | None = None) -> dict:
    """The dictionary stored on disk (only tensors and plain Python values)."""
    state = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": tokenizer.to_dict(),
        "feature_config": feature_config.to_dict(),
        "info": info,
    }
    if training_state is not None:
        state["training_state"] = training_state
    return state


ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes begins


def verify_archive(path: Path, what: str = "checkpoint") -> None:
    """Check the CRC-32 of every member of a zip-format checkpoint (torch.load does not).

    A flipped bit inside the weights otherwise loads silently as a slightly different model.
    An empty file, or one that does not start like a zip archive, is not a `what` at all: said in one line.
    A damaged archive is left to torch.load to reject.
    """
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not magic:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a {what}")
    if magic != ZIP_MAGIC:
        raise CheckpointError(f"{path}: not a {what} file (not a PyTorch zip archive)")
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({str(exc)[:200]})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupted checkpoint (checksum mismatch in {bad.split('/')[-1]!r})")


def load_verified(path: str | os.PathLike, what: str = "checkpoint"):
    """torch.load (weights only) of a file whose zip CRCs were checked first; every failure becomes a
    one-line CheckpointError naming the file and `what` it should have been."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    verify_archive(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupted {what} ({reason})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load the raw dictionary safely, turning every failure into a one-line CheckpointError."""
    state = load_verified(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an asr checkpoint (missing format tag {FORMAT!r})")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{path}: incomplete checkpoint ({key!r} missing or not a {kind.__name__})")
    return state


def training_state(state: dict, path: Path | str) -> dict:
    """The optimiser/scheduler state stored for `--resume`; CheckpointError if absent or malformed."""
    training = state.get("training_state")
    if not isinstance(training, dict) or not all(isinstance(training.get(k), dict) for k in ("optimizer", "scheduler")):
        raise CheckpointError(f"{path}: has no training state to resume from (an exported or averaged model?)")
    info = state["info"]
    try:
        int(info["epoch"]), int(info["step"]), float(info["best_wer"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: training info (epoch, step, best_wer) missing or malformed") from None
    return training


def model_from_state(state: dict, path: Path | str = "<memory>") -> LoadedModel:
    """Rebuild the model (float32, eval mode) from a checkpoint dictionary."""
    try:
        config = ModelConfig.from_dict(state["model_config"])
        model = BiLSTMCTC(config)
        tokenizer = CharTokenizer.from_dict(state["tokenizer"])
        feature_config = FeatureConfig(**state["feature_config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed model description ({type(exc).__name__}: {str(exc)[:150]})") from None
    weights = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
               for k, v in state["state_dict"].items()}
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: weights do not fit the stored config ({reason})") from None
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: non-finite weights in {bad[0]} (a diverged training run?)")
    model.eval()
    return LoadedModel(model, tokenizer, feature_config, state.get("info", {}), Path(path))


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a checkpoint file for inference."""
    return model_from_state(read_checkpoint(path), Path(path))


def average_checkpoints(paths: list[Path]) -> dict:
    """Element-wise mean of the weights of several checkpoints of one model (first one's metadata).

    CheckpointError if there are none, or if one differs from the first in architecture or symbols.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    states = [read_checkpoint(p) for p in paths]
    for path, state in zip(paths[1:], states[1:]):
        for key in ("model_config", "tokenizer", "feature_config"):
            if state[key] != states[0][key]:
                raise CheckpointError(f"{path}: its {key.replace('_', ' ')} differs from {paths[0]}'s: "
                                      "only checkpoints of one model can be averaged")
    averaged = dict(states[0])
    averaged.pop("training_state", None)
    mean: dict[str, torch.Tensor] = {}
    for key, first in states[0]["state_dict"].items():
        if first.is_floating_point():
            mean[key] = sum(s["state_dict"][key].double() for s in states).div(len(states)).to(first.dtype)
        else:
            mean[key] = first
    averaged["state_dict"] = mean
    averaged["info"] = {**states[0].get("info", {}), "averaged_from": [p.name for p in paths]}
    return averaged


def export_for_inference(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> None:
    """Strip optimizer state and (optionally) store weights as float16 to halve the file size."""
    state = read_checkpoint(src)
    state.pop("training_state", None)
    if half:
        state["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    atomic_torch_save(state, dst)
