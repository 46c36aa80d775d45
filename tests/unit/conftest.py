"""Unit tests open no socket and start no process: this makes both fail loudly.

The guard patches the Python-level entry points (socket binds and connects,
subprocess and multiprocessing starts), which is where a stray server or
client in a unit test would come from.
"""

from __future__ import annotations

import multiprocessing
import socket
import subprocess

import pytest


class _Forbidden(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_sockets_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise _Forbidden("unit tests must not open sockets or start processes")

    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(multiprocessing.Process, "start", refuse)
