"""asr: a speech recognition toolkit (BiLSTM-CTC, n-gram beam search, HMM hybrid, query by example).

    >>> import asr
    >>> asr.load().transcribe("examples/audio/an4_mfaa_enter_ninety_eight_twenty_eight.flac").text

`asr.load` (see `asr.api`) returns a `Transcriber`; the heavy modules are imported on first use,
so `import asr` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names → the module that defines them (imported lazily by __getattr__).
_EXPORTS = {
    "load": "asr.api",
    "Transcriber": "asr.transcribe",
    "Transcript": "asr.transcribe",
    "load_audio": "asr.audio",
    "AudioError": "asr.audio",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
