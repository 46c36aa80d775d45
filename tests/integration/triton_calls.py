"""Calls a running gateway with the unmodified `tritonclient.grpc` client; run as a script.

    python triton_calls.py ADDRESS INPUTS.npz OUT.npz

tritonclient cannot share a process with inferplane's own stubs (both define
the protobuf package `inference`), so tests/integration/test_gateway.py runs
this in a subprocess. It writes every answer to OUT.npz (arrays as they came,
facts as 0-d string arrays) for the test to compare; it imports nothing of
inferplane.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def infer(client, model: str, name: str, array: np.ndarray, datatype: str):
    item = grpcclient.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return client.infer(model, [item], client_timeout=30)


def failure(client, model: str, name: str, array: np.ndarray, datatype: str) -> str:
    try:
        infer(client, model, name, array, datatype)
    except InferenceServerException as error:
        return json.dumps({"status": error.status(), "message": error.message()})
    return json.dumps({"status": "OK"})


def main(address: str, inputs_path: str, out_path: str) -> None:
    inputs = np.load(inputs_path, allow_pickle=True)
    x, text = inputs["features"], inputs["text"]
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
    client.close()
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
