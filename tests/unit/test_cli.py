"""`infc` end to end in-process: arguments in, text and exit codes out."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import grpc
import pytest

from inferplane.cli import gateway_plan
from inferplane.cli.console import Console
from inferplane.cli.main import ExitCode, run
from inferplane.protos import admin_pb2

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "specs" / "demo.infer"
NEGATIVE = ROOT / "tests" / "data" / "negative"


def infc(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), Console(out=out, err=err, stdin=io.StringIO(stdin)))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def spec_copy(tmp_path: Path, example_models: Path) -> Path:
    """demo.infer in a scratch folder, next to a copy of the example models."""
    shutil.copytree(example_models, tmp_path / "models")
    target = tmp_path / "demo.infer"
    shutil.copy(DEMO, target)
    return target


def test_check_clean_spec_exits_0(example_models: Path):
    code, out, _ = infc("check", str(DEMO))
    assert code == ExitCode.OK
    assert out.strip().endswith(f"{DEMO}: ok")


def test_check_reports_errors_and_exits_1(example_models: Path):
    code, out, _ = infc("check", "--color", "never", str(NEGATIVE / "privacy.infer"))
    assert code == ExitCode.ERRORS
    assert "error[E0301]" in out and "located cloud" in out
    assert "\033[" not in out
    assert out.strip().endswith("4 errors")


def test_check_json_has_the_contract_keys(example_models: Path):
    code, out, _ = infc("check", "--format", "json", str(NEGATIVE / "values.infer"))
    assert code == ExitCode.ERRORS
    records = json.loads(out)
    assert records
    keys = {
        "severity",
        "code",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "notes",
    }
    for record in records:
        assert keys <= record.keys()
        assert record["file"].endswith("values.infer")


def test_check_colour_always_paints(example_models: Path):
    _, out, _ = infc("--color", "always", "check", str(NEGATIVE / "privacy.infer"))
    assert "\033[1;31merror[E0301]" in out


def test_check_of_several_files_and_a_missing_one(example_models: Path):
    code, out, err = infc("check", str(DEMO), str(ROOT / "nope.infer"))
    assert code == ExitCode.ERRORS
    assert "cannot read" in err and "nope.infer" in err
    assert f"{DEMO}: ok" in out


def test_usage_error_exits_1():
    with pytest.raises(SystemExit) as exc:
        infc("plan")
    assert exc.value.code == ExitCode.ERRORS


def test_plan_prints_the_review(example_models: Path):
    code, out, _ = infc("plan", str(DEMO))
    assert code == ExitCode.OK
    assert out.startswith("Plan for demo.infer")
    assert out.rstrip().splitlines()[-1].startswith("Plan:")


def test_plan_json_loads_back(example_models: Path):
    code, out, _ = infc("plan", "--json", str(DEMO))
    assert code == ExitCode.OK
    plan = json.loads(out)
    assert plan["plan_version"] == 1 and plan["content_hash"].startswith("sha256:")


def test_plan_with_errors_prints_diagnostics_and_exits_1(example_models: Path):
    code, out, err = infc("plan", str(NEGATIVE / "names.infer"))
    assert code == ExitCode.ERRORS
    assert out == ""
    assert "error[E0102]" in err


def test_plan_detailed_exitcode_against_a_saved_plan(spec_copy: Path, tmp_path: Path):
    _, saved, _ = infc("plan", "--json", str(spec_copy))
    before = tmp_path / "before.json"
    before.write_text(saved)
    code, out, _ = infc("plan", str(spec_copy), "--against", str(before), "--detailed-exitcode")
    assert code == ExitCode.OK
    assert "No changes" in out
    text = spec_copy.read_text()
    assert "window 2ms" in text
    spec_copy.write_text(text.replace("window 2ms", "window 4ms", 1))
    code, out, _ = infc("plan", str(spec_copy), "--against", str(before), "--detailed-exitcode")
    assert code == ExitCode.CHANGES
    assert "~ model" in out and "window_s" in out
    code, _, _ = infc("plan", str(spec_copy), "--against", str(before))
    assert code == ExitCode.OK


def test_plan_against_a_broken_plan_file(spec_copy: Path, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"plan_version": 1}')
    code, _, err = infc("plan", str(spec_copy), "--against", str(bad))
    assert code == ExitCode.ERRORS
    assert "is not a routing plan" in err


class _FakeRpcError(grpc.RpcError):
    """What a real GetPlan call raises, without the call (unit tests open no socket)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _gateway_answers(monkeypatch: pytest.MonkeyPatch, answer) -> list[tuple[str, float]]:
    """Replace the admin-service call with `answer` (a response or an error); record calls."""
    calls = []

    def get_plan(address: str, timeout_s: float, access=None):
        calls.append((address, timeout_s))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(gateway_plan, "get_plan", get_plan)
    return calls


def test_plan_against_a_gateway_that_does_not_answer(example_models, monkeypatch):
    refused = _FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: "
        "ipv4:127.0.0.1:8001: Failed to connect to remote host: Connection refused",
    )
    calls = _gateway_answers(monkeypatch, refused)
    code, out, err = infc("plan", str(DEMO), "--against", "127.0.0.1:8001")
    assert code == ExitCode.ERRORS and out == ""
    assert err.strip() == (
        "infc: no gateway answers at 127.0.0.1:8001 (connection refused): is `infc serve` running?"
    )
    assert calls == [("127.0.0.1:8001", gateway_plan.TIMEOUT_S)]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, "did not answer within 5 s"),
        (grpc.StatusCode.UNIMPLEMENTED, "has no admin service"),
        (grpc.StatusCode.INTERNAL, "refused to give its plan: INTERNAL: boom"),
    ],
)
def test_plan_against_a_gateway_that_fails(example_models, monkeypatch, status, message):
    _gateway_answers(monkeypatch, _FakeRpcError(status, "boom"))
    code, _, err = infc("plan", str(DEMO), "--against", "unix:/tmp/gateway.sock")
    assert code == ExitCode.ERRORS
    assert err.startswith("infc: ") and message in err and "unix:/tmp/gateway.sock" in err


def test_plan_against_a_gateway_diffs_its_plan(spec_copy: Path, monkeypatch):
    _, served, _ = infc("plan", "--json", str(spec_copy))
    _gateway_answers(monkeypatch, admin_pb2.GetPlanResponse(plan_json=served))
    code, out, _ = infc(
        "plan", str(spec_copy), "--against", "localhost:8001", "--detailed-exitcode"
    )
    assert code == ExitCode.OK and "No changes" in out
    spec_copy.write_text(spec_copy.read_text().replace("window 2ms", "window 4ms", 1))
    code, out, _ = infc(
        "plan", str(spec_copy), "--against", "localhost:8001", "--detailed-exitcode"
    )
    assert code == ExitCode.CHANGES and "~ model" in out


def test_plan_against_a_gateway_whose_plan_does_not_validate(example_models, monkeypatch):
    _gateway_answers(monkeypatch, admin_pb2.GetPlanResponse(plan_json='{"plan_version": 1}'))
    code, _, err = infc("plan", str(DEMO), "--against", "127.0.0.1:8001")
    assert code == ExitCode.ERRORS
    assert err.startswith("infc: the plan from the gateway at 127.0.0.1:8001 is not a routing plan")


def test_a_plan_file_named_like_an_address_is_read_as_a_file(spec_copy, tmp_path, monkeypatch):
    _, saved, _ = infc("plan", "--json", str(spec_copy))
    calls = _gateway_answers(monkeypatch, _FakeRpcError(grpc.StatusCode.UNAVAILABLE, ""))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway:8001").write_text(saved)
    code, out, _ = infc("plan", str(spec_copy), "--against", "gateway:8001")
    assert code == ExitCode.OK and "No changes" in out and calls == []


def test_fmt_check_diff_and_write(spec_copy: Path):
    messy = spec_copy.read_text().replace("\n  ", "\n      ", 3)
    spec_copy.write_text(messy)
    code, out, _ = infc("fmt", "--check", str(spec_copy))
    assert code == ExitCode.ERRORS and "would reformat" in out
    assert spec_copy.read_text() == messy
    code, out, _ = infc("fmt", "--diff", str(spec_copy))
    assert code == ExitCode.OK and out.startswith("---")
    assert spec_copy.read_text() == messy
    code, out, _ = infc("fmt", str(spec_copy))
    assert code == ExitCode.OK and "reformatted" in out
    assert spec_copy.read_text() == DEMO.read_text()
    code, out, _ = infc("fmt", "--check", str(spec_copy))
    assert code == ExitCode.OK and out == ""


def test_fmt_stdin_to_stdout():
    code, out, _ = infc("fmt", "-", stdin="target a {\nhardware cpu\n}\n")
    assert code == ExitCode.OK
    assert out == "target a {\n  hardware cpu\n}\n"


def test_fmt_refuses_a_broken_file(tmp_path: Path):
    broken = tmp_path / "broken.infer"
    broken.write_text("target a {\n  hardware [cpu\n}\n")
    code, _, err = infc("fmt", str(broken))
    assert code == ExitCode.ERRORS
    assert "error[E0001]" in err and "syntax errors" in err
    assert broken.read_text() == "target a {\n  hardware [cpu\n}\n"


def test_fmt_check_and_diff_on_stdin():
    messy = "target a {\nhardware cpu\n}\n"
    code, out, _ = infc("fmt", "--check", "-", stdin=messy)
    assert code == ExitCode.ERRORS and "would reformat -" in out
    code, out, _ = infc("fmt", "--diff", "-", stdin=messy)
    assert code == ExitCode.OK and "+  hardware cpu" in out
    code, out, _ = infc("fmt", "--check", "-", stdin="target a {\n  hardware cpu\n}\n")
    assert code == ExitCode.OK and out == ""


def test_plan_warnings_reach_stderr_with_json_and_against(example_models: Path, tmp_path: Path):
    spec = NEGATIVE / "slos.infer"
    code, out, err = infc("plan", "--json", "--format", "json", str(spec))
    assert code == ExitCode.OK
    assert json.loads(out)["plan_version"] == 1
    assert {w["code"] for w in json.loads(err)} == {"W0501", "W0502", "W0503"}
    saved = tmp_path / "plan.json"
    saved.write_text(out)
    code, out, err = infc("plan", "--color", "never", "--against", str(saved), str(spec))
    assert code == ExitCode.OK and "No changes" in out
    assert "warning[W0501]" in err


def test_remote_workers_option_is_parsed_by_target():
    from inferplane.cli.serve_command import parse_remote

    targets = ["cpu-a", "gpu-b"]
    assert parse_remote([], targets) == {}
    assert parse_remote(["cpu-a=h0:9100, h1:9100,h0:9100", "gpu-b=unix:/run/w.sock"], targets) == {
        "cpu-a": ["h0:9100", "h1:9100"],
        "gpu-b": ["unix:/run/w.sock"],
    }
    for value, says in [
        ("cpu-a", "is not TARGET=ADDR"),
        ("=h0:9100", "is not TARGET=ADDR"),
        ("tpu=h0:9100", "the spec has no target `tpu`; its targets: cpu-a, gpu-b"),
        ("cpu-a=h0", "`h0` is not HOST:PORT or unix:PATH (target `cpu-a`)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(says)):
            parse_remote([value], targets)
    with pytest.raises(ValueError, match="given twice"):
        parse_remote(["cpu-a=h0:1", "cpu-a=h1:1"], targets)


def test_serve_refuses_a_bad_remote_before_starting(example_models):
    code, out, err = infc("serve", str(DEMO), "--remote", "nowhere=h:1")
    assert code == ExitCode.ERRORS and out == ""
    assert err == "infc: --remote: the spec has no target `nowhere`; its targets: laptop\n"


def _apply_answers(monkeypatch: pytest.MonkeyPatch, served: str, answer) -> list[str]:
    """The gateway serves plan JSON `served`; ApplyPlan answers `answer` (a response or
    an error). Returns the plans sent to ApplyPlan."""
    sent = []

    def apply_plan(address, plan_json, timeout_s, access=None):
        sent.append(plan_json)
        if isinstance(answer, Exception):
            raise answer
        return answer

    _gateway_answers(monkeypatch, admin_pb2.GetPlanResponse(plan_json=served))
    monkeypatch.setattr(gateway_plan, "apply_plan", apply_plan)
    return sent


def test_apply_with_nothing_to_change_sends_nothing(spec_copy: Path, monkeypatch):
    _, served, _ = infc("plan", "--json", str(spec_copy))
    sent = _apply_answers(monkeypatch, served, None)
    code, out, _ = infc("apply", str(spec_copy), "--gateway", "127.0.0.1:8001")
    assert code == ExitCode.OK and "No changes" in out and sent == []


def test_apply_prints_the_diff_then_what_the_gateway_said(spec_copy: Path, monkeypatch):
    _, served, _ = infc("plan", "--json", str(spec_copy))
    spec_copy.write_text(spec_copy.read_text().replace("window 2ms", "window 4ms", 1))
    done = admin_pb2.ApplyPlanResponse(content_hash="sha256:new", previous_hash="sha256:old")
    sent = _apply_answers(monkeypatch, served, done)
    code, out, err = infc("apply", str(spec_copy), "--gateway", "127.0.0.1:8001")
    assert code == ExitCode.OK, err
    assert "~ model" in out and "window_s" in out
    assert out.rstrip().endswith(
        "applied: the gateway at 127.0.0.1:8001 serves sha256:new (was sha256:old)"
    )
    assert len(sent) == 1 and '"window_s": 0.004' in sent[0]


@pytest.mark.parametrize(
    ("status", "details", "says"),
    [
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "model a@1 is new: x; target `t` is new: it has no workers yet, so restart to "
            "start them",
            "refused the plan; it serves sha256:",
        ),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "this call needs an admin token: the bearer token is not accepted",
            "does not take a plan from here: this call needs an admin token",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the gateway on the new plan is not ready (…); the old plan serves on",
            "could not take the plan: the gateway on the new plan is not ready",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the gateway is stopping; the old plan serves until it exits",
            "could not take the plan: the gateway is stopping",
        ),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "the plan's content_hash does not match its content",
            "rejected the plan: the plan's content_hash does not match",
        ),
        (grpc.StatusCode.INTERNAL, "boom", "did not apply the plan: INTERNAL: boom"),
    ],
)
def test_apply_refusals_are_explained_and_exit_1(
    spec_copy: Path, monkeypatch, status, details, says
):
    _, served, _ = infc("plan", "--json", str(spec_copy))
    spec_copy.write_text(spec_copy.read_text().replace("window 2ms", "window 4ms", 1))
    _apply_answers(monkeypatch, served, _FakeRpcError(status, details))
    code, _, err = infc("apply", str(spec_copy), "--gateway", "127.0.0.1:8001")
    assert code == ExitCode.ERRORS and says in err, err
    if status == grpc.StatusCode.FAILED_PRECONDITION:
        assert err.endswith(
            "\n  - model a@1 is new: x\n  - target `t` is new: it has no workers yet, so "
            "restart to start them\n"
        )
