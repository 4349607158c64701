"""The hybrid acoustic model and its assets file.

The hybrid model is the CTC model's BiLSTM encoder with a second, frame-level head that predicts
HMM states (trained with cross-entropy on state labels, :mod:`asr.hybrid.train`). Its forward
returns the CTC log-probs and the state log-posteriors side by side, ``(B, T', V + S)``: the
Viterbi decoder reads the state columns, and the CTC columns trim its word spans to the letters
and give word confidences (:meth:`asr.hybrid.decode.HybridDecoder.decode_words`).

**Assets** (``hybrid.npz``, read with ``allow_pickle=False``): the state head's weights, the
state priors and transition scores (inside the topology), the CTC-label priors for the
"CTC posteriors as emissions" option, the spelling lexicon from the training transcripts, a
fingerprint of the encoder the head was trained on, default decoding scales, and training info.
Everything but the arrays is one JSON string.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.checkpoint import CheckpointError
from asr.fileio import atomic_output
from asr.hybrid.topology import Topology
from asr.model import BiLSTMCTC

FORMAT = "asr-hybrid-v1"


class StateHead(nn.Module):
    """Encoder states (…, D) → HMM-state logits (…, S): one hidden ReLU layer (or linear if hidden = 0)."""

    def __init__(self, input_dim: int, num_states: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_dim, self.num_states, self.hidden = input_dim, num_states, hidden
        if hidden:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, num_states))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, num_states))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden)  # (…, D) -> (…, S)


class HybridModel(nn.Module):
    """CTC encoder + CTC output layer + state head; a drop-in for `BiLSTMCTC` in `Transcriber`."""

    def __init__(self, ctc: BiLSTMCTC, head: StateHead) -> None:
        super().__init__()
        self.ctc = ctc
        self.head = head

    @property
    def config(self):
        return self.ctc.config

    @property
    def cmvn(self):
        return self.ctc.cmvn

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised feats (B, T, D) → [CTC log-probs | state log-posteriors] (B, T', V + S), lengths (B,)."""
        hidden, steps = self.ctc.encode(feats, lengths)  # (B, T', 2H)
        ctc = self.ctc.output(hidden).log_softmax(dim=-1)  # (B, T', V)
        states = self.head(hidden).log_softmax(dim=-1)  # (B, T', S)
        return torch.cat([ctc, states], dim=-1), steps


def encoder_fingerprint(model: BiLSTMCTC) -> str:
    """SHA-256 (first 16 hex digits) of the CTC model's weights as float32: ties a head to its encoder."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class HybridAssets:
    """Everything the hybrid decoder needs beyond the CTC checkpoint (see the module doc)."""

    topology: Topology  # "hmm" topology with estimated transitions
    ctc_topology: Topology  # "ctc" topology for the CTC-posteriors option
    priors: np.ndarray  # (S,) state priors
    ctc_priors: np.ndarray  # (V,) mean CTC posteriors over the training frames
    head_state: dict[str, np.ndarray]  # StateHead weights
    head_config: dict  # input_dim, num_states, hidden
    lexicon: list[str]
    fingerprint: str  # encoder_fingerprint of the CTC model the head was trained on
    decode: dict = field(default_factory=dict)  # default scales per emission kind
    info: dict = field(default_factory=dict)

    def build_head(self) -> StateHead:
        """The trained state head (eval mode)."""
        cfg = self.head_config
        try:
            head = StateHead(cfg["input_dim"], cfg["num_states"], cfg["hidden"], dropout=0.0)
            head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.head_state.items()})
        except (KeyError, RuntimeError) as exc:  # weights that do not fit the stored head configuration
            raise CheckpointError(f"hybrid assets: state head does not match its configuration ({exc})") from None
        return head.eval()

    def save(self, path: str | os.PathLike) -> None:
        """Write the assets atomically as one .npz (arrays + a JSON string)."""
        meta = {"format": FORMAT, "topology": self.topology.to_dict(), "ctc_topology": self.ctc_topology.to_dict(),
                "head_config": self.head_config, "lexicon": self.lexicon, "fingerprint": self.fingerprint,
                "decode": self.decode, "info": self.info}
        arrays = {"meta": np.array(json.dumps(meta)), "priors": self.priors.astype(np.float64),
                  "ctc_priors": self.ctc_priors.astype(np.float64)}
        arrays.update({f"head/{k}": v.astype(np.float32) for k, v in self.head_state.items()})
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as handle:
                # numpy's stub: mypy matches **arrays against its `allow_pickle: bool` keyword as well
                np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HybridAssets":
        """Read assets written by :meth:`save`; every problem is one CheckpointError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: hybrid assets not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # zipfile.BadZipFile, ValueError, KeyError, OSError, JSONDecodeError
            raise CheckpointError(f"{path}: not readable hybrid assets ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not hybrid assets (missing format tag {FORMAT!r})")
        try:
            return cls(topology=Topology.from_dict(meta["topology"]),
                       ctc_topology=Topology.from_dict(meta["ctc_topology"]),
                       priors=arrays["priors"], ctc_priors=arrays["ctc_priors"],
                       head_state={k[5:]: v for k, v in arrays.items() if k.startswith("head/")},
                       head_config=meta["head_config"], lexicon=list(meta["lexicon"]),
                       fingerprint=meta["fingerprint"], decode=meta.get("decode", {}), info=meta.get("info", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: incomplete hybrid assets ({type(exc).__name__}: {exc})") from None
