"""The acoustic model: frame stacking → stacked BiLSTM (or BiGRU) → linear → log-softmax."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from asr.features import GlobalCMVN


@dataclass
class ModelConfig:
    """Architecture of `BiLSTMCTC`; stored in checkpoints."""

    input_dim: int = 80
    vocab_size: int = 29
    subsampling: int = 3  # frames stacked into one model step
    hidden_size: int = 256  # per direction
    num_layers: int = 3
    dropout: float = 0.2
    projection_size: int = 0  # LSTM output projection per direction (0 = none)
    cell: str = "lstm"  # "lstm" or "gru"
    # subtract each utterance's mean log-mel before the global CMVN; at inference the mean is over each
    # decoded piece (<= 20 s), so a long recording's pauses shift it (RESULTS.md: not used by the bundled model)
    utterance_mean: bool = False
    # with utterance_mean: take the mean over frames within this many dB of the loudest (0 = all frames),
    # so that a piece's pauses do not shift it
    utterance_mean_within_db: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def stack_frames(feats: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate `factor` consecutive frames: (B, T, D) → (B, ceil(T/factor), factor·D).

    Frames past each length must already be zero, so padding never leaks into a real step.
    """
    if factor == 1:
        return feats, lengths
    batch, frames, dim = feats.shape
    pad = (-frames) % factor
    if pad:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, pad))
    stacked = feats.reshape(batch, (frames + pad) // factor, factor * dim)
    return stacked, torch.div(lengths + factor - 1, factor, rounding_mode="floor")


def init_forget_gate_bias(lstm: nn.LSTM, value: float) -> None:
    """Start the forget gates open (bias `value`), which shortens the CTC loss plateau of deep stacks."""
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_ih"):  # gate order: input, forget, cell, output
                hidden = param.shape[0] // 4
                param[hidden : 2 * hidden].fill_(value)
                getattr(lstm, name.replace("bias_ih", "bias_hh"))[hidden : 2 * hidden].fill_(0.0)


RNN_PARAMETER_NAME = re.compile(r"^(?P<kind>\w+)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def split_rnn(rnn: nn.LSTM | nn.GRU, layer: int) -> tuple[nn.LSTM | nn.GRU, nn.LSTM | nn.GRU]:
    """Two stacked RNNs, layers [0, layer) and [layer, num_layers), that share `rnn`'s parameters.

    Running the lower one, inter-layer dropout, then the upper one computes what `rnn` computes,
    and gives access to the output after `layer` layers (intermediate CTC). No weight is copied:
    the halves hold the very Parameter objects of `rnn` (so they sit on its device), and gradients and
    optimiser steps reach it. `rnn` must be bidirectional and batch-first, as in `BiLSTMCTC`.
    """
    if not 0 < layer < rnn.num_layers:
        raise ValueError(f"cannot split a {rnn.num_layers}-layer RNN after layer {layer}")
    rnn_class = type(rnn)
    extra = {"proj_size": rnn.proj_size} if isinstance(rnn, nn.LSTM) and rnn.proj_size else {}
    out_dim = 2 * (rnn.proj_size if extra else rnn.hidden_size)
    lower = rnn_class(rnn.input_size, rnn.hidden_size, num_layers=layer, dropout=rnn.dropout if layer > 1 else 0.0,
                      bidirectional=True, batch_first=True, **extra)
    upper = rnn_class(out_dim, rnn.hidden_size, num_layers=rnn.num_layers - layer,
                      dropout=rnn.dropout if rnn.num_layers - layer > 1 else 0.0, bidirectional=True,
                      batch_first=True, **extra)
    for name, parameter in rnn.named_parameters():
        match = RNN_PARAMETER_NAME.match(name)
        assert match is not None, f"unexpected RNN parameter name {name!r}"  # nn.LSTM/nn.GRU always match
        index = int(match["layer"])
        half, index = (lower, index) if index < layer else (upper, index - layer)
        setattr(half, f"{match['kind']}_l{index}{match['reverse'] or ''}", parameter)  # RNNBase updates its flat weights
    return lower, upper


class BiLSTMCTC(nn.Module):
    """Stacked bidirectional recurrent CTC model over normalised features."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.cmvn = GlobalCMVN(config.input_dim, config.utterance_mean, config.utterance_mean_within_db)
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        extra = {"proj_size": config.projection_size} if config.cell == "lstm" and config.projection_size else {}
        self.rnn = rnn_class(
            input_size=config.input_dim * config.subsampling,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
            **extra,
        )
        if config.cell == "lstm":
            init_forget_gate_bias(self.rnn, 1.0)
        out_dim = 2 * (config.projection_size or config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(out_dim, config.vocab_size)

    @property
    def output_dim(self) -> int:
        """Size of the hidden representation fed to the output layer."""
        return self.output.in_features

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Model steps produced for `lengths` input frames."""
        return torch.div(lengths + self.config.subsampling - 1, self.config.subsampling, rounding_mode="floor")

    def _packed_steps(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[PackedSequence, torch.Tensor, int]:
        """Normalised feats (B, T, D) → stacked model steps packed for the RNN, their lengths (B,) and T'."""
        stacked, step_lengths = stack_frames(feats, lengths, self.config.subsampling)  # (B, T', k·D)
        packed = pack_padded_sequence(stacked, step_lengths.cpu(), batch_first=True, enforce_sorted=False)
        return packed, step_lengths, stacked.shape[1]

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised feats (B, T, D) → hidden states (B, T', 2H) and lengths (B,)."""
        packed, step_lengths, total = self._packed_steps(feats, lengths)
        hidden, _ = self.rnn(packed)
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=total)  # (B, T', 2H)
        return hidden, step_lengths

    def encode_with_intermediate(self, feats: torch.Tensor, lengths: torch.Tensor, layer: int
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like `encode`, plus the hidden states after the first `layer` recurrent layers (B, T', 2H)."""
        lower, upper = self._split_rnn(layer)
        lower.train(self.training)  # outside the module tree, so model.train()/eval() does not reach them
        upper.train(self.training)
        packed, step_lengths, total = self._packed_steps(feats, lengths)
        middle, _ = lower(packed)
        between = torch.nn.functional.dropout(middle.data, self.rnn.dropout, self.training)  # as inside self.rnn
        top, _ = upper(PackedSequence(between, middle.batch_sizes, middle.sorted_indices, middle.unsorted_indices))
        middle, _ = pad_packed_sequence(middle, batch_first=True, total_length=total)  # (B, T', 2H)
        top, _ = pad_packed_sequence(top, batch_first=True, total_length=total)  # (B, T', 2H)
        return top, middle, step_lengths

    def _split_rnn(self, layer: int) -> tuple[nn.Module, nn.Module]:
        """`split_rnn(self.rnn, layer)`, built once per layer; kept outside the module tree so that
        state_dict, parameters() and checkpoints are those of the unsplit model."""
        cache = self.__dict__.setdefault("_split_cache", {})
        if layer not in cache or cache[layer][0].weight_ih_l0 is not self.rnn.weight_ih_l0:  # rebuilt if replaced
            cache[layer] = split_rnn(self.rnn, layer)
        return cache[layer]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, intermediate_layer: int = 0
                ) -> tuple[torch.Tensor, ...]:
        """Normalised feats (B, T, D) → log-probs (B, T', V) and output lengths (B,).

        With `intermediate_layer` k > 0, also the log-probs that the shared output layer gives for the
        hidden states after k recurrent layers (B, T', V), for intermediate CTC (Lee & Watanabe 2021),
        returned as (log-probs, lengths, intermediate log-probs).
        """
        if not intermediate_layer:
            hidden, step_lengths = self.encode(feats, lengths)
            return self.read_out(hidden), step_lengths
        hidden, middle, step_lengths = self.encode_with_intermediate(feats, lengths, intermediate_layer)
        return self.read_out(hidden), step_lengths, self.read_out(middle)

    def read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T', 2H) → log-probs (B, T', V) through dropout and the output layer."""
        return self.output(self.dropout(hidden)).log_softmax(dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def phase_offsets(subsampling: int) -> list[int]:
    """Frame offsets of the stacking phases, centred on 0: ×3 → [-1, 0, 1], ×2 → [-1, 0], ×1 → [0]."""
    return list(range(-(subsampling // 2), subsampling - subsampling // 2))


def shift_frames(feats: torch.Tensor, lengths: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the stacking phase by `offset` frames: (B, T, D) → (B, T - offset, D), lengths - offset.

    A negative offset repeats each utterance's first frame -offset times in front (steps start earlier);
    a positive one drops the first `offset` frames. Frames past each new length stay zero, as
    `stack_frames` needs. Lengths are clamped to at least 1 (an utterance that short gets a zero frame).
    """
    if offset < 0:
        shifted = torch.cat([feats[:, :1].expand(-1, -offset, -1), feats], dim=1)
    else:
        shifted = feats[:, offset:]
    return shifted, (lengths - offset).clamp_min(1)


@torch.no_grad()
def phase_averaged_log_probs(model: BiLSTMCTC, feats: torch.Tensor, lengths: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised feats (B, T, D) → log-probs (B, T', V) averaged over the frame-stacking phases, lengths (B,).

    The model runs once per offset of `phase_offsets` (×3 stacking: steps 10 ms earlier, as is, 10 ms
    later). Step t of every phase covers nearly the same 30 ms, so per step the probability vectors of
    the phases that have step t are averaged: log(mean_p exp(log_probs_p)). T' and lengths are those of
    the unshifted input, so the output drops in wherever `model(feats, lengths)` was used.
    """
    log_probs, step_lengths = model(feats, lengths)  # (B, T', V), (B,)
    total, count = log_probs.exp(), torch.ones_like(log_probs[..., :1])  # (B, T', V), (B, T', 1)
    steps = torch.arange(log_probs.shape[1], device=feats.device)[None, :]  # (1, T')
    for offset in phase_offsets(model.config.subsampling):
        if offset == 0:
            continue
        shifted, shifted_lengths = shift_frames(feats, lengths, offset)
        if shifted.shape[1] == 0:  # every utterance is too short for this phase
            continue
        phase, phase_lengths = model(shifted, shifted_lengths)  # (B, T'', V), T'' within T' ± 1
        usable = min(phase.shape[1], log_probs.shape[1])
        valid = (steps[:, :usable] < torch.minimum(phase_lengths, step_lengths)[:, None])  # (B, usable)
        valid &= (lengths > offset)[:, None]  # an utterance of <= offset frames has no such phase
        weight = valid[..., None].to(log_probs.dtype)  # (B, usable, 1)
        total[:, :usable] += phase[:, :usable].exp() * weight
        count[:, :usable] += weight
    return (total / count).clamp_min(torch.finfo(log_probs.dtype).tiny).log(), step_lengths
