"""Corpus preparation: one module per corpus with a `download_X()` / `prepare_X()` pair.

Every `prepare_X()` writes manifests in the format of `asr.manifest` (TSV, paths relative to the
manifest's folder) and returns their paths. Shared pieces (resumable download, safe extraction,
speaker-disjoint split, audio info) live in `data_prep.common`.
"""

from data_prep.common import (
    DataPrepError,
    DownloadError,
    UnsafeArchiveError,
    audio_info,
    audio_infos,
    download_file,
    file_md5,
    safe_extract,
    speaker_split,
)

__all__ = [
    "DataPrepError",
    "DownloadError",
    "UnsafeArchiveError",
    "audio_info",
    "audio_infos",
    "download_file",
    "file_md5",
    "safe_extract",
    "speaker_split",
]
