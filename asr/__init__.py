"""asr: a speech recognition toolkit (BiLSTM-CTC, n-gram beam search, HMM hybrid, query by example)."""

__version__ = "0.1.0"
