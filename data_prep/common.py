"""Shared data-preparation helpers.

- `download_file`: resumable HTTP(S) download (`.part` file + `Range`), MD5 check, atomic rename.
- `safe_extract`: tar extraction that refuses absolute paths, `..` and links leaving the target,
  and leaves a `.complete` marker so a second call is a no-op.
- `safe_extract_zip`: the same checks for a zip archive (no marker: callers extract into a
  temporary folder and rename it into place).
- `audio_info` / `audio_infos`: duration and sample rate from the file header (soundfile), the
  latter over several processes.
- `parallel_map`: a function over many items in worker processes, in order, with a progress bar.
- `combine_manifests`: several manifests into one (paths re-rooted, duplicate ids refused).
- `speaker_split`: a deterministic, speaker-disjoint train/dev split.
- `run_cli`: the shared `main()` wrapper: user errors become one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import random
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import soundfile as sf
from tqdm import tqdm

from asr.manifest import ManifestError, Utterance, read_manifest, write_manifest

_In = TypeVar("_In")
_Out = TypeVar("_Out")

log = logging.getLogger(__name__)

USER_AGENT = "asr-data-prep/0.1 (python urllib)"
PART_SUFFIX = ".part"
COMPLETE_SUFFIX = ".complete"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")


class DataPrepError(RuntimeError):
    """A corpus could not be downloaded or prepared; the message names the file and the problem."""


class DownloadError(DataPrepError):
    """A download failed for good (HTTP error, too many interruptions, bad checksum)."""


class UnsafeArchiveError(DataPrepError):
    """An archive member would be written, or would point, outside the extraction folder."""


class _Interrupted(Exception):
    """A transfer stopped early; the `.part` file keeps what arrived and the next try resumes."""


# --------------------------------------------------------------------------------------- download


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in `chunk`-byte pieces."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str,
    target: Path,
    md5: str | None,
    chunk: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60.0,
    retry_delay: float = 1.0,
) -> Path:
    """Download `url` to `target`, resuming a previous partial download, and return `target`.

    Bytes go to `<target>.part`; a later call (or a retry after a dropped connection) asks the
    server for the rest with a `Range` header. A server that answers 200 instead of 206 is
    followed by starting again from zero. With `md5` the finished file is verified: a mismatch
    removes it and raises DownloadError. The final name appears only once the file is complete
    (atomic rename). An existing `target` with the right MD5 (or any `target` when `md5` is
    None) is kept and nothing is downloaded.
    """
    target = Path(target)
    if _existing_is_good(target, md5):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    errors: list[str] = []
    for attempt in range(retries + 1):
        try:
            _fetch_to_part(url, part, chunk, timeout)
            break
        except (_Interrupted, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            errors.append(_one_line(exc))
            log.warning("%s: attempt %d/%d interrupted (%s)", url, attempt + 1, retries + 1, errors[-1])
            if attempt < retries:
                time.sleep(retry_delay * (attempt + 1))
    else:
        raise DownloadError(
            f"{url}: download failed after {retries + 1} attempts (last error: {errors[-1]}); "
            f"partial data kept in {part} so the next run resumes"
        )
    _verify_md5(part, md5, url)
    os.replace(part, target)
    log.info("downloaded %s -> %s", url, target)
    return target


def _existing_is_good(target: Path, md5: str | None) -> bool:
    """True when `target` exists and (if `md5` is given) has that MD5; a bad file is removed."""
    if not target.is_file():
        return False
    if md5 is None:
        log.info("%s exists (no checksum to verify), not downloading again", target)
        return True
    if file_md5(target) == md5.lower():
        log.info("%s exists with the right MD5, not downloading again", target)
        return True
    log.warning("%s exists but its MD5 is not %s; downloading it again", target, md5)
    target.unlink()
    return False


def _fetch_to_part(url: str, part: Path, chunk: int, timeout: float) -> None:
    """One HTTP request appending the missing bytes to `part`; raises _Interrupted if cut short."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        _handle_http_error(exc, url, part, offset)
        return
    with response:
        append, expected = _plan_write(response, url, part, offset)
        received = _copy_body(response, part, append, chunk)
    if expected is not None and received < expected:
        raise _Interrupted(f"connection closed after {received} of {expected} bytes")


def _handle_http_error(exc: urllib.error.HTTPError, url: str, part: Path, offset: int) -> None:
    """416 on a resume means the `.part` file is complete (or must restart); 5xx is retried."""
    exc.close()
    if exc.code == 416 and offset:
        match = _CONTENT_RANGE_UNSATISFIED.search(exc.headers.get("Content-Range", "") or "")
        if match and int(match.group(1)) == offset:
            return  # everything is already there
        part.unlink()
        raise _Interrupted("server refused the resume range; starting again from zero")
    if exc.code >= 500 or exc.code in (408, 429):
        raise _Interrupted(f"HTTP {exc.code} {exc.reason}")
    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None


def _plan_write(response: http.client.HTTPResponse, url: str, part: Path, offset: int) -> tuple[bool, int | None]:
    """Decide whether the body appends to `part`; return (append, expected body length)."""
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    status = getattr(response, "status", None)
    if status == 206:
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", "") or "")
        if match is None or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise _Interrupted(f"server sent an unexpected range {response.headers.get('Content-Range')!r}")
        return True, expected
    if offset:
        log.info("%s: server ignored the Range request (status %s); starting again from zero", url, status)
    return False, expected


def _copy_body(response: http.client.HTTPResponse, part: Path, append: bool, chunk: int) -> int:
    """Stream the response body into `part`; return the number of bytes written."""
    received = 0
    with open(part, "ab" if append else "wb") as handle:
        while block := response.read(chunk):
            handle.write(block)
            received += len(block)
    return received


def _verify_md5(path: Path, md5: str | None, label: str) -> None:
    """Raise DownloadError (and delete `path`) if its MD5 is not `md5`."""
    if md5 is None:
        return
    actual = file_md5(path)
    if actual != md5.lower():
        path.unlink(missing_ok=True)
        raise DownloadError(f"{label}: MD5 mismatch (expected {md5}, got {actual}); the bad file was removed")


# -------------------------------------------------------------------------------------- extraction


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a (compressed) tar archive into `dest` and return `dest`.

    Every member is checked before anything is written: absolute names, `..` components,
    symbolic or hard links resolving outside `dest` and device files raise UnsafeArchiveError.
    tarfile's `filter="data"` is used on top where Python provides it. A marker
    `dest/.<archive name>.complete` is written last; when it exists the call does nothing.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / f".{archive.name}{COMPLETE_SUFFIX}"
    if marker.is_file():
        log.info("%s already extracted into %s", archive, dest)
        return dest
    if not archive.is_file():
        raise DataPrepError(f"{archive}: no such archive")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # Python without extraction filters: our own checks above are the guard
                tar.extractall(root, members=members)
    except tarfile.TarError as exc:
        kind = UnsafeArchiveError if _is_filter_error(exc) else DataPrepError
        raise kind(f"{archive}: cannot extract ({_one_line(exc)})") from None
    marker.write_text(f"extracted {archive.name}\n", encoding="utf-8")
    log.info("extracted %s into %s", archive, dest)
    return dest


def _is_filter_error(exc: BaseException) -> bool:
    """True for tarfile's extraction-filter refusals (absolute path, outside destination, ...)."""
    filter_error = getattr(tarfile, "FilterError", None)
    return filter_error is not None and isinstance(exc, filter_error)


def _check_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    """Raise UnsafeArchiveError if `member` would escape `root` or is a device/special file."""
    name = member.name
    where = f"{archive}: member {name!r}"
    target = _check_name(name, root, where)
    if member.issym():
        if member.linkname.startswith(("/", "\\")):
            raise UnsafeArchiveError(f"{where} is a link to the absolute path {member.linkname!r}")
        _inside(root, os.path.join(os.path.dirname(target), member.linkname), f"{where} (link)")
    elif member.islnk():
        _inside(root, os.path.join(root, member.linkname), f"{where} (hard link)")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device or special file")


def _check_name(name: str, root: Path, where: str) -> str:
    """Refuse an absolute member name or one with `..`; return where it lands inside `root`."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{where} has an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise UnsafeArchiveError(f"{where} contains '..'")
    return _inside(root, os.path.join(root, name), where)


def _inside(root: Path, path: str, where: str) -> str:
    """Normalise `path` and make sure it lies inside `root`; return the normalised path."""
    normal = os.path.normpath(path)
    if os.path.commonpath([str(root), normal]) != str(root):
        raise UnsafeArchiveError(f"{where} points outside {root}")
    return normal


def safe_extract_zip(archive: Path, dest: Path) -> Path:
    """Extract a zip archive into `dest` and return `dest`.

    Every member is checked before anything is written, as `safe_extract` does for tar: absolute
    names (`/x`, `C:x`), `..` components, names landing outside `dest` and symbolic links (Unix
    mode bits in the zip) raise UnsafeArchiveError. No `.complete` marker is written and the
    archive is extracted on every call: callers extract into a temporary folder and rename it.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataPrepError(f"{archive}: no such archive")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                where = f"{archive}: member {member.filename!r}"
                _check_name(member.filename, root, where)
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{where} is a symbolic link")
            zf.extractall(root, members=members)
    except (zipfile.BadZipFile, EOFError) as exc:  # also a CRC error in a member
        raise DataPrepError(f"{archive}: cannot extract ({_one_line(exc)}); remove it to download it again") from None
    log.info("extracted %s into %s", archive, dest)
    return dest


# ------------------------------------------------------------------------------------------ audio


def audio_info(path: str | os.PathLike) -> tuple[float, int]:
    """(duration in seconds, sample rate) from the file header; DataPrepError names a bad file."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        raise DataPrepError(f"{path}: not a readable audio file ({_one_line(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataPrepError(f"{path}: contains no audio samples")
    return info.frames / info.samplerate, int(info.samplerate)


def audio_infos(paths: Sequence[str | os.PathLike], jobs: int = 1) -> list[tuple[float, int]]:
    """`audio_info` for many files, in order; `jobs > 1` spreads them over worker processes."""
    names = [str(p) for p in paths]
    if jobs <= 1 or len(names) < 2:
        return [audio_info(name) for name in names]
    chunksize = max(1, len(names) // (jobs * 8))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(audio_info, names, chunksize=chunksize))


def make_utterances(rows: Sequence[tuple[str, str, Path, str]], jobs: int = 1) -> list[Utterance]:
    """Turn (utt_id, speaker, audio path, text) rows into Utterances, reading durations from audio."""
    infos = audio_infos([row[2] for row in rows], jobs)
    return [
        Utterance(utt_id, speaker, Path(path).resolve(), duration, rate, text)
        for (utt_id, speaker, path, text), (duration, rate) in zip(rows, infos)
    ]


def parallel_map(function: Callable[[_In], _Out], items: Sequence[_In], jobs: int = 1, desc: str | None = None) -> list[_Out]:
    """`[function(x) for x in items]`, spread over `jobs` worker processes, in input order.

    `function` must be a module-level function (workers import it). A tqdm bar on stderr counts
    finished items when `desc` is given. An exception in a worker is re-raised here unchanged, so
    a DataPrepError naming a file still reads as one line.
    """
    bar = tqdm(total=len(items), desc=desc, unit="item", disable=desc is None, leave=False, dynamic_ncols=True)
    try:
        if jobs <= 1 or len(items) < 2:
            results = []
            for item in items:
                results.append(function(item))
                bar.update(1)
            return results
        with ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
            results = []
            for result in pool.map(function, items, chunksize=max(1, len(items) // (jobs * 16))):
                results.append(result)
                bar.update(1)
            return results
    finally:
        bar.close()


def combine_manifests(manifests: Iterable[str | os.PathLike], out: str | os.PathLike) -> list[Utterance]:
    """Write the utterances of several manifests, in order, into `out`; return them.

    Audio paths are re-rooted so they stay valid relative to `out`. An utterance id present in
    two inputs raises DataPrepError naming both files.
    """
    utterances: list[Utterance] = []
    seen: dict[str, str] = {}
    for manifest in manifests:
        for utt in read_manifest(manifest):
            if utt.utt_id in seen:
                raise DataPrepError(f"{manifest}: utterance {utt.utt_id} is also in {seen[utt.utt_id]}")
            seen[utt.utt_id] = str(manifest)
            utterances.append(utt)
    if not utterances:
        raise DataPrepError(f"{out}: nothing to combine (no utterances in the input manifests)")
    write_manifest(out, utterances)
    return utterances


# ------------------------------------------------------------------------------------------ split


def speaker_split(
    utterances: list[Utterance], dev_fraction: float, seed: int = 0, min_dev_speakers: int = 1
) -> tuple[list[Utterance], list[Utterance]]:
    """Split utterances into (train, dev) with no speaker in both.

    `round(dev_fraction * n_speakers)` speakers (at least `min_dev_speakers`, at most all but one)
    go to dev. Speakers are sorted before a `random.Random(seed)` shuffle, so the split depends
    only on the set of speakers and the seed. Utterances keep their input order in each part.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise DataPrepError(f"dev fraction must be in [0, 1), got {dev_fraction}")
    speakers = sorted({utt.speaker for utt in utterances})
    n_dev = max(min_dev_speakers, round(dev_fraction * len(speakers)))
    if n_dev and n_dev >= len(speakers):
        raise DataPrepError(
            f"cannot put {n_dev} speaker(s) in dev and keep one for train: only {len(speakers)} speaker(s)"
        )
    random.Random(seed).shuffle(speakers)
    dev_speakers = set(speakers[:n_dev])
    train = [utt for utt in utterances if utt.speaker not in dev_speakers]
    dev = [utt for utt in utterances if utt.speaker in dev_speakers]
    return train, dev


# -------------------------------------------------------------------------------------------- CLI


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name if the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_cli(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], None], argv: Sequence[str] | None) -> int:
    """Parse `argv`, run `body`; user errors print one line `error: ...` and give exit code 1."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        body(args)
    except (DataPrepError, ManifestError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
