"""Atomic file output: write beside the target, then rename, so no reader ever sees half a file.

    >>> with atomic_output("exp/model.pt") as tmp:      # tmp: a Path in the same folder
    ...     torch.save(state, tmp)
    >>> atomic_write_text("out/hyps.tsv", "utt_id\\ttext\\n")
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode() -> int:
    """The permissions a plain `open(path, "w")` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk (so a crash after the rename cannot leave it empty).

    Opened for writing: Windows flushes only handles with write access (POSIX takes either).
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it into place, on any error delete it.

    The parent folder is created if needed. The file gets the usual permissions (mkstemp's are 0600).
    Data and rename are fsync'd, so after a power cut `path` holds the old file or the whole new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)  # before the chmod: mkstemp's 0600 file is always writable by its owner
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def path_from_folder(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """`path` as stored in a file kept in `folder`: relative to the folder (so the two can move
    together), or absolute where no relative path exists (another drive on Windows)."""
    target = Path(path).resolve()
    try:
        return os.path.relpath(target, Path(folder).resolve())
    except ValueError:
        return str(target)


def read_tagged_json(path: str | os.PathLike, format_tag: str, error: type[Exception], missing: str,
                     what: str) -> dict:
    """The JSON object in `path` whose "format" is `format_tag`; else `error` naming the file and the problem.

    `missing` is the whole message for an absent file (saying how to make one); `what` names the
    kind of file in the other messages ("a feature cache", "a search index").
    """
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable metadata of {what} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_tag:
        raise error(f"{path}: not {what} (format tag {format_tag!r} missing)")
    return meta

