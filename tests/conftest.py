"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-speech folder (`$ASR_SHARED_DATA` or ../shared/data); skips if absent."""
    override = os.environ.get("ASR_SHARED_DATA")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared speech data not found at {path} (set ASR_SHARED_DATA to its folder)")
    return path
