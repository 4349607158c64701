"""What every benchmark records beside its numbers: the CPU, the commit; and an atomic JSON writer."""

from __future__ import annotations

import json
import os
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
    """Short commit of the checkout (`+modified` when tracked files differ from it), else $ASR_COMMIT or
    "uncommitted"."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:  # a copy of the tree without .git (e.g. sent to a GPU machine): the sender may name it
        return os.environ.get("ASR_COMMIT") or "uncommitted"
    return commit + ("+modified" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as indented JSON atomically (a crash leaves no half file)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def finish_report(report: dict, wall_start: float, hardware: str, json_path: str | None) -> None:
    """Close a benchmark run: store the wall time, print the hardware / commit / wall line and the
    command that reproduces it, and write the JSON report if asked for.

    `report` must hold "commit" and "command"; `hardware` describes the machine for the printed line.
    """
    import time

    report["wall_s"] = time.perf_counter() - wall_start
    print(f"\nhardware: {hardware} | commit {report['commit']} | wall {report['wall_s']:.1f} s")
    print(f"command: {report['command']}")
    if json_path:
        write_json_atomic(Path(json_path), report)
        print(f"wrote {json_path}")
