"""Train the hybrid model's state head: `asr train --config X.yaml` with `task: hybrid`.

Steps (all logged to OUT_DIR/metrics.jsonl; the result is OUT_DIR/hybrid.npz):

1. Load the CTC model (`init_from`), run its frozen encoder once over the training data and keep
   every utterance's encoder states (T', 2H) and CTC log-probs (T', V) in memory.
2. Frame-level state labels from the CTC forced alignment (:mod:`asr.hybrid.alignments`).
3. Train the state head (:class:`asr.hybrid.model.StateHead`) with frame-level cross-entropy on
   shuffled frames; estimate state priors and transition scores from the labels.
4. `realign` times: re-align the training data with the hybrid model (posteriors ÷ priors as
   emissions, Viterbi over the transcript's state chain), re-estimate priors and transitions and
   train the head again on the new labels.

The encoder stays frozen, so the head matches the bundled CTC model and one forward pass serves
every epoch (minutes on one CPU core). The CTC priors for the "CTC posteriors as emissions" option
are the mean CTC posteriors over the same frames. Config keys (defaults in `HybridTrainConfig`):

    task: hybrid
    out_dir: exp/hybrid
    init_from: asr/pretrained/model.pt
    data: {train: [TSV, ...], dev: {name: TSV}, max_duration: 30, max_batch_seconds: 60}
    topology: {states_per_char: 1, silence: true}
    head: {hidden: 256, dropout: 0.1}
    optim: {epochs: 6, lr: 2.0e-3, batch_frames: 1024, weight_decay: 1.0e-4}
    realign: 1
    decode: {trained: {acoustic_scale: .., prior_scale: ..}, ctc: {...}}   # stored as defaults
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr.checkpoint import load_model
from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.hybrid.alignments import ctc_states_for_utterance, estimate_priors, estimate_transitions, forced_align
from asr.hybrid.model import HybridAssets, StateHead, encoder_fingerprint
from asr.hybrid.topology import Topology
from asr.manifest import Utterance
from asr.model import BiLSTMCTC
from asr.train import TrainingDataError, expand_env, features, load_utterances, log, lr_lambda, read_yaml_config
from asr.features import LogMel
from asr.text import normalize_text

DEFAULT_DECODE = {"trained": {"acoustic_scale": 1.0, "prior_scale": 1.0},
                  "ctc": {"acoustic_scale": 1.0, "prior_scale": 0.5}}


@dataclass
class HybridTrainConfig:
    """The `task: hybrid` YAML."""

    out_dir: str = "exp/hybrid"
    init_from: str = "asr/pretrained/model.pt"
    seed: int = 0
    data: dict = field(default_factory=lambda: {"train": [], "dev": {}, "max_duration": 30.0,
                                                "max_batch_seconds": 60.0})
    topology: dict = field(default_factory=lambda: {"states_per_char": 1, "silence": True})
    head: dict = field(default_factory=lambda: {"hidden": 256, "dropout": 0.1})
    optim: dict = field(default_factory=lambda: {"epochs": 6, "lr": 2.0e-3, "batch_frames": 1024,
                                                 "weight_decay": 1.0e-4})
    realign: int = 1
    decode: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_DECODE)))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> "HybridTrainConfig":
        """Read a `task: hybrid` YAML, then apply `overrides` ("section.key=value", as `asr train --set`)."""
        raw = expand_env(read_yaml_config(path, overrides))
        raw.pop("task", None)
        base = cls()
        unknown = set(raw) - set(asdict(base))
        if unknown:
            raise TrainingDataError(f"{path}: unknown keys {sorted(unknown)} in a hybrid config")
        for key in ("data", "topology", "head", "optim", "decode"):
            merged = dict(getattr(base, key))
            given = raw.pop(key, {}) or {}
            if not isinstance(given, dict):
                raise TrainingDataError(f"{path}: {key} must be a mapping of settings")
            typo = sorted(set(given) - set(merged))
            if typo:
                raise TrainingDataError(f"{path}: unknown setting {key}.{typo[0]} in a hybrid config "
                                        f"(known in {key}: {', '.join(sorted(merged))})")
            merged.update(given)
            setattr(base, key, merged)
        for key, value in raw.items():
            setattr(base, key, value)
        return base


@dataclass
class Corpus:
    """Cached frozen-encoder outputs of a set of utterances."""

    utts: list[Utterance]
    hidden: list[torch.Tensor]  # per utterance (T', 2H) float32
    ctc_log_probs: list[np.ndarray]  # per utterance (T', V)


@torch.no_grad()
def encode_corpus(model: BiLSTMCTC, frontend: LogMel, utts: list[Utterance], tokenizer,
                  max_batch_seconds: float) -> Corpus:
    """One pass of the frozen CTC model over `utts` (no augmentation)."""
    dataset = SpeechDataset(utts, tokenizer, None, cache_audio=False)
    sampler = BucketBatchSampler([u.duration_s for u in utts], max_batch_seconds, 64, shuffle=False)
    hidden: list[torch.Tensor | None] = [None] * len(utts)
    log_probs: list[np.ndarray | None] = [None] * len(utts)
    for indices in sampler:
        batch = collate([dataset.plain_example(i) for i in indices])
        feats, lengths = features(model, frontend, batch)
        states, steps = model.encode(feats, lengths)  # (B, T', 2H)
        ctc = model.output(states).log_softmax(dim=-1)  # (B, T', V)
        for row, i in enumerate(indices):
            n = int(steps[row])
            hidden[i] = states[row, :n].clone()
            log_probs[i] = ctc[row, :n].numpy().astype(np.float32)
    return Corpus(utts, hidden, log_probs)  # type: ignore[arg-type]


def ctc_labels(corpus: Corpus, tokenizer, topology: Topology) -> list[np.ndarray | None]:
    """State labels from the CTC alignment; None where the transcript cannot be aligned."""
    labels: list[np.ndarray | None] = []
    for utt, lp in zip(corpus.utts, corpus.ctc_log_probs):
        try:
            labels.append(ctc_states_for_utterance(lp, utt.text, tokenizer, topology))
        except ValueError:
            labels.append(None)
    return labels


@torch.no_grad()
def state_log_posteriors(head: StateHead, corpus: Corpus) -> list[np.ndarray]:
    """Per utterance (T', S) log p(s | x) from the state head."""
    head.eval()
    return [head(h).log_softmax(dim=-1).numpy() for h in corpus.hidden]


def realign(head: StateHead, corpus: Corpus, topology: Topology, priors: np.ndarray,
            old: list[np.ndarray | None]) -> tuple[list[np.ndarray | None], float]:
    """Viterbi re-alignment with the hybrid model; returns new labels and the fraction of frames that changed."""
    log_prior = np.log(priors)
    labels: list[np.ndarray | None] = []
    changed = total = 0
    for utt, post, prev in zip(corpus.utts, state_log_posteriors(head, corpus), old):
        if prev is None:
            labels.append(None)
            continue
        try:
            new, _ = forced_align(post - log_prior, utt.text, topology)
        except ValueError:
            new = prev
        changed += int(np.count_nonzero(new != prev))
        total += new.size
        labels.append(new)
    return labels, changed / max(1, total)


def frame_set(corpus: Corpus, labels: list[np.ndarray | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack every labelled frame: (N, 2H) inputs and (N,) labels."""
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    x = torch.cat([corpus.hidden[i] for i in keep])  # (N, 2H)
    y = torch.from_numpy(np.concatenate([labels[i] for i in keep]))  # (N,)
    return x, y


def frame_accuracy(head: StateHead, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of frames whose arg-max state is the label."""
    with torch.no_grad():
        head.eval()
        hits = sum(int((head(x[i:i + 8192]).argmax(-1) == y[i:i + 8192]).sum()) for i in range(0, len(y), 8192))
    return hits / max(1, len(y))


def train_head(head: StateHead, x: torch.Tensor, y: torch.Tensor, optim: dict, seed: int,
               dev: tuple[torch.Tensor, torch.Tensor] | None, metrics: list[dict], stage: str) -> None:
    """Frame-level cross-entropy on shuffled frames, AdamW with warm-up + cosine decay."""
    epochs, batch = int(optim["epochs"]), int(optim["batch_frames"])
    opt = torch.optim.AdamW(head.parameters(), lr=float(optim["lr"]), weight_decay=float(optim["weight_decay"]))
    steps_per_epoch = (len(y) + batch - 1) // batch
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, max(1, total // 20), total, 0.02))
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        head.train()
        started = time.time()
        order = torch.randperm(len(y), generator=generator)
        loss_sum = 0.0
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        row = {"kind": "epoch", "stage": stage, "epoch": epoch + 1, "train_loss": loss_sum / len(y),
               "train_frame_acc": frame_accuracy(head, x, y), "seconds": time.time() - started}
        if dev is not None:
            row["dev_frame_acc"] = frame_accuracy(head, *dev)
        metrics.append(row)
        log(json.dumps(row))


def train_hybrid(config: HybridTrainConfig, out_dir: str | None = None) -> Path:
    """Run the whole recipe of the module doc; returns the path of the written hybrid.npz."""
    if not isinstance(config.realign, int) or config.realign < 0:  # else: a late crash (no head) or TypeError
        raise TrainingDataError(f"realign must be a whole number of re-alignment stages (0 or more), "
                                f"got {config.realign!r}")
    torch.manual_seed(config.seed)
    out = Path(out_dir or config.out_dir)
    loaded = load_model(config.init_from)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    frontend = LogMel(loaded.feature_config)
    data = config.data
    utts, dropped = load_utterances(list(data["train"]), float(data["max_duration"]), tokenizer,
                                    model.config.subsampling)
    if not utts:
        raise TrainingDataError("no usable training utterances in " + ", ".join(data["train"]))
    started = time.time()
    corpus = encode_corpus(model, frontend, utts, tokenizer, float(data["max_batch_seconds"]))
    metrics: list[dict] = [{"kind": "encode", "utterances": len(utts), "dropped": dropped,
                            "frames": sum(len(lp) for lp in corpus.ctc_log_probs), "seconds": time.time() - started}]
    log(json.dumps(metrics[-1]))
    dev_corpus = None
    dev_manifests = list((data.get("dev") or {}).values())
    if dev_manifests:
        dev_utts, _ = load_utterances(dev_manifests, float(data["max_duration"]), tokenizer, model.config.subsampling)
        dev_corpus = encode_corpus(model, frontend, dev_utts, tokenizer, float(data["max_batch_seconds"]))

    topology = Topology(kind="hmm", **config.topology)
    labels = ctc_labels(corpus, tokenizer, topology)
    dev_labels = ctc_labels(dev_corpus, tokenizer, topology) if dev_corpus is not None else None
    n_failed = sum(lab is None for lab in labels)
    metrics.append({"kind": "ctc_alignment", "aligned": len(labels) - n_failed, "failed": n_failed})
    log(json.dumps(metrics[-1]))

    head_cfg = {"input_dim": model.output_dim, "num_states": topology.num_states,
                "hidden": int(config.head.get("hidden", 256))}
    priors = estimate_priors([lab for lab in labels if lab is not None], topology.num_states)
    # The head is trained at stage 0; each later stage re-aligns with the previous stage's head, then retrains it.
    head: StateHead | None = None
    for stage in range(config.realign + 1):
        if stage:
            assert head is not None  # trained by the previous stage
            topology = topology.with_transitions(*estimate_transitions([lab for lab in labels if lab is not None],
                                                                       topology.num_states))
            labels, changed = realign(head, corpus, topology, priors, labels)
            if dev_corpus is not None and dev_labels is not None:  # both or neither
                dev_labels, _ = realign(head, dev_corpus, topology, priors, dev_labels)
            priors = estimate_priors([lab for lab in labels if lab is not None], topology.num_states)
            metrics.append({"kind": "realign", "stage": stage, "frames_changed": changed})
            log(json.dumps(metrics[-1]))
        torch.manual_seed(config.seed + stage)
        head = StateHead(head_cfg["input_dim"], head_cfg["num_states"], head_cfg["hidden"],
                         float(config.head.get("dropout", 0.1)))
        x, y = frame_set(corpus, labels)
        dev = frame_set(dev_corpus, dev_labels) if dev_corpus is not None and dev_labels is not None else None
        train_head(head, x, y, config.optim, config.seed + stage, dev, metrics, f"align{stage}")
    assert head is not None  # the loop ran at least stage 0 (realign >= 0)
    topology = topology.with_transitions(*estimate_transitions([lab for lab in labels if lab is not None],
                                                               topology.num_states))
    all_ctc = np.concatenate(corpus.ctc_log_probs)  # (N, V)
    ctc_priors = np.exp(all_ctc.astype(np.float64)).mean(axis=0)  # (V,)
    ctc_priors = np.maximum(ctc_priors / ctc_priors.sum(), 1e-8)
    lexicon = sorted({w for u in utts for w in normalize_text(u.text).split()})
    assets = HybridAssets(
        topology=topology, ctc_topology=Topology(kind="ctc", blank_id=tokenizer.blank_id, space_id=tokenizer.space_id),
        priors=priors, ctc_priors=ctc_priors,
        head_state={k: v.detach().cpu().numpy() for k, v in head.eval().state_dict().items()},
        head_config=head_cfg, lexicon=lexicon, fingerprint=encoder_fingerprint(model), decode=config.decode,
        info={"init_from": str(config.init_from), "train": list(data["train"]), "utterances": len(utts),
              "frames": int(len(all_ctc)), "config": asdict(config), "final": metrics[-1]})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hybrid.npz"
    assets.save(path)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in metrics)
    log(f"wrote {path} ({len(lexicon)} words, {topology.num_states} states, {time.time() - started:.0f} s)")
    return path


def train_from_args(args: argparse.Namespace) -> int:
    """`asr train --config X.yaml` with `task: hybrid` (`--resume` and `--stop-after` do not apply: it is one short run)."""
    config = HybridTrainConfig.from_yaml(args.config, getattr(args, "set", None) or ())
    if getattr(args, "device", None) not in (None, "cpu"):
        log("note: the hybrid head trains on CPU (one frozen-encoder pass, then a small MLP)")
    print(train_hybrid(config, args.out_dir))
    return 0
