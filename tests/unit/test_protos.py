"""The committed stubs are exactly what `make protos` generates from the .proto files,
and the public API's messages are Triton's, field for field, on the wire."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

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


# --- the public API: Triton's wire format, field for field

# Facts of KServe v2 / Triton's grpc_service.proto and model_config.proto that
# every client depends on; checked here whether or not tritonclient is installed.
KNOWN_NUMBERS = [
    ("grpc_service", "ModelInferRequest", "model_name", 1),
    ("grpc_service", "ModelInferRequest", "inputs", 5),
    ("grpc_service", "ModelInferRequest", "outputs", 6),
    ("grpc_service", "ModelInferRequest", "raw_input_contents", 7),
    ("grpc_service", "ModelInferRequest.InferInputTensor", "contents", 5),
    ("grpc_service", "InferTensorContents", "fp32_contents", 6),
    ("grpc_service", "InferTensorContents", "bytes_contents", 8),
    ("grpc_service", "ModelInferResponse", "outputs", 5),
    ("grpc_service", "ModelInferResponse", "raw_output_contents", 6),
    ("grpc_service", "ModelStreamInferResponse", "infer_response", 2),
    ("grpc_service", "ModelStatistics", "batch_stats", 7),
    ("grpc_service", "InferParameter", "uint64_param", 5),
    ("model_config", "ModelConfig", "max_batch_size", 4),
    ("model_config", "ModelConfig", "dynamic_batching", 11),
    ("model_config", "ModelConfig", "backend", 17),
    ("model_config", "ModelInput", "dims", 4),
    ("model_config", "ModelDynamicBatching", "max_queue_delay_microseconds", 2),
]

# Every message of grpc_service.proto is declared with all of Triton's fields;
# model_config.proto declares a subset (each field with Triton's number).
COMPLETE_FILES = {"grpc_service"}


def _stubs():
    from inferplane.protos import grpc_service_pb2, model_config_pb2

    return {"grpc_service": grpc_service_pb2, "model_config": model_config_pb2}


def _message(module, dotted: str):
    descriptor = module.DESCRIPTOR.message_types_by_name[dotted.split(".")[0]]
    for part in dotted.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[part]
    return descriptor


@pytest.mark.parametrize(("stub", "message", "field", "number"), KNOWN_NUMBERS)
def test_known_field_numbers(stub: str, message: str, field: str, number: int):
    assert _message(_stubs()[stub], message).fields_by_name[field].number == number


def test_public_api_names_and_methods():
    from inferplane.protos import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2

    assert grpc_service_pb2.DESCRIPTOR.package == "inference"
    assert model_config_pb2.DESCRIPTOR.package == "inference"
    assert [d.name for d in grpc_service_pb2.DESCRIPTOR.dependencies] == [
        "inferplane/protos/model_config.proto"
    ]
    service = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
    }
    stream = methods["ModelStreamInfer"]
    assert (stream.client_streaming, stream.server_streaming) == (True, True)
    assert stream.output_type.full_name == "inference.ModelStreamInferResponse"
    assert hasattr(grpc_service_pb2_grpc, "GRPCInferenceServiceServicer")
    oneof = model_config_pb2.ModelConfig.DESCRIPTOR.oneofs_by_name["scheduling_choice"]
    assert [f.name for f in oneof.fields] == ["dynamic_batching"]


def _triton_files() -> dict[str, descriptor_pb2.FileDescriptorProto] | None:
    """tritonclient's own descriptors, read from its generated modules' source.

    They are parsed, not imported: both define the package `inference`, and
    protobuf's default pool refuses a second definition of the same symbols
    (tritonclient and our stubs cannot be imported into one process).
    """
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "grpc"
    files = {}
    for ours, theirs in (
        ("grpc_service", "service_pb2.py"),
        ("model_config", "model_config_pb2.py"),
    ):
        for node in ast.walk(ast.parse((folder / theirs).read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
                files[ours] = descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    return files


def _fields(message: descriptor_pb2.DescriptorProto) -> dict[str, tuple]:
    """name → what the wire depends on: number, label, type, type name and oneof."""
    return {
        f.name: (
            f.number,
            f.label,
            f.type,
            f.type_name,
            message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
        )
        for f in message.field
    }


def _compare_messages(ours, theirs, complete: bool, path: str, problems: list[str]) -> None:
    """Each field of ours must be tritonclient's (same number, type, oneof). A
    message or field the installed tritonclient does not know at all (neither
    its name nor its number) is newer than that client and passes."""
    by_name = {m.name: m for m in theirs}
    for message in ours:
        where = f"{path}{message.name}"
        other = by_name.get(message.name)
        if other is None:
            continue
        mine, its = _fields(message), _fields(other)
        numbers = {wire[0]: name for name, wire in its.items()}
        for name, wire in mine.items():
            if name in its and wire != its[name]:
                problems.append(f"{where}.{name}: ours {wire}, tritonclient {its[name]}")
            elif name not in its and wire[0] in numbers:
                problems.append(f"{where}.{name}: tritonclient numbers {numbers[wire[0]]} so")
        if complete:
            problems.extend(f"{where}.{name}: missing here" for name in its.keys() - mine.keys())
        _compare_enums(message.enum_type, other.enum_type, f"{where}.", problems)
        _compare_messages(message.nested_type, other.nested_type, complete, f"{where}.", problems)


def _compare_enums(ours, theirs, path: str, problems: list[str]) -> None:
    by_name = {e.name: e for e in theirs}
    for enum in ours:
        other = by_name.get(enum.name)
        values = {v.name: v.number for v in enum.value}
        if other is None or values != {v.name: v.number for v in other.value}:
            problems.append(f"{path}{enum.name}: values differ from tritonclient's")


def test_descriptors_match_tritonclient():
    theirs = _triton_files()
    if theirs is None:
        pytest.skip("tritonclient is not installed")
    problems: list[str] = []
    for stub, module in _stubs().items():
        ours = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(ours)
        other = theirs[stub]
        assert ours.package == other.package
        complete = stub in COMPLETE_FILES
        _compare_messages(ours.message_type, other.message_type, complete, "", problems)
        _compare_enums(ours.enum_type, other.enum_type, "", problems)
        their_methods = {m.name: m for s in other.service for m in s.method}
        for method in (m for s in ours.service for m in s.method):
            wire = (method.input_type, method.output_type)
            wire += (method.client_streaming, method.server_streaming)
            its = their_methods.get(method.name)
            if its is None or wire != (
                its.input_type,
                its.output_type,
                its.client_streaming,
                its.server_streaming,
            ):
                problems.append(f"rpc {method.name}: differs from tritonclient's")
    assert not problems, "\n".join(problems)
