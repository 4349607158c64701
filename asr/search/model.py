"""Sequence-to-sequence audio-segment autoencoder (Audio Word2Vec, Chung et al. 2016) and its losses.

An LSTM (optionally bidirectional) encoder reads a segment's frames; its final states (and the
mean of its outputs) are projected to a fixed-size embedding; an LSTM decoder that sees only the
embedding at every step reconstructs the frames. Training variants (see asr/search/train.py):

- plain:          reconstruct the input.
- denoising:      zero-mask input frames (`mask_prob`), reconstruct the clean input.
- correspondence: reconstruct *another* recording of the same word (preferably another speaker).
- contrastive:    a supervised contrastive loss on the embeddings (same word = positive), with the
                  reconstruction loss kept as a regulariser (`recon_weight`).

Search compares L2-normalised embeddings by cosine similarity.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.checkpoint import CheckpointError, atomic_torch_save, load_verified

FORMAT = "asr-search-model-v1"


@dataclass
class AutoencoderConfig:
    """Architecture of `SegmentAutoencoder`; stored in its checkpoint."""

    input: str = "am"  # mfcc | logmel | am (see asr/search/features.py)
    input_dim: int = 640
    hidden_size: int = 256  # encoder, per direction
    num_layers: int = 2
    bidirectional: bool = True
    embed_dim: int = 128
    decoder_hidden: int = 256
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AutoencoderConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def length_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) lengths → (B, T) bool, True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


class SegmentAutoencoder(nn.Module):
    """Variable-length segment (B, T, D) → embedding (B, E) → reconstruction (B, T_out, D)."""

    mean: torch.Tensor  # buffers registered in __init__
    inv_std: torch.Tensor

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("mean", torch.zeros(c.input_dim))
        self.register_buffer("inv_std", torch.ones(c.input_dim))
        self.encoder = nn.LSTM(c.input_dim, c.hidden_size, num_layers=c.num_layers, batch_first=True,
                               bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0)
        directions = 2 if c.bidirectional else 1
        self.to_embed = nn.Linear(2 * directions * c.hidden_size, c.embed_dim)  # [final states; mean output]
        self.decoder = nn.LSTM(c.embed_dim + 1, c.decoder_hidden, batch_first=True)
        self.to_frame = nn.Linear(c.decoder_hidden, c.input_dim)
        self.dropout = nn.Dropout(c.dropout)

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Global input normalisation from training frames: (D,) mean and standard deviation."""
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp_min(1e-4))

    def normalize(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) raw features → normalised, padding kept at 0."""
        return (feats - self.mean) * self.inv_std * length_mask(lengths, feats.shape[1])[..., None]

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """(B, T, D) features, (B,) lengths → (B, E) embeddings (not L2-normalised)."""
        x = feats if normalized else self.normalize(feats, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, dirs·H)
        directions = 2 if self.config.bidirectional else 1
        final = h_n[-directions:].transpose(0, 1).reshape(x.shape[0], -1)  # (B, dirs·H) last layer
        mean = out.sum(1) / lengths[:, None].to(out)  # (B, dirs·H)
        return self.to_embed(self.dropout(torch.cat([final, mean], dim=-1)))  # (B, E)

    def reconstruct(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, E) embeddings → (B, max(lengths), D) frames; the decoder sees z and its relative position."""
        frames = int(lengths.max())
        position = torch.arange(frames, device=z.device)[None, :] / lengths[:, None].clamp_min(1).to(z)  # (B, T)
        inputs = torch.cat([z[:, None, :].expand(-1, frames, -1), position[..., None]], dim=-1)  # (B, T, E+1)
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.decoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=frames)  # (B, T, H_dec)
        return self.to_frame(out)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over valid frames and dimensions. pred, target (B, T, D)."""
    mask = length_mask(lengths, target.shape[1])[..., None].to(pred)  # (B, T, 1)
    return ((pred - target).pow(2) * mask).sum() / (mask.sum() * target.shape[2]).clamp_min(1)


def contrastive_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on (B, E) embeddings with (B,) word labels.

    Each item's positives are the other items with its label; items without a positive are skipped.
    """
    z = nn.functional.normalize(z, dim=-1)
    logits = z @ z.T / temperature  # (B, B)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)  # (B, B)
    positive = (labels[:, None] == labels[None, :]) & ~eye  # (B, B)
    count = positive.sum(1)
    keep = count > 0
    if not keep.any():
        return z.sum() * 0.0
    per_item = -(log_prob.masked_fill(~positive, 0.0).sum(1)[keep] / count[keep])
    return per_item.mean()


def mask_frames(feats: torch.Tensor, prob: float) -> torch.Tensor:
    """Denoising input: zero each (B, T, D) frame with probability `prob` (normalised features)."""
    if prob <= 0:
        return feats
    keep = torch.rand(feats.shape[:2], device=feats.device) >= prob  # (B, T)
    return feats * keep[..., None]


def save_search_model(path: str | Path, model: SegmentAutoencoder, info: dict) -> None:
    """Write a self-describing search model (weights + config + info) atomically."""
    atomic_torch_save({"format": FORMAT, "config": model.config.to_dict(),
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       "info": info}, path)


def load_search_model(path: str | os.PathLike) -> tuple[SegmentAutoencoder, dict]:
    """Load a search model for inference (eval mode); CheckpointError names the file on any problem."""
    state = load_verified(path, "search model")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a search model (missing format tag {FORMAT!r}; "
                              "train one with `asr train` and `task: autoencoder`)")
    model = SegmentAutoencoder(AutoencoderConfig.from_dict(state["config"]))
    try:
        model.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({str(exc).splitlines()[0]})") from None
    return model.eval(), state.get("info", {})
