"""Unit tests open no socket and start no process: this makes both fail loudly."""

from __future__ import annotations

import socket
import subprocess

import pytest


class _Forbidden(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_sockets_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise _Forbidden("unit tests must not open sockets or start processes")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
