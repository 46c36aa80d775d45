"""`infc worker` refusals, in-process: each exits 1 before it would open a socket."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, run

DEMO = Path(__file__).resolve().parents[2] / "specs" / "demo.infer"


def infc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def test_an_unknown_target_lists_the_known_ones(example_models: Path):
    code, out, err = infc("worker", str(DEMO), "--target", "gpu", "--listen", "127.0.0.1:0")
    assert code == ExitCode.ERRORS
    assert out == ""
    assert err == "infc: the plan has no target `gpu`; its targets are: laptop\n"


@pytest.mark.parametrize("listen", ["8001", "unix:", "localhost:http"])
def test_a_malformed_listen_address_is_refused(listen: str):
    code, _, err = infc("worker", str(DEMO), "--target", "laptop", "--listen", listen)
    assert code == ExitCode.ERRORS
    assert f"infc: cannot listen on {listen!r}: give HOST:PORT" in err


def test_a_negative_grace_is_refused():
    code, _, err = infc(
        "worker", str(DEMO), "--target", "laptop", "--listen", "127.0.0.1:0", "--grace", "-1"
    )
    assert code == ExitCode.ERRORS
    assert "--grace must be 0 or more seconds" in err


def test_a_spec_with_errors_prints_its_diagnostics(tmp_path: Path):
    spec = tmp_path / "broken.infer"
    spec.write_text("target box {\n  hardware quantum\n}\n", encoding="utf-8")
    code, out, err = infc("worker", str(spec), "--target", "box", "--listen", "127.0.0.1:0")
    assert code == ExitCode.ERRORS
    assert out == ""
    assert "error[E0201]: unknown hardware `quantum`" in err
    assert err.endswith(f"{spec}: 2 errors\n")  # the summary line, as `infc check` prints it


def test_an_unreadable_spec_is_refused(tmp_path: Path):
    code, _, err = infc(
        "worker", str(tmp_path / "none.infer"), "--target", "x", "--listen", "127.0.0.1:0"
    )
    assert code == ExitCode.ERRORS
    assert "infc: cannot read" in err


def test_target_and_listen_are_required():
    with pytest.raises(SystemExit) as exited:
        infc("worker", str(DEMO))
    assert exited.value.code == ExitCode.ERRORS
