"""The tests' own guard: no test, and no Python process a test starts, resolves a host name
other than localhost (so none can reach a server off this machine by name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

LOOKUP = "import socket, sys; print(socket.getaddrinfo(sys.argv[1], 80)[0][4][0])"


def _lookup_in_a_new_process(name: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", LOOKUP, name]
    return subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=60)


def test_a_process_a_test_starts_resolves_no_outside_name() -> None:
    done = _lookup_in_a_new_process("news.example.org")
    assert done.returncode != 0
    assert "tests resolve no names: news.example.org" in done.stderr


def test_a_process_a_test_starts_still_resolves_localhost() -> None:
    done = _lookup_in_a_new_process("localhost")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"127.0.0.1", "::1"}


def test_the_test_process_resolves_no_outside_name() -> None:
    with pytest.raises(socket.gaierror, match="tests resolve no names"):
        socket.getaddrinfo("news.example.org", 443)
