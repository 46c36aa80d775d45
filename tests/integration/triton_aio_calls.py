"""Calls a running gateway with the unmodified `tritonclient.grpc.aio` client; run as a script.

    python triton_aio_calls.py ADDRESS INPUTS.npz OUT.npz

The asyncio twin of triton_calls.py (same reason for a subprocess, same
INPUTS.npz and OUT.npz conventions); it imports nothing of inferplane.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 30.0


def tensor(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    item = grpcclient.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(np.ascontiguousarray(array))
    return item


async def caught(call) -> str:
    try:
        await call
    except InferenceServerException as error:
        return json.dumps({"status": error.status(), "message": error.message()})
    return json.dumps({"status": "OK", "message": ""})


async def calls(address: str, x: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    async with aioclient.InferenceServerClient(address) as client:
        out["live"] = np.array(await client.is_server_live(client_timeout=TIMEOUT_S))
        out["ready"] = np.array(await client.is_server_ready(client_timeout=TIMEOUT_S))
        out["model_ready"] = np.array(await client.is_model_ready("support-intent"))
        meta = await client.get_model_metadata("support-intent", as_json=True)
        out["metadata"] = np.array(json.dumps(meta))
        config = await client.get_model_config("fraud-scorer", "1", as_json=True)
        out["config"] = np.array(json.dumps(config))

        result = await client.infer(
            "fraud-scorer",
            [tensor("features", x, "FP32")],
            model_version="1",
            request_id="a0",
            client_timeout=TIMEOUT_S,
        )
        out["fraud"] = result.as_numpy("score")
        response = result.get_response()
        out["fraud_served"] = np.array(
            f"{response.id} {response.model_name}@{response.model_version}"
        )

        result = await client.infer(
            "support-intent", [tensor("text", text, "BYTES")], client_timeout=TIMEOUT_S
        )
        out["intent"] = result.as_numpy("intent")

        # Concurrent requests (the gateway may batch them): each gets its own rows back.
        results = await asyncio.gather(
            *(
                client.infer(
                    "fraud-scorer",
                    [tensor("features", x[i : i + 1], "FP32")],
                    model_version="1",
                    request_id=f"c{i}",
                    client_timeout=TIMEOUT_S,
                )
                for i in range(len(x))
            )
        )
        out["concurrent_ids"] = np.array(json.dumps([r.get_response().id for r in results]))
        out["concurrent"] = np.concatenate([r.as_numpy("score") for r in results])

        out["not_found"] = np.array(
            await caught(
                client.infer("no-such-model", [tensor("features", x, "FP32")], client_timeout=30)
            )
        )
        out["bad_shape"] = np.array(
            await caught(
                client.infer(
                    "fraud-scorer", [tensor("features", x[:, :29], "FP32")], client_timeout=30
                )
            )
        )

        async def requests():
            for i in range(3):
                rows = x[:, :29] if i == 1 else x
                yield {
                    "model_name": "fraud-scorer",
                    "model_version": "1",
                    "inputs": [tensor("features", rows, "FP32")],
                    "request_id": f"s{i}",
                }

        answers = []
        stream_scores = []
        responses = client.stream_infer(requests(), stream_timeout=TIMEOUT_S)
        async for result, error in responses:
            if error is not None:
                answers.append({"error": error.message()})
            else:
                answers.append({"id": result.get_response().id})
                stream_scores.append(result.as_numpy("score"))
            if len(answers) == 3:
                break
        responses.cancel()
        out["stream"] = np.array(json.dumps(answers))
        out["stream_scores"] = np.concatenate(stream_scores)

        stats = await client.get_inference_statistics("fraud-scorer", "1", as_json=True)
        out["statistics"] = np.array(json.dumps(stats))
    return out


def main(address: str, inputs_path: str, out_path: str) -> None:
    inputs = np.load(inputs_path, allow_pickle=True)
    out = asyncio.run(asyncio.wait_for(calls(address, inputs["features"], inputs["text"]), 90))
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
