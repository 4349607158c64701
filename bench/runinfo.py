"""What every benchmark records beside its numbers: the CPU, the commit; and an atomic JSON writer."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

from asr.fileio import atomic_write_text

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform fallback elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short commit of the checkout (`+modified` when tracked files differ from it), or "uncommitted"."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "uncommitted"
    return commit + ("+modified" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as indented JSON atomically (a crash leaves no half file)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
