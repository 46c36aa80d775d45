"""`--location KIND[:SITE]` and INFERPLANE_LOCATION: parsing, precedence, and what the worker
reports; malformed values refuse `infc worker` and `infc serve` before anything starts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from inferplane.backends.host_location import ENV, HostLocation, parse, resolve
from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, run

DEMO = Path(__file__).resolve().parents[2] / "specs" / "demo.infer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("onprem", HostLocation("onprem")),
        ("onprem:fra-dc1", HostLocation("onprem", "fra-dc1")),
        ("cloud:gcp:us-central1", HostLocation("cloud", "gcp:us-central1")),  # first colon only
        (" edge:warehouse-7/robot ", HostLocation("edge", "warehouse-7/robot")),
    ],
)
def test_kind_and_optional_site(text, expected):
    assert parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is not a location: give KIND[:SITE], KIND one of onprem, cloud, edge"),
        ("on-prem:fra", "is not a location"),
        ("ONPREM", "is not a location"),
        ("fra-dc1", "is not a location"),
        ("onprem:", "has an empty site"),
        ("onprem: ", "has an empty site"),
    ],
)
def test_malformed_locations_say_what_is_expected(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse(text)


def test_the_flag_wins_over_the_environment_which_wins_over_nothing():
    env = {ENV: "cloud:x"}
    assert resolve("onprem:a", env) == HostLocation("onprem", "a")
    assert resolve(None, env) == HostLocation("cloud", "x")
    assert resolve(None, {}) is None
    assert resolve(None, {ENV: "  "}) is None  # a template that left it blank
    assert resolve("edge", {ENV: "nonsense"}) == HostLocation("edge")  # env not even read


def test_errors_name_where_the_value_came_from():
    with pytest.raises(ValueError, match=r"^--location: 'moon' is not a location"):
        resolve("moon", {})
    with pytest.raises(ValueError, match=rf"^{ENV}: 'moon' is not a location"):
        resolve(None, {ENV: "moon"})


def infc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


WORKER = ("worker", str(DEMO), "--target", "laptop", "--listen", "127.0.0.1:0")
SERVE = ("serve", str(DEMO), "--listen", "127.0.0.1:0")


@pytest.mark.parametrize("command", [WORKER, SERVE])
def test_a_malformed_flag_exits_1_before_anything_starts(command, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    code, out, err = infc(*command, "--location", "space:moon-base")
    assert code == ExitCode.ERRORS and out == ""
    assert err == (
        "infc: --location: 'space:moon-base' is not a location: give KIND[:SITE], "
        "KIND one of onprem, cloud, edge (e.g. onprem:fra-dc1)\n"
    )


@pytest.mark.parametrize("command", [WORKER, SERVE])
def test_a_malformed_environment_exits_1_before_anything_starts(command, monkeypatch):
    monkeypatch.setenv(ENV, "onprem:")
    code, out, err = infc(*command)
    assert code == ExitCode.ERRORS and out == ""
    assert err.startswith(f"infc: {ENV}: 'onprem:' has an empty site")


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_help_names_the_flag(command, capsys):
    with pytest.raises(SystemExit):
        run([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--location KIND[:SITE]" in text and "INFERPLANE_LOCATION" in text
