"""Checks shared by the service tests: a stopped service leaves no process and no port."""

from __future__ import annotations

import os
from pathlib import Path

from spark_sandbox.services.ports import is_listening


def process_group_alive(pgid: int) -> list[int]:
    """Pids still in the process group ``pgid`` (a stopped service must leave none)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def assert_stopped(pid: int, *ports: int) -> None:
    assert process_group_alive(pid) == [], f"processes left in group {pid}"
    for port in ports:
        assert not is_listening(port), f"port {port} still accepts connections"
