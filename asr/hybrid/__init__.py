"""Hybrid HMM/Viterbi mode: HMM topology over characters, state alignments, priors and transitions,
a frame-level state head on the CTC encoder, and a lexicon + n-gram LM Viterbi decoder.

Modules: topology, alignments, model (state head + assets file), train (`asr train` with
`task: hybrid`), viterbi (graph + numba token passing), decode (`--decoder hybrid`), tune.
"""
