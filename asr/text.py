"""Text normalisation and the character tokenizer.

Training and scoring text is upper-case A–Z, apostrophe and single spaces. The tokenizer maps
characters to ids with the CTC blank at id 0:

    0 <blank>, 1 " " (word boundary), 2 "'", 3..28 "A".."Z"
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

BLANK = "<blank>"
SPACE = " "
DEFAULT_CHARS: tuple[str, ...] = (SPACE, "'") + tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))

_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r" +")


def normalize_text(text: str) -> str:
    """Upper-case, strip accents, map anything outside A–Z/apostrophe to a space, squeeze spaces.

    >>> normalize_text("  Hello, wörld -- it's 'ok'! ")
    "HELLO WORLD IT'S 'OK'"
    """
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    upper = ascii_only.upper().replace("\u2019", "'")
    cleaned = _NOT_ALLOWED.sub(" ", upper)
    return _SPACES.sub(" ", cleaned).strip()


def unspellable_characters(text: str) -> str:
    """Letters and digits of `text` that `normalize_text` drops (digits, non-Latin scripts), each once in
    order of appearance; punctuation is not counted (dropping it is intended)."""
    return "".join(dict.fromkeys(c for c in text if c.isalnum() and not normalize_text(c)))


@dataclass
class CharTokenizer:
    """Characters ↔ ids; id 0 is the CTC blank, `space_id` separates words."""

    chars: tuple[str, ...] = DEFAULT_CHARS
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.chars = tuple(self.chars)
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}

    @property
    def vocab(self) -> list[str]:
        """All symbols, index = id; `vocab[0]` is the blank."""
        return [BLANK, *self.chars]

    @property
    def vocab_size(self) -> int:
        """Number of output classes including the blank."""
        return len(self.chars) + 1

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def space_id(self) -> int:
        return self._index[SPACE]

    def encode(self, text: str) -> list[int]:
        """Normalise `text` and map it to ids (no blanks)."""
        return [self._index[c] for c in normalize_text(text)]

    def decode(self, ids: list[int]) -> str:
        """Map ids back to text; blanks are dropped, spaces squeezed."""
        text = "".join(self.chars[i - 1] for i in ids if i != 0)
        return _SPACES.sub(" ", text).strip()

    def to_dict(self) -> dict[str, list[str]]:
        """Serialisable form stored in checkpoints."""
        return {"chars": list(self.chars)}

    @classmethod
    def from_dict(cls, state: dict[str, list[str]]) -> "CharTokenizer":
        return cls(chars=tuple(state["chars"]))
