"""Greedy (best-path) CTC decoding: argmax per frame, collapse repeats, drop blanks.

Everything runs as batched torch ops; the only Python loop is over utterances when the
ragged result lists are built.
"""

from __future__ import annotations

import torch


def _kept_frames(log_probs: torch.Tensor, lengths: torch.Tensor | None, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-path ids and the mask of frames that emit a token.

    A frame emits when its argmax differs from the previous frame's argmax (repeats collapse),
    is not the blank, and lies inside the utterance's valid length.

    Returns `(ids, keep)`, both (B, T): long ids and a bool mask.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    batch, frames, _ = log_probs.shape
    ids = log_probs.argmax(dim=-1)  # (B, T, V) -> (B, T)
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long, device=ids.device)
    lengths = lengths.to(ids.device).long()
    valid = torch.arange(frames, device=ids.device)[None, :] < lengths[:, None]  # (B, T)
    # Previous frame's id; -1 before the first frame so frame 0 always counts as a new run.
    prev = torch.cat([ids.new_full((batch, 1), -1), ids[:, :-1]], dim=1)  # (B, T)
    keep = (ids != prev) & (ids != blank) & valid  # (B, T)
    return ids, keep


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best-path CTC decoding of a padded batch.

    Args:
        log_probs: (B, T, V) per-frame log-probabilities (or any scores; only argmax is used).
        lengths: (B,) number of valid frames per utterance; frames past it are ignored.
            None means every utterance uses all T frames.
        blank: id of the CTC blank.

    Returns:
        One list of token ids per utterance (repeats collapsed, blanks removed).
    """
    ids, keep = _kept_frames(log_probs, lengths, blank)
    ids, keep = ids.cpu(), keep.cpu()
    return [ids[b][keep[b]].tolist() for b in range(ids.shape[0])]


def greedy_tokens_with_frames(
    log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[tuple[list[int], list[int]]]:
    """Like :func:`greedy_decode`, plus the frame where each emitted token starts.

    Returns:
        Per utterance a pair `(tokens, frames)` of equal length: `frames[i]` is the first frame
        of the run of identical argmax ids that produced `tokens[i]` (multiply by the model's
        frame shift for a time in seconds).
    """
    ids, keep = _kept_frames(log_probs, lengths, blank)
    ids, keep = ids.cpu(), keep.cpu()
    out: list[tuple[list[int], list[int]]] = []
    for b in range(ids.shape[0]):
        frames = torch.nonzero(keep[b], as_tuple=False).squeeze(1)  # (N,)
        out.append((ids[b][frames].tolist(), frames.tolist()))
    return out
