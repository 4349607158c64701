"""Spoken-term search by example: word segments, a seq2seq segment autoencoder, an index, queries.

    segments.py   word segments (source, word, start, end, speaker) from forced alignment
    features.py   segment features: MFCC, log-mel or the acoustic model's hidden states
    model.py      the seq2seq autoencoder (plain, denoising, correspondence, contrastive training)
    train.py      `asr train --config X.yaml` with `task: autoencoder`
    index.py      `asr index build|add`: candidate segments of every file → vectors + metadata
    query.py      `asr search INDEX QUERY`: ranked, merged hits
"""

# Sliding-window candidates of an index (seconds); here so that the CLI needs no torch import.
DEFAULT_WIDTHS = (0.3, 0.5, 0.8, 1.2)
DEFAULT_HOP = 0.1
