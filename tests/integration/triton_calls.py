"""Calls a running gateway with the unmodified `tritonclient.grpc` client; run as a script.

    python triton_calls.py ADDRESS INPUTS.npz OUT.npz

tritonclient cannot share a process with inferplane's own stubs (both define
the protobuf package `inference`), so tests/integration/test_gateway.py runs
this in a subprocess. It writes every answer to OUT.npz (arrays as they came,
facts as 0-d string arrays) for the test to compare; it imports nothing of
inferplane. INPUTS.npz holds `features` (FP32 rows of 30), `text` (BYTES),
`max_batch` (fraud-scorer's max_batch_size rows) and `over_batch` (one more).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

STREAM_WAIT_S = 30.0


def tensor(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    item = grpcclient.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return item


def infer(client, model: str, name: str, array: np.ndarray, datatype: str, **kwargs):
    return client.infer(model, [tensor(name, array, datatype)], client_timeout=30, **kwargs)


def caught(call: Callable[[], object]) -> str:
    """The status and message of the error `call` raises (status OK when none)."""
    try:
        call()
    except InferenceServerException as error:
        return json.dumps({"status": error.status(), "message": error.message()})
    return json.dumps({"status": "OK", "message": ""})


def failure(client, model: str, name: str, array: np.ndarray, datatype: str, **kwargs) -> str:
    return caught(lambda: infer(client, model, name, array, datatype, **kwargs))


def invalid_requests(client, x: np.ndarray, text: np.ndarray, over: np.ndarray) -> dict[str, str]:
    """Every refusal tritonclient's own API can produce, by case name."""

    def send(model: str, inputs: list, **kwargs) -> str:
        return caught(lambda: client.infer(model, inputs, client_timeout=30, **kwargs))

    # Raw bytes for 5 rows under a shape of 4: set_shape after the data.
    short = tensor("features", x, "FP32").set_shape([x.shape[0] - 1, 30])
    # Two BYTES elements under a shape of 3.
    few = tensor("text", text, "BYTES").set_shape([len(text) + 1])
    extra = tensor("extra", np.ones((x.shape[0], 1), np.float32), "FP32")
    return {
        "unknown_model": failure(client, "no-such-model", "features", x, "FP32"),
        "unknown_version": failure(
            client, "fraud-scorer", "features", x, "FP32", model_version="9"
        ),
        "route_version": failure(client, "payments", "features", x, "FP32", model_version="1"),
        "wrong_datatype": failure(client, "fraud-scorer", "features", x.astype(np.float64), "FP64"),
        "bytes_for_fp32": failure(client, "fraud-scorer", "features", text, "BYTES"),
        "wrong_shape": failure(client, "fraud-scorer", "features", x[:, :29], "FP32"),
        "wrong_rank": failure(client, "fraud-scorer", "features", x.reshape(-1), "FP32"),
        "raw_length": send("fraud-scorer", [short]),
        "bytes_raw_length": send("support-intent", [few]),
        "missing_input": send("fraud-scorer", []),
        "extra_input": send("fraud-scorer", [tensor("features", x, "FP32"), extra]),
        "duplicate_input": send("fraud-scorer", [tensor("features", x, "FP32")] * 2),
        "unknown_output": send(
            "fraud-scorer",
            [tensor("features", x, "FP32")],
            outputs=[grpcclient.InferRequestedOutput("nope")],
        ),
        "over_batch": failure(client, "fraud-scorer", "features", over, "FP32", model_version="1"),
        "over_batch_bytes": failure(
            client, "support-intent", "text", np.resize(text, 17).astype(object), "BYTES"
        ),
    }


def statistics(client, model: str, version: str = "") -> str:
    return json.dumps(client.get_inference_statistics(model, version, as_json=True))


def batches(client, x: np.ndarray, full: np.ndarray, over: np.ndarray) -> dict[str, np.ndarray]:
    """fraud-scorer@1 with 1 row, several, its max, and max + 1; its statistics around them."""
    out = {"stats_before": np.array(statistics(client, "fraud-scorer", "1"))}
    out["one_row"] = infer(client, "fraud-scorer", "features", x[:1], "FP32", model_version="1")
    out["one_row"] = out["one_row"].as_numpy("score")
    out["rows"] = infer(client, "fraud-scorer", "features", x, "FP32", model_version="1")
    out["rows"] = out["rows"].as_numpy("score")
    result = infer(client, "fraud-scorer", "features", full, "FP32", model_version="1")
    out["max_batch"] = result.as_numpy("score")
    out["max_batch_version"] = np.array(result.get_response().model_version)
    out["over_batch"] = np.array(
        failure(client, "fraud-scorer", "features", over, "FP32", model_version="1")
    )
    out["stats_after"] = np.array(statistics(client, "fraud-scorer", "1"))
    out["stats_all"] = np.array(statistics(client, ""))
    return out


def stream(client, x: np.ndarray) -> dict[str, np.ndarray]:
    """Five requests on one stream, the third malformed: answers come in order."""
    answers: list[dict] = []
    scores: list[np.ndarray] = []
    lock = threading.Lock()
    done = threading.Event()
    count = 5

    def callback(result, error) -> None:
        with lock:
            if error is not None:
                answers.append({"error": error.message()})
            else:
                response = result.get_response()
                answers.append({"id": response.id, "version": response.model_version})
                scores.append(result.as_numpy("score"))
            if len(answers) == count:
                done.set()

    client.start_stream(callback=callback, stream_timeout=60)
    try:
        for i in range(count):
            rows = x[:, :29] if i == 2 else x[i % 2 :]
            client.async_stream_infer(
                "fraud-scorer",
                [tensor("features", np.ascontiguousarray(rows), "FP32")],
                model_version="1",
                request_id=f"t{i}",
            )
        done.wait(STREAM_WAIT_S)
    finally:
        client.stop_stream(cancel_requests=not done.is_set())
    with lock:
        return {
            "stream": np.array(json.dumps(answers)),
            "stream_scores": np.concatenate(scores) if scores else np.zeros((0, 2), np.float32),
        }


def main(address: str, inputs_path: str, out_path: str) -> None:
    inputs = np.load(inputs_path, allow_pickle=True)
    x, text = inputs["features"], inputs["text"]
    full, over = inputs["max_batch"], inputs["over_batch"]
    client = grpcclient.InferenceServerClient(address)
    out: dict[str, np.ndarray] = {}
    out["live"] = np.array(client.is_server_live())
    out["ready"] = np.array(client.is_server_ready())
    out["model_ready"] = np.array(client.is_model_ready("fraud-scorer"))
    meta = client.get_model_metadata("fraud-scorer", as_json=True)
    out["metadata"] = np.array(json.dumps(meta))
    config = client.get_model_config("fraud-scorer", as_json=True)
    out["config"] = np.array(json.dumps(config))

    result = infer(client, "fraud-scorer", "features", x, "FP32")
    out["fraud"] = result.as_numpy("score")
    out["fraud_version"] = np.array(result.get_response().model_version)

    result = infer(client, "payments", "features", x, "FP32")
    out["payments"] = result.as_numpy("score")
    response = result.get_response()
    out["payments_served"] = np.array(f"{response.model_name}@{response.model_version}")

    result = infer(client, "support-intent", "text", text, "BYTES")
    out["intent"] = result.as_numpy("intent")

    out["bad_shape"] = np.array(failure(client, "fraud-scorer", "features", x[:, :29], "FP32"))
    out["not_found"] = np.array(failure(client, "no-such-model", "features", x, "FP32"))
    stats = client.get_inference_statistics("fraud-scorer", as_json=True)
    out["statistics"] = np.array(json.dumps(stats))

    out["invalid"] = np.array(json.dumps(invalid_requests(client, x, text, over)))
    out.update(batches(client, x, full, over))
    out.update(stream(client, x))
    client.close()
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
