"""backends/event_loop.py: uvloop when installed, the standard loop on request."""

from __future__ import annotations

import asyncio

import pytest

from inferplane.backends import event_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_runs_the_program_when_installed(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.loop_name() == "uvloop"
    assert event_loop.run(_loop_module()).startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_the_environment_picks_the_standard_loop(monkeypatch, value):
    monkeypatch.setenv(event_loop.ENV, value)
    assert event_loop.loop_name() == "asyncio"
    assert event_loop.run(_loop_module()).startswith("asyncio")


def test_without_uvloop_the_standard_loop_runs(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_uvloop(name, *args, **kwargs):
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv(event_loop.ENV, raising=False)
    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert event_loop.loop_name() == "asyncio"
