"""The public API's protobuf ↔ domain: gateway/converters.py, model_info.py and errors.py.

Tensors round-trip in raw and typed form for every datatype; every refusal
names the tensor and both sides; metadata and configuration come from the
compiled demo plan. When tritonclient is installed, its own request builder
and result reader talk to our converters through serialized bytes. Its
generated modules cannot be imported beside ours (both define the protobuf
package `inference` in the default descriptor pool), so the `triton` fixture
rebuilds them from their descriptors in a private pool first.
"""

from __future__ import annotations

import ast
import importlib.util
import struct
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.internal import enum_type_wrapper

from inferplane.compiler import plan as plan_mod
from inferplane.compiler.compilation import Compilation
from inferplane.gateway import converters as conv
from inferplane.gateway import domain, errors, model_info
from inferplane.gateway.errors import Internal, InvalidArgument, NotFound
from inferplane.protos import grpc_service_pb2 as pb
from inferplane.protos import model_config_pb2 as mc

ROOT = Path(__file__).resolve().parents[2]


def _bf16(values: list[float]) -> np.ndarray:
    import ml_dtypes

    return np.array(values, dtype=ml_dtypes.bfloat16)


# One (1, 3) sample per datatype, with each type's extremes where they matter.
SAMPLES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], np.uint8),
    "UINT16": np.array([[0, 7, 65535]], np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 0, 127]], np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], np.int64),
    "FP16": np.array([[-1.5, 0.0, 65504.0]], np.float16),
    "FP32": np.array([[-1.5, 0.0, 3.25]], np.float32),
    "FP64": np.array([[-1.5, 0.0, 1e300]], np.float64),
    "BYTES": np.array([[b"a", b"", b"\x00\xff"]], dtype=object),
}
TYPED = [name for name in SAMPLES if name != "FP16"]


def _sample(datatype: str) -> np.ndarray:
    return _bf16([-1.5, 0.0, 3.0]).reshape(1, 3) if datatype == "BF16" else SAMPLES[datatype]


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype.newbyteorder("<")
        assert got.tobytes() == want.tobytes()


def _over_the_wire(request: domain.InferRequest, *, raw: bool) -> domain.InferRequest:
    msg = conv.infer_request_to_proto(request, raw=raw)
    return conv.infer_request_from_proto(pb.ModelInferRequest.FromString(msg.SerializeToString()))


def _refusal(msg: pb.ModelInferRequest) -> str:
    with pytest.raises(InvalidArgument) as caught:
        conv.infer_request_from_proto(msg)
    return str(caught.value)


# --- tensors both ways


@pytest.mark.parametrize("datatype", [*SAMPLES, "BF16"])
def test_raw_round_trip(datatype: str):
    array = _sample(datatype)
    request = domain.InferRequest(model="m", version="", id="r1", inputs={"x": array})
    msg = conv.infer_request_to_proto(request)
    assert msg.inputs[0].datatype == datatype
    assert list(msg.inputs[0].shape) == [1, 3]
    assert not msg.inputs[0].HasField("contents")
    _same(_over_the_wire(request, raw=True).inputs["x"], array)


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_round_trip(datatype: str):
    array = SAMPLES[datatype]
    request = domain.InferRequest(model="m", version="", id="", inputs={"x": array})
    msg = conv.infer_request_to_proto(request, raw=False)
    assert not msg.raw_input_contents
    assert msg.inputs[0].HasField("contents")
    _same(_over_the_wire(request, raw=False).inputs["x"], array)


def test_several_inputs_keep_their_order_and_shapes():
    inputs = {
        "features": np.arange(12, dtype=np.float32).reshape(4, 3),
        "ids": np.array([[1], [2], [3], [4]], np.int64),
        "text": np.array([b"one", b"two", b"three", b"four"], dtype=object),
    }
    request = domain.InferRequest(model="m", version="2", id="r", inputs=inputs, outputs=("s",))
    for raw in (True, False):
        back = _over_the_wire(request, raw=raw)
        assert list(back.inputs) == ["features", "ids", "text"]
        for name, array in inputs.items():
            _same(back.inputs[name], array)
        assert (back.model, back.version, back.id, back.outputs) == ("m", "2", "r", ("s",))


def test_raw_layout_is_little_endian_with_length_prefixed_bytes():
    request = domain.InferRequest(
        model="m",
        version="",
        id="",
        inputs={"f": np.array([1.0], np.float32), "t": np.array(["ab", ""])},
    )
    msg = conv.infer_request_to_proto(request)
    assert msg.raw_input_contents[0] == b"\x00\x00\x80\x3f"
    assert msg.raw_input_contents[1] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_text_becomes_utf8_bytes_both_ways():
    request = domain.InferRequest(model="m", version="", id="", inputs={"t": np.array(["héllo"])})
    for raw in (True, False):
        assert _over_the_wire(request, raw=raw).inputs["t"].tolist() == ["héllo".encode()]


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_floats_have_no_typed_form(datatype: str):
    request = domain.InferRequest(model="m", version="", id="", inputs={"h": _sample(datatype)})
    with pytest.raises(InvalidArgument, match=f"input `h`: {datatype} has no typed contents"):
        conv.infer_request_to_proto(request, raw=False)
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="h", datatype=datatype, shape=[1], contents=pb.InferTensorContents())
    assert _refusal(msg) == f"input `h`: {datatype} has no typed contents field; send it raw"


def test_parameters_round_trip_with_their_types():
    params = {"flag": True, "limit": 3, "big": 2**64 - 1, "ratio": 0.5, "tenant": "acme"}
    request = domain.InferRequest(model="m", version="", id="", inputs={}, parameters=params)
    msg = conv.infer_request_to_proto(request)
    assert msg.parameters["flag"].WhichOneof("parameter_choice") == "bool_param"
    assert msg.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert dict(_over_the_wire(request, raw=True).parameters) == params


def test_binary_data_output_flag_is_ignored():
    msg = pb.ModelInferRequest(model_name="m")
    msg.outputs.add(name="score").parameters["binary_data"].bool_param = True
    assert conv.infer_request_from_proto(msg).outputs == ("score",)


# --- refusals: each names the tensor and both sides


def _features(count: int, *, shape=(4, 30)) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="fraud-scorer")
    tensor = msg.inputs.add(name="features", datatype="FP32", shape=shape)
    tensor.contents.fp32_contents.extend([0.5] * count)
    return msg


def _raw(*inputs: tuple[str, str, list[int], bytes]) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape, data in inputs:
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
        msg.raw_input_contents.append(data)
    return msg


def test_typed_count_must_match_the_shape():
    assert _refusal(_features(119)) == (
        "input `features`: shape [4, 30] needs 120 FP32 values, got 119"
    )
    missing = pb.ModelInferRequest(model_name="m")
    missing.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    assert _refusal(missing) == "input `features`: shape [1, 30] needs 30 FP32 values, got 0"


def test_raw_length_must_match_the_shape():
    msg = _raw(("features", "FP32", [4, 30], bytes(476)))
    assert _refusal(msg) == "input `features`: shape [4, 30] needs 480 bytes of FP32, got 476"


def test_raw_entries_must_match_the_inputs():
    msg = _raw(("a", "FP32", [1], bytes(4)), ("b", "FP32", [1], bytes(4)))
    msg.inputs.add(name="c", datatype="FP32", shape=[1])
    assert _refusal(msg) == "raw_input_contents has 2 entries for 3 inputs"
    msg = _raw(("a", "FP32", [1], bytes(4)))
    msg.inputs.add(name="b", datatype="FP32", shape=[1])
    assert _refusal(msg) == "raw_input_contents has 1 entry for 2 inputs"


def test_raw_and_typed_are_not_mixed():
    msg = _raw(("a", "FP32", [1], bytes(4)))
    msg.inputs.add(name="b", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    msg.raw_input_contents.append(bytes(4))
    assert _refusal(msg) == (
        "input `b` has typed contents but the request also has raw_input_contents: "
        "send every input one way or the other"
    )


def test_typed_values_must_sit_in_their_datatypes_field():
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="features", datatype="FP32", shape=[1]).contents.int_contents.append(1)
    assert _refusal(msg) == "input `features`: FP32 values go in fp32_contents, got int_contents"


def test_narrow_integers_are_range_checked():
    msg = pb.ModelInferRequest(model_name="m")
    small = msg.inputs.add(name="small", datatype="INT8", shape=[2])
    small.contents.int_contents.extend([1, 300])
    assert _refusal(msg) == "input `small`: value 300 is out of range for INT8"


def test_bytes_refusals():
    two = struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b"
    three = two + struct.pack("<I", 0)
    assert _refusal(_raw(("text", "BYTES", [2], three))) == (
        "input `text`: BYTES[2] needs 2 elements, got 3"
    )
    truncated = struct.pack("<I", 9) + b"ab"
    assert _refusal(_raw(("text", "BYTES", [1], truncated))) == (
        "input `text`: element 0 claims 9 bytes, only 2 remain"
    )
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.append(b"a")
    assert _refusal(msg) == "input `text`: shape [2] needs 2 BYTES values, got 1"


def test_datatype_and_shape_refusals():
    unknown = _raw(("x", "FP8", [1], b"\x00"))
    assert _refusal(unknown).startswith("input `x`: unknown datatype 'FP8'; KServe datatypes are")
    negative = _raw(("x", "FP32", [-1, 30], b""))
    assert _refusal(negative) == "input `x`: shape [-1, 30] has a negative dimension"


def test_request_level_refusals():
    assert _refusal(pb.ModelInferRequest()) == "the request names no model (model_name is empty)"
    twice = _raw(("x", "FP32", [1], bytes(4)), ("x", "FP32", [1], bytes(4)))
    assert _refusal(twice) == "input `x` appears twice"
    msg = _raw(("x", "FP32", [1], bytes(4)))
    msg.outputs.add(name="score")
    msg.outputs.add(name="score")
    assert _refusal(msg) == "output `score` is requested twice"
    msg = _raw(("x", "FP32", [1], bytes(4)))
    msg.parameters["p"].CopyFrom(pb.InferParameter())
    assert _refusal(msg) == "parameter `p` has no value"


def test_classification_and_shared_memory_are_refused():
    msg = _raw(("x", "FP32", [1], bytes(4)))
    msg.outputs.add(name="score").parameters["classification"].int64_param = 3
    assert _refusal(msg) == (
        "output `score`: classification is not supported; request the output itself"
    )
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[1]).parameters[
        "shared_memory_region"
    ].string_param = "region0"
    assert _refusal(msg) == (
        "input `x`: shared memory (shared_memory_region) is not supported by this server; "
        "send the data in the request"
    )


# --- responses


def test_response_is_raw_in_output_order():
    outputs = {
        "score": np.array([[0.25, 0.75]], np.float32),
        "label": np.array([b"fraud"], dtype=object),
        "half": np.array([1.5], np.float16),
    }
    msg = conv.infer_response_to_proto("fraud-scorer", 2, "req-7", outputs)
    assert (msg.model_name, msg.model_version, msg.id) == ("fraud-scorer", "2", "req-7")
    assert [(o.name, o.datatype, list(o.shape)) for o in msg.outputs] == [
        ("score", "FP32", [1, 2]),
        ("label", "BYTES", [1]),
        ("half", "FP16", [1]),
    ]
    assert not any(o.HasField("contents") for o in msg.outputs)
    assert len(msg.raw_output_contents) == 3
    back = conv.infer_response_from_proto(pb.ModelInferResponse.FromString(msg.SerializeToString()))
    for name, array in outputs.items():
        _same(back[name], array)


def test_response_with_typed_outputs_decodes():
    msg = pb.ModelInferResponse(model_name="m")
    msg.outputs.add(name="n", datatype="INT64", shape=[2]).contents.int64_contents.extend([1, 2])
    _same(conv.infer_response_from_proto(msg)["n"], np.array([1, 2], np.int64))
    msg.raw_output_contents.extend([b"", b""])
    with pytest.raises(InvalidArgument, match=r"raw_output_contents has 2 entries for 1 output$"):
        conv.infer_response_from_proto(msg)


def test_an_output_that_cannot_be_sent_is_internal():
    with pytest.raises(Internal) as caught:
        conv.infer_response_to_proto("m", 1, "", {"z": np.zeros(2, np.complex64)})
    assert str(caught.value) == (
        "model `m` answered an output it cannot send: "
        "output `z`: no KServe datatype for NumPy dtype complex64"
    )


def test_stream_messages():
    answer = conv.infer_response_to_proto("m", 1, "a", {"y": np.zeros(1, np.float32)})
    assert conv.stream_response_to_proto(answer).infer_response == answer
    assert conv.stream_error_to_proto(NotFound("no model `x`")).error_message == "no model `x`"
    bug = conv.stream_error_to_proto(KeyError("secret detail"))
    assert bug.error_message == errors.INTERNAL_MESSAGE


# --- errors and the status table


def test_every_kind_has_a_status_of_the_same_name():
    assert set(errors.STATUS) == set(errors.ErrorKind)
    for kind, status in errors.STATUS.items():
        assert status.name == kind.value


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.Overloaded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.Internal("x"), grpc.StatusCode.INTERNAL),
        (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_status_of_domain_errors(error: errors.GatewayError, status: grpc.StatusCode):
    assert errors.status_of(error) == status
    assert errors.public_message(error) == "x"


def test_foreign_errors_with_a_kind_word_and_bugs():
    class RouteMissing(Exception):
        kind = "NOT_FOUND"  # as gateway/routing.py declares its errors

    class Odd(Exception):
        kind = "TEAPOT"

    assert errors.status_of(RouteMissing("r")) == grpc.StatusCode.NOT_FOUND
    assert errors.public_message(RouteMissing("r")) == "r"
    for bug in (Odd("o"), ZeroDivisionError("secret")):
        assert errors.status_of(bug) == grpc.StatusCode.INTERNAL
        assert errors.public_message(bug) == errors.INTERNAL_MESSAGE


def test_error_from_a_peers_status():
    error = errors.error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad batch")
    assert isinstance(error, errors.InvalidArgument)
    assert str(error) == "bad batch"
    other = errors.error_from_status(grpc.StatusCode.CANCELLED, "gone")
    assert isinstance(other, errors.Internal)
    assert str(other) == "CANCELLED: gone"


# --- the plan: metadata, configuration, index, statistics


@pytest.fixture(scope="module")
def demo(example_models: Path) -> plan_mod.Plan:
    plan = Compilation.from_path(ROOT / "specs" / "demo.infer", use_profiles=False).plan
    assert plan is not None
    return plan


def _replace_model(plan: plan_mod.Plan, name: str, **changes) -> plan_mod.Plan:
    models = [m.model_copy(update=changes) if m.name == name else m for m in plan.models]
    return plan.model_copy(update={"models": models})


def test_model_metadata_keeps_the_batch_axis(demo: plan_mod.Plan):
    meta = model_info.model_metadata_to_proto(demo, "fraud-scorer")
    assert (meta.name, list(meta.versions), meta.platform) == (
        "fraud-scorer",
        ["1", "2"],
        "onnxruntime_onnx",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("features", "FP32", [-1, 30])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("score", "FP32", [-1, 2])
    ]
    text = model_info.model_metadata_to_proto(demo, "support-intent", "1")
    assert [(t.name, t.datatype, list(t.shape)) for t in text.inputs] == [("text", "BYTES", [-1])]


def test_unknown_names_and_versions(demo: plan_mod.Plan):
    with pytest.raises(NotFound) as caught:
        model_info.model_metadata_to_proto(demo, "fraud-scorer", "3")
    assert str(caught.value) == "model `fraud-scorer` has no version `3`; its versions are 1, 2"
    with pytest.raises(NotFound) as caught:
        model_info.model_config_to_proto(demo, "nope")
    assert str(caught.value) == (
        "unknown model or route `nope`; known: `fraud-lite`, `fraud-scorer`, `payments`, "
        "`support-intent`"
    )
    with pytest.raises(InvalidArgument, match="`payments` is a route and takes no version"):
        model_info.model_metadata_to_proto(demo, "payments", "1")


def test_a_route_answers_as_its_primary_model_under_its_own_name(demo: plan_mod.Plan):
    meta = model_info.model_metadata_to_proto(demo, "payments")
    scorer = model_info.model_metadata_to_proto(demo, "fraud-scorer", "1")
    # perf_analyzer sends its inferences to the name the metadata gives
    assert meta.name == "payments"
    assert list(meta.versions) == []
    assert meta.inputs == scorer.inputs
    assert meta.outputs == scorer.outputs
    config = model_info.model_config_to_proto(demo, "payments").config
    assert config.name == "payments"
    assert not config.HasField("version_policy")
    assert config.parameters["route"].string_value == (
        "fraud-scorer@1 90%, fraud-scorer@2 10%; fallback fraud-lite@1"
    )


def test_primary_entry_is_the_largest_share_first_on_a_tie():
    entries = [
        plan_mod.RouteEntry(model="a", version=1, percent=30),
        plan_mod.RouteEntry(model="b", version=1, percent=35),
        plan_mod.RouteEntry(model="c", version=1, percent=35),
    ]
    assert domain.primary_entry(plan_mod.Route(name="r", entries=entries)).model == "b"


def test_model_config_dims_exclude_the_batch_axis(demo: plan_mod.Plan):
    config = model_info.model_config_to_proto(demo, "fraud-scorer").config
    assert (config.name, config.platform, config.backend) == (
        "fraud-scorer",
        "onnxruntime_onnx",
        "onnxruntime",
    )
    assert config.max_batch_size == 32
    assert list(config.version_policy.specific.versions) == [1, 2]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("features", mc.TYPE_FP32, [30])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("score", mc.TYPE_FP32, [2])
    ]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == []  # adaptive
    assert [(g.name, g.kind, g.count) for g in config.instance_group] == [
        ("laptop", mc.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.parameters["precision"].string_value == "fp32"
    text = model_info.model_config_to_proto(demo, "support-intent").config
    assert text.max_batch_size == 16
    assert [(t.name, t.data_type, list(t.dims)) for t in text.input] == [
        ("text", mc.TYPE_STRING, [])
    ]
    assert list(text.output[0].dims) == [12]
    assert text.dynamic_batching.max_queue_delay_microseconds == 5000


def test_perf_analyzer_sees_consistent_shapes(demo: plan_mod.Plan):
    """It takes shapes from ModelMetadata, dropping the first dimension when
    ModelConfig's max_batch_size is above 0; that must give ModelConfig's dims."""
    names = [m.name for m in demo.models] + [r.name for r in demo.routes]
    for name in names:
        meta = model_info.model_metadata_to_proto(demo, name)
        config = json_format.MessageToDict(
            model_info.model_config_to_proto(demo, name).config, preserving_proto_field_name=True
        )
        batch = config.get("max_batch_size", 0)
        for tensors, configured in (
            (meta.inputs, config["input"]),
            (meta.outputs, config["output"]),
        ):
            for tensor, entry in zip(tensors, configured, strict=True):
                assert entry["name"] == tensor.name
                dims = [int(d) for d in entry.get("dims", [])]
                assert dims == list(tensor.shape)[1 if batch else 0 :], name


def test_model_config_without_a_batch_axis(demo: plan_mod.Plan):
    signature = plan_mod.Signature(
        inputs=[plan_mod.TensorSpec(name="features", datatype="FP32", shape=[30])],
        outputs=[plan_mod.TensorSpec(name="score", datatype="FP32", shape=[2])],
    )
    plan = _replace_model(demo, "fraud-lite", signature=signature)
    config = model_info.model_config_to_proto(plan, "fraud-lite").config
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [30]
    assert config.WhichOneof("scheduling_choice") is None
    assert list(model_info.model_metadata_to_proto(plan, "fraud-lite").inputs[0].shape) == [30]


def test_fixed_batching_prefers_its_size_and_tpu_runs_on_jax(demo: plan_mod.Plan):
    model = demo.model("fraud-lite", 1)
    shards = [
        s.model_copy(update={"batching": s.batching.model_copy(update={"adaptive": False})})
        for s in model.shards
    ]
    targets = [t.model_copy(update={"hardware": "tpu"}) for t in demo.targets]
    plan = _replace_model(demo, "fraud-lite", shards=shards).model_copy(update={"targets": targets})
    config = model_info.model_config_to_proto(plan, "fraud-lite").config
    assert list(config.dynamic_batching.preferred_batch_size) == [64]
    assert (config.platform, config.backend) == ("jax", "jax")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_MODEL
    assert model_info.model_metadata_to_proto(plan, "fraud-lite").platform == "jax"


def test_repository_index(demo: plan_mod.Plan):
    availability = {
        ("fraud-lite", 1): domain.Availability(),
        ("fraud-scorer", 1): domain.Availability("LOADING", "warming up"),
    }
    index = model_info.repository_index_to_proto(demo, availability)
    assert [(m.name, m.version, m.state, m.reason) for m in index.models] == [
        ("fraud-lite", "1", "READY", ""),
        ("fraud-scorer", "1", "LOADING", "warming up"),
        ("fraud-scorer", "2", "UNAVAILABLE", "no worker has reported it yet"),
        ("payments", "", "READY", ""),  # its fallback is ready
        ("support-intent", "1", "UNAVAILABLE", "no worker has reported it yet"),
    ]
    ready = model_info.repository_index_to_proto(demo, availability, ready_only=True)
    assert [m.name for m in ready.models] == ["fraud-lite", "payments"]
    nothing = model_info.repository_index_to_proto(demo, {})
    assert ("payments", "UNAVAILABLE", "none of its models is ready") in [
        (m.name, m.state, m.reason) for m in nothing.models
    ]


def test_model_statistics():
    stats = domain.ModelStats(
        name="fraud-scorer",
        version=1,
        last_inference_ms=1_700_000_000_000,
        inference_count=40,
        execution_count=3,
        success=domain.Duration(10, 5_000_000),
        fail=domain.Duration(1, 20_000),
        queue=domain.Duration(10, 900_000),
        compute_infer=domain.Duration(3, 3_000_000),
        batches=(
            domain.BatchStats(32, compute_infer=domain.Duration(1, 2_000_000)),
            domain.BatchStats(4, compute_infer=domain.Duration(2, 1_000_000)),
        ),
    )
    answer = model_info.model_statistics_to_proto([stats])
    row = answer.model_stats[0]
    assert (row.name, row.version, row.last_inference) == ("fraud-scorer", "1", 1_700_000_000_000)
    assert (row.inference_count, row.execution_count) == (40, 3)
    inference = row.inference_stats
    assert (inference.success.count, inference.success.ns) == (10, 5_000_000)
    assert (inference.fail.count, inference.queue.ns) == (1, 900_000)
    assert inference.compute_input.count == 0
    assert [(b.batch_size, b.compute_infer.count) for b in row.batch_stats] == [(4, 2), (32, 1)]


def test_server_metadata_and_health_answers():
    meta = model_info.server_metadata_to_proto("0.1.0")
    assert (meta.name, meta.version) == ("inferplane", "0.1.0")
    assert list(meta.extensions) == ["model_configuration", "statistics"]
    assert model_info.server_live_to_proto(True).live
    assert not model_info.server_ready_to_proto(False).ready
    assert model_info.model_ready_to_proto(True).ready
    request = pb.ModelConfigRequest(name="payments", version="")
    assert model_info.name_and_version(request) == ("payments", "")


# --- tritonclient, when installed


def _serialized_descriptor(path: Path) -> bytes:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return node.args[0].value
    raise AssertionError(f"no serialized descriptor in {path}")


@pytest.fixture(scope="module")
def triton():
    """tritonclient.grpc, its generated modules rebuilt in a private descriptor pool."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "grpc"
    before = set(sys.modules)
    pool = descriptor_pool.DescriptorPool()
    modules = {}
    for stem in ("model_config_pb2", "service_pb2"):  # the second imports the first
        file = pool.AddSerializedFile(_serialized_descriptor(folder / f"{stem}.py"))
        module = types.ModuleType(f"tritonclient.grpc.{stem}")
        module.DESCRIPTOR = file
        for name, message in file.message_types_by_name.items():
            setattr(module, name, message_factory.GetMessageClass(message))
        for name, enum in file.enum_types_by_name.items():
            setattr(module, name, enum_type_wrapper.EnumTypeWrapper(enum))
            for value in enum.values:
                setattr(module, value.name, value.number)
        sys.modules[module.__name__] = module
        modules[stem] = module
    try:
        import tritonclient.grpc as client
        from tritonclient.grpc import _utils

        yield SimpleNamespace(
            client=client, utils=_utils, pb=modules["service_pb2"], mc=modules["model_config_pb2"]
        )
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _triton_request(triton, inputs, outputs=(), parameters=None):
    return triton.utils._get_inference_request(
        model_name="fraud-scorer",
        inputs=inputs,
        model_version="",
        request_id="t-1",
        outputs=list(outputs),
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=parameters,
    )


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_tritonclient_request_is_decoded(triton, datatype: str):
    array = SAMPLES[datatype]
    tensor = triton.client.InferInput("x", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    wanted = triton.client.InferRequestedOutput("score")
    sent = _triton_request(triton, [tensor], [wanted], parameters={"tenant": "acme"})
    request = conv.infer_request_from_proto(
        pb.ModelInferRequest.FromString(sent.SerializeToString())
    )
    assert (request.model, request.version, request.id) == ("fraud-scorer", "", "t-1")
    assert request.outputs == ("score",)
    assert request.parameters == {"tenant": "acme"}
    _same(request.inputs["x"], array)


def test_tritonclient_classification_is_refused(triton):
    tensor = triton.client.InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.zeros(1, np.float32))
    wanted = triton.client.InferRequestedOutput("score", class_count=2)
    sent = _triton_request(triton, [tensor], [wanted])
    with pytest.raises(InvalidArgument, match="classification is not supported"):
        conv.infer_request_from_proto(pb.ModelInferRequest.FromString(sent.SerializeToString()))


def test_tritonclient_reads_our_response(triton):
    outputs = {name: SAMPLES[name] for name in ("FP32", "FP16", "INT64", "BOOL", "BYTES", "UINT8")}
    ours = conv.infer_response_to_proto("fraud-scorer", 1, "t-1", outputs)
    theirs = triton.pb.ModelInferResponse.FromString(ours.SerializeToString())
    result = triton.client.InferResult(theirs)
    for name, array in outputs.items():
        _same(result.as_numpy(name), array)
    assert result.get_response().model_version == "1"


def test_tritonclient_reads_our_metadata_and_config(triton, demo: plan_mod.Plan):
    ours = model_info.model_config_to_proto(demo, "fraud-scorer")
    config = triton.pb.ModelConfigResponse.FromString(ours.SerializeToString()).config
    assert config.max_batch_size == 32
    assert list(config.input[0].dims) == [30]
    assert config.input[0].data_type == triton.mc.TYPE_FP32
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    meta = model_info.model_metadata_to_proto(demo, "payments")
    theirs = triton.pb.ModelMetadataResponse.FromString(meta.SerializeToString())
    assert (theirs.name, list(theirs.inputs[0].shape)) == ("payments", [-1, 30])


def test_tritonclient_reads_our_statistics(triton):
    stats = domain.ModelStats(
        name="payments",
        version=domain.ROUTE_STATS_VERSION,
        inference_count=5,
        success=domain.Duration(5, 1_000),
        batches=(domain.BatchStats(4, compute_infer=domain.Duration(1, 800)),),
    )
    ours = model_info.model_statistics_to_proto([stats])
    theirs = triton.pb.ModelStatisticsResponse.FromString(ours.SerializeToString())
    row = theirs.model_stats[0]
    assert (row.name, row.version, row.inference_count) == ("payments", "1", 5)
    assert row.inference_stats.success.ns == 1_000
    assert row.batch_stats[0].compute_infer.count == 1
