"""Decoders that turn per-frame CTC log-probs into text: greedy, beam search (+ n-gram LM), alignment."""
