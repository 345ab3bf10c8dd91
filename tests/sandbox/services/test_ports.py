"""Listener ports: below the ephemeral range, and claimed in one registry per user."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from spark_sandbox.services import ports


def test_listener_ports_come_from_below_the_ephemeral_range() -> None:
    low, high = ports.listener_range()
    port = ports.free_port()
    assert low <= port < high
    assert (ports.registry_dir() / str(port)).is_file()


def test_the_registry_is_shared_by_sandboxes_whose_home_moved_with_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests move a sandbox's home with TMPDIR; its ports must still be claimed where every
    other sandbox of the user looks, or two sandboxes starting together can pick one port."""
    before = ports.registry_dir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert ports.registry_dir() == before
    port = ports.free_port()
    assert (before / str(port)).is_file()
    assert not any(tmp_path.iterdir())
