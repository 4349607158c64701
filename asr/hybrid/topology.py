"""HMM topologies over characters: which states a character (and a word boundary) is made of.

Two kinds:

* ``"hmm"``, for the hybrid acoustic model trained with frame-level cross-entropy: every
  character (apostrophe, A–Z) is a left-to-right chain of 1–3 states with self-loops; an optional
  silence state (state 0) may sit between words and at both ends. The acoustic model has one
  output per state, so a state's emission column is its own id.
* ``"ctc"``, for the CTC model's own posteriors (the token topology of EESEN-style CTC decoding):
  a character is its label state followed by an optional blank state; a word boundary is an
  optional space state followed by an optional blank state. Emission columns are tokenizer ids.
  When a word spells the same character twice in a row, the blank between them is mandatory,
  exactly as in CTC.

A *unit* is either the word boundary (unit 0) or one character (units 1..27). Every unit is a
short chain of states; a state may be *skippable* (the chain can jump over it). Transition
scores are per state: ``loop_logp[s]`` to stay, ``exit_logp[s]`` to leave (to any successor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from asr.text import SPACE, CharTokenizer, normalize_text

KINDS = ("hmm", "ctc")


@dataclass
class Topology:
    """States, emission columns and transition scores of one topology (see the module doc)."""

    kind: str = "hmm"
    states_per_char: int = 1  # "hmm" only: 1..3
    silence: bool = True  # "hmm": optional silence state between words and at the ends
    chars: tuple[str, ...] = field(default_factory=lambda: tuple(c for c in CharTokenizer().chars if c != SPACE))
    blank_id: int = 0  # "ctc": tokenizer ids of blank and space; a char's column is its tokenizer id
    space_id: int = 1
    char_ids: tuple[int, ...] = ()  # "ctc": tokenizer id of each char (default: position + 2)
    loop_logp: list[float] = field(default_factory=list)  # (S,) per state; empty = log 0.5 (hmm) / 0 (ctc)
    exit_logp: list[float] = field(default_factory=list)  # (S,)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown topology kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.kind == "hmm" and not 1 <= self.states_per_char <= 3:
            raise ValueError(f"states_per_char must be 1, 2 or 3, got {self.states_per_char}")
        self.chars = tuple(self.chars)
        if self.kind == "ctc" and not self.char_ids:
            tokenizer = CharTokenizer()
            self.char_ids = tuple(tokenizer.encode(c)[0] for c in self.chars)
        self.char_ids = tuple(int(i) for i in self.char_ids)
        self.unit_of_char = {c: u for u, c in enumerate(self.chars, start=1)}
        self._build()

    # ---- construction

    def _build(self) -> None:
        """Lay out unit → states, state → column / skippable, and default transition scores."""
        units: list[list[int]] = []
        columns: list[int] = []
        skippable: list[bool] = []

        def add(column: int, skip: bool) -> int:
            columns.append(column)
            skippable.append(skip)
            return len(columns) - 1

        if self.kind == "hmm":
            units.append([add(0, True)] if self.silence else [])
            for _ in self.chars:
                units.append([add(len(columns), False) for _ in range(self.states_per_char)])
        else:
            units.append([add(self.space_id, True), add(self.blank_id, True)])
            for char_id in self.char_ids:
                units.append([add(char_id, False), add(self.blank_id, True)])
        self.unit_states: list[list[int]] = units
        self.column = np.asarray(columns, dtype=np.int64)  # (S,)
        self.skippable = np.asarray(skippable, dtype=np.bool_)  # (S,)
        n = len(columns)
        if not self.loop_logp:
            default = np.log(0.5) if self.kind == "hmm" else 0.0
            self.loop_logp = [float(default)] * n
            self.exit_logp = [float(default)] * n
        if len(self.loop_logp) != n or len(self.exit_logp) != n:
            raise ValueError(f"topology has {n} states but {len(self.loop_logp)} loop / "
                             f"{len(self.exit_logp)} exit scores")

    # ---- queries

    @property
    def num_states(self) -> int:
        return int(self.column.shape[0])

    @property
    def num_columns(self) -> int:
        """Outputs the acoustic model must provide (hmm: one per state; ctc: the CTC vocabulary)."""
        return self.num_states if self.kind == "hmm" else int(max(self.column.max(), *self.char_ids) + 1)

    @property
    def repeat_needs_last_state(self) -> bool:
        """CTC: a doubled character must pass through the blank between its two copies."""
        return self.kind == "ctc"

    def loops(self) -> np.ndarray:
        return np.asarray(self.loop_logp, dtype=np.float64)  # (S,)

    def exits(self) -> np.ndarray:
        return np.asarray(self.exit_logp, dtype=np.float64)  # (S,)

    def spell(self, word: str) -> list[int] | None:
        """A word's unit sequence (1..27), or None if it holds a character outside the units."""
        units = [self.unit_of_char.get(c) for c in word]
        return None if any(u is None for u in units) or not units else units  # type: ignore[return-value]

    def utterance_units(self, text: str) -> list[int]:
        """Units of a transcript: boundary, word, boundary, word, …, boundary (boundaries are optional)."""
        out = [0]
        for word in normalize_text(text).split():
            units = self.spell(word)
            if units is None:
                raise ValueError(f"word {word!r} has characters outside the topology")
            out += units + [0]
        return out

    def utterance_states(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Linear state sequence of a transcript for forced alignment: (N,) states, (N,) skippable.

        Between two identical characters of a word the CTC kind keeps the blank mandatory.
        """
        units = self.utterance_units(text)
        states: list[int] = []
        skip: list[bool] = []
        for i, unit in enumerate(units):
            chain = self.unit_states[unit]
            for j, s in enumerate(chain):
                states.append(s)
                mandatory = (self.repeat_needs_last_state and j == len(chain) - 1 and unit != 0
                             and i + 1 < len(units) and units[i + 1] == unit)
                skip.append(bool(self.skippable[s]) and not mandatory)
        return np.asarray(states, dtype=np.int64), np.asarray(skip, dtype=np.bool_)

    def with_transitions(self, loop_logp: np.ndarray, exit_logp: np.ndarray) -> "Topology":
        """A copy with estimated transition scores."""
        values = self.to_dict()
        values.update(loop_logp=[float(x) for x in loop_logp], exit_logp=[float(x) for x in exit_logp])
        return Topology.from_dict(values)

    # ---- serialisation

    def to_dict(self) -> dict:
        values = asdict(self)
        values["chars"] = list(self.chars)
        values["char_ids"] = list(self.char_ids)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Topology":
        known = {"kind", "states_per_char", "silence", "chars", "blank_id", "space_id", "char_ids", "loop_logp",
                 "exit_logp"}
        return cls(**{k: v for k, v in values.items() if k in known})
