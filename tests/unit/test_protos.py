"""The committed stubs are exactly what `make protos` generates from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROTOS = Path(__file__).resolve().parents[2] / "protos"


def _generator():
    spec = importlib.util.spec_from_file_location("protos_generate", PROTOS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path):
    written = _generator().generate(tmp_path)
    assert written, "no stubs generated"
    for fresh in written:
        committed = PROTOS / fresh.name
        assert committed.exists(), f"{fresh.name} is not committed: run `make protos`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{fresh.name} drifted from its .proto: run `make protos` and commit"
        )


def test_stubs_import_as_inferplane_protos():
    from inferplane.protos import worker_pb2, worker_pb2_grpc

    assert worker_pb2.DESCRIPTOR.package == "inferplane.worker.v1"
    assert hasattr(worker_pb2_grpc, "WorkerServicer")
