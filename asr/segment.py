"""Long recordings: energy-based voice activity detection and cutting into model-sized pieces.

A BiLSTM needs its whole input at once, and the models here are trained on single utterances
(up to 30 s), so a recording longer than `whole_file_s` is cut into utterance-like pieces while
it streams in; memory stays bounded by about `max_chunk_s` of audio whatever the file's length.

1. Frame energies (25 ms windows, 10 ms hop) in dB full scale. A frame is speech when it is
   louder than max(`floor_db`, noise floor + `margin_db`); the noise floor is the 10th percentile
   of the frames above `floor_db` in the last `noise_window_s`.
2. Speech runs closer than `min_silence_s` are merged into one region; regions shorter than
   `min_speech_s` are dropped (clicks); each region is padded by `pad_s` of real audio.
   Silence between regions is never decoded (models hallucinate words in long silence).
3. A region longer than `max_chunk_s` is cut at the centre of the longest pause of at least
   `min_pause_s` in the second half of the chunk. Without such a pause it is cut at `max_chunk_s`
   and the next piece starts `overlap_s` earlier; each word of the overlap is then taken from
   the piece on whose side of the overlap's midpoint the word's centre lies (`stitch_words`).

A file no longer than `whole_file_s` is one piece, exactly as before (no trimming), unless it
holds not even 30 ms louder than `floor_db + margin_db` (−60 dBFS): then there is nothing to
decode (digital silence, a faint hiss, a one-sample file) and its transcript is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from asr.audio import HOP_LENGTH, SAMPLE_RATE, WIN_LENGTH
from asr.decoding.align import WordSpan


SHORT_FILE_MIN_LOUD_FRAMES = 3  # a file up to whole_file_s is decoded if 30 ms of it are loud


@dataclass(frozen=True)
class SegmentConfig:
    """Voice activity and chunking settings (seconds and dB)."""

    max_chunk_s: float = 20.0  # longest piece handed to the model
    overlap_s: float = 2.0  # overlap of two pieces cut inside speech
    whole_file_s: float = 30.0  # files up to this long are decoded whole
    min_silence_s: float = 0.5  # a pause this long ends a speech region
    min_speech_s: float = 0.1  # shorter bursts are not speech
    min_pause_s: float = 0.1  # shortest pause a long region may be cut at
    pad_s: float = 0.3  # real audio kept around each region
    margin_db: float = 10.0  # speech is this much louder than the noise floor
    floor_db: float = -70.0  # frames quieter than this are never speech
    noise_window_s: float = 120.0  # the noise floor follows the last this-many seconds

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_s < self.max_chunk_s / 2:
            raise ValueError("overlap_s must lie in [0, max_chunk_s / 2)")
        if self.max_chunk_s > self.whole_file_s or self.pad_s < 0 or self.min_silence_s <= 0:
            raise ValueError("need max_chunk_s <= whole_file_s, pad_s >= 0 and min_silence_s > 0")


@dataclass(frozen=True)
class Span:
    """Where a piece lies in its recording: samples [start, end) at 16 kHz.

    Words whose centre lies in [keep_start, keep_end) seconds (global) belong to this piece;
    the range is narrower than the piece only where it overlaps a neighbour.
    """

    start: int
    end: int
    keep_start: float
    keep_end: float
    speech: tuple[float, float] | None = None  # voice-active stretch (s); word times are kept inside it

    @property
    def offset_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def overlaps(self) -> bool:
        """Whether some of this piece's audio also belongs to a neighbouring piece."""
        return self.keep_start > self.start / SAMPLE_RATE or self.keep_end < self.end / SAMPLE_RATE


@dataclass(frozen=True)
class Piece:
    """A stretch of a recording to decode: its samples and its `Span`."""

    start: int
    wave: np.ndarray  # (N,) float32
    keep_start: float
    keep_end: float
    speech: tuple[float, float] | None = None  # voice-active stretch (s, global); None: the whole piece

    @property
    def span(self) -> Span:
        """The piece without its samples (what stitching needs, kept after decoding)."""
        return Span(self.start, self.start + len(self.wave), self.keep_start, self.keep_end, self.speech)

    @property
    def end(self) -> int:
        return self.start + len(self.wave)

    @property
    def offset_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def overlaps(self) -> bool:
        return self.span.overlaps


def frame_db(wave: np.ndarray, pad_end: bool = False) -> np.ndarray:
    """(N,) samples → (F,) mean-square energy in dB of 25 ms frames every 10 ms.

    Frame f covers samples [f·hop, f·hop + win). Without `pad_end` only whole frames are
    returned; with it, the signal is zero-padded so that every sample is in some frame.
    """
    n = len(wave)
    count = (max(0, n - WIN_LENGTH) // HOP_LENGTH + 1) if n >= WIN_LENGTH else 0
    if pad_end:
        count = -(-n // HOP_LENGTH)  # ceil: the last frames run past the end, padded with zeros
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    squares = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])  # (N + 1,)
    starts = np.arange(count) * HOP_LENGTH  # (F,)
    ends = np.minimum(starts + WIN_LENGTH, n)
    energy = (squares[ends] - squares[starts]) / WIN_LENGTH  # (F,)
    return (10.0 * np.log10(np.maximum(energy, 1e-10))).astype(np.float32)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F,) bool → start and end (exclusive) frame indices of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def speech_regions(mask: np.ndarray, min_speech: int, min_silence: int) -> tuple[np.ndarray, np.ndarray]:
    """Speech runs (frames) with gaps under `min_silence` closed, then regions under `min_speech` dropped.

    Merging first keeps a short syllable near other speech; only an isolated burst (a click) is dropped.
    """
    starts, ends = runs(mask)
    if len(starts) == 0:
        return starts, ends
    new_region = np.concatenate([[True], starts[1:] - ends[:-1] >= min_silence])  # (R,)
    last_of_region = np.concatenate([new_region[1:], [True]])
    starts, ends = starts[new_region], ends[last_of_region]
    keep = ends - starts >= min_speech
    return starts[keep], ends[keep]


class Segmenter:
    """Cut a stream of 16 kHz blocks into `Piece`s (feed blocks, then `finish`).

    The buffer holds at most about max_chunk_s + one block + pad_s + min_silence_s of audio.
    """

    def __init__(self, config: SegmentConfig | None = None) -> None:
        self.config = c = config or SegmentConfig()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0  # global sample index of buffer[0], a multiple of HOP_LENGTH
        self.next_start = 0  # no piece starts before this sample
        self.keep_from: float | None = None  # keep_start of the next piece after a cut inside speech
        self.streaming = False  # True once the file is known to be longer than whole_file_s
        self.history = np.zeros(0, dtype=np.float32)  # dB of the last noise_window_s of whole frames
        self.frames_seen = 0  # global index of the first frame not yet in `history`
        self.max_buffered = 0  # largest buffer so far, in samples (for tests and benchmarks)
        self.region_speech = (0, 0)  # voice-active samples [first, last) of the region being cut
        self._frames = {name: max(1, round(getattr(c, name) * SAMPLE_RATE / HOP_LENGTH))
                        for name in ("min_speech_s", "min_silence_s", "min_pause_s", "noise_window_s")}

    @property
    def total_samples(self) -> int:
        """Samples fed so far."""
        return self.buffer_start + len(self.buffer)

    def feed(self, block: np.ndarray) -> list[Piece]:
        """Add (n,) samples; return the pieces that are now final."""
        self.buffer = np.concatenate([self.buffer, block.astype(np.float32, copy=False)])
        self.max_buffered = max(self.max_buffered, len(self.buffer))
        if not self.streaming:
            if self.total_samples <= self.config.whole_file_s * SAMPLE_RATE:
                return []
            self.streaming = True
        return self._process(final=False)

    def finish(self) -> list[Piece]:
        """End of stream: the remaining pieces (a short file is one piece, or none if silent)."""
        if self.streaming:
            return self._process(final=True)
        if self.total_samples == 0:
            return []
        # A short file has too few pauses for a noise floor (a tightly trimmed word is all speech),
        # so only the absolute level counts: is any 30 ms louder than floor_db + margin_db?
        db = frame_db(self.buffer, pad_end=True)
        starts, ends = runs(db > self.config.floor_db + self.config.margin_db)
        if not np.any(ends - starts >= SHORT_FILE_MIN_LOUD_FRAMES):
            return []
        return [Piece(0, self.buffer, 0.0, self.total_samples / SAMPLE_RATE)]

    # --- internals -------------------------------------------------------------------------------

    def _threshold(self, db: np.ndarray) -> float:
        """Speech threshold in dB from the noise floor of the recent frames (and `db` if none yet)."""
        floor = self.config.floor_db
        recent = self.history if len(self.history) else db
        recent = recent[recent > floor]  # digital silence (edited gaps) says nothing about the noise
        noise = float(np.percentile(recent, 10)) if len(recent) else floor
        return max(floor, noise + self.config.margin_db)

    def _remember(self, db: np.ndarray, first_frame: int) -> None:
        """Append the whole frames not seen before to the noise history (a sliding window)."""
        new = db[max(0, self.frames_seen - first_frame):]
        self.frames_seen = first_frame + len(db)
        self.history = np.concatenate([self.history, new])[-self._frames["noise_window_s"]:]

    def _process(self, final: bool) -> list[Piece]:
        """Find regions in the buffer, emit every piece that cannot change any more, trim the buffer."""
        c = self.config
        first_frame = self.buffer_start // HOP_LENGTH
        db = frame_db(self.buffer, pad_end=final)  # (F,)
        whole = frame_db(self.buffer) if final else db
        self._remember(whole, first_frame)
        threshold = self._threshold(db)
        speech = db > threshold  # (F,)
        starts, ends = speech_regions(speech, self._frames["min_speech_s"], self._frames["min_silence_s"])
        end_sample = self.total_samples
        pad = round(c.pad_s * SAMPLE_RATE)
        lookahead = round(max(c.pad_s, c.min_silence_s) * SAMPLE_RATE) + WIN_LENGTH
        pieces: list[Piece] = []
        keep = max(self.next_start, end_sample - lookahead)  # audio a later region may still pad into
        for k, (a, b) in enumerate(zip(starts, ends)):
            speech_start = self.buffer_start + int(a) * HOP_LENGTH
            speech_end = min(end_sample, self.buffer_start + int(b - 1) * HOP_LENGTH + WIN_LENGTH)
            if speech_end <= self.next_start:
                continue  # emitted before (the threshold moved a little since)
            closed = final or speech_end + lookahead <= end_sample
            lo = max(self.next_start, self.buffer_start, speech_start - pad)
            hi = min(end_sample, speech_end + pad)
            if k + 1 < len(starts):  # never pad into the next region's padding
                following = self.buffer_start + int(starts[k + 1]) * HOP_LENGTH
                hi = min(hi, max(speech_end, (speech_end + following) // 2))
            if lo > self.next_start:
                self.keep_from = None  # a new region, not the rest of one cut before
            self.region_speech = (speech_start, speech_end)
            cut_pieces, rest = self._cut(lo, hi, speech, closed)
            pieces += cut_pieces
            if not closed:
                keep = rest  # the unfinished tail of this region stays buffered
                break
        if not final:
            self._trim(min(keep, end_sample))
        return pieces

    def _cut(self, lo: int, hi: int, speech: np.ndarray, closed: bool) -> tuple[list[Piece], int]:
        """Pieces of the region [lo, hi) samples and where its unfinished tail (if still open) starts."""
        c = self.config
        max_len = round(c.max_chunk_s * SAMPLE_RATE)
        pieces = []
        while hi - lo > max_len:
            cut = self._pause_cut(lo, lo + max_len, speech)
            if cut is not None:
                pieces.append(self._piece(lo, cut, cut / SAMPLE_RATE))
                lo, self.keep_from = cut, cut / SAMPLE_RATE
            else:
                overlap = round(c.overlap_s * SAMPLE_RATE)
                middle = (lo + max_len - overlap / 2) / SAMPLE_RATE
                pieces.append(self._piece(lo, lo + max_len, middle))
                lo, self.keep_from = lo + max_len - overlap, middle
            self.next_start = lo
        if closed and hi > lo:
            pieces.append(self._piece(lo, hi, hi / SAMPLE_RATE))
            self.next_start, self.keep_from = hi, None
        return pieces, lo

    def _pause_cut(self, lo: int, hi: int, speech: np.ndarray) -> int | None:
        """Centre (sample) of the longest pause of ≥ min_pause_s in the second half of [lo, hi), or None."""
        f0 = -(-((lo + hi) // 2 - self.buffer_start) // HOP_LENGTH)
        f1 = (hi - self.buffer_start - WIN_LENGTH) // HOP_LENGTH + 1
        if f1 - f0 < self._frames["min_pause_s"]:
            return None
        starts, ends = runs(~speech[f0:f1])
        if len(starts) == 0:
            return None
        lengths = ends - starts
        best = len(lengths) - 1 - int(np.argmax(lengths[::-1]))  # the longest; the latest of equals
        if lengths[best] < self._frames["min_pause_s"]:
            return None
        centre = (f0 + (starts[best] + ends[best]) / 2) * HOP_LENGTH + WIN_LENGTH / 2
        return self.buffer_start + int(round(centre / HOP_LENGTH)) * HOP_LENGTH

    def _piece(self, lo: int, hi: int, keep_end: float) -> Piece:
        """Copy samples [lo, hi) out of the buffer."""
        keep_start = self.keep_from if self.keep_from is not None else lo / SAMPLE_RATE
        wave = self.buffer[lo - self.buffer_start : hi - self.buffer_start].copy()
        first, last = self.region_speech
        speech = (max(lo, first) / SAMPLE_RATE, max(lo, min(hi, last)) / SAMPLE_RATE)
        return Piece(lo, wave, keep_start, keep_end, speech)

    def _trim(self, keep: int) -> None:
        """Drop buffered samples before `keep` (rounded down to a whole hop)."""
        keep = (keep // HOP_LENGTH) * HOP_LENGTH
        if keep > self.buffer_start:
            self.buffer = self.buffer[keep - self.buffer_start :].copy()
            self.buffer_start = keep


def segment_stream(blocks: Iterable[np.ndarray], config: SegmentConfig | None = None) -> Iterator[Piece]:
    """Pieces of a recording given as consecutive 16 kHz blocks (see `Segmenter`)."""
    segmenter = Segmenter(config)
    for block in blocks:
        yield from segmenter.feed(block)
    yield from segmenter.finish()


def stitch_words(pieces: list[tuple[Piece | Span, list[WordSpan]]], duration: float) -> list[WordSpan]:
    """Words of consecutive pieces (times relative to each piece) → one timeline in seconds.

    Where two pieces overlap, a word is kept by the piece on whose side of the overlap's midpoint
    its centre lies, so a word seen twice is counted once. Times are clamped to the piece's
    voice-active stretch (CTC emits the first and last letters of an utterance early or late,
    into the silence padded around it; a word wholly outside is moved in, keeping its length) and
    to `duration`; a file decoded whole keeps its times as aligned (clamped to the file only).
    """
    result: list[WordSpan] = []
    for piece, words in pieces:
        first, last = piece.speech if piece.speech is not None else (piece.offset_s, piece.end / SAMPLE_RATE)
        last = min(duration, last)
        lower = piece.keep_start if piece.keep_start > piece.offset_s else -np.inf
        upper = piece.keep_end if piece.keep_end < piece.end / SAMPLE_RATE else np.inf
        for w in words:
            start, end = piece.offset_s + w.start, piece.offset_s + w.end
            if lower <= (start + end) / 2 < upper:
                start, end = clamp_into(start, end, first, last)
                if result and start < result[-1].end:  # keep the timeline monotone
                    start, end = result[-1].end, max(end, result[-1].end)
                result.append(WordSpan(w.word, start, end, w.conf))
    return result


def clamp_into(start: float, end: float, first: float, last: float) -> tuple[float, float]:
    """Move [start, end] inside [first, last]: clipped where it overlaps, shifted (length kept) where it lies outside."""
    if last <= first:
        return first, first
    if end <= first:
        return first, min(last, first + (end - start))
    if start >= last:
        return max(first, last - (end - start)), last
    return max(start, first), min(end, last)
