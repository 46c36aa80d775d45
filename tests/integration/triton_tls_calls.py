"""Calls a gateway that has `tls` and `auth` with the unmodified `tritonclient.grpc`; a script.

    python triton_tls_calls.py ADDRESS CA.pem TOKEN

Run in a subprocess by tests/integration/test_gateway_security.py (tritonclient
cannot share a process with inferplane's stubs). Prints one JSON object: the
answers with the token, and the status of the same calls without it.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main(address: str, ca: str, token: str) -> None:
    client = grpcclient.InferenceServerClient(address, ssl=True, root_certificates=ca)
    headers = {"authorization": f"Bearer {token}"}
    features = np.arange(30, dtype=np.float32).reshape(1, 30)
    item = grpcclient.InferInput("features", [1, 30], "FP32")
    item.set_data_from_numpy(features)
    answer = client.infer("fraud-scorer", [item], headers=headers, client_timeout=30)
    result = {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "score": answer.as_numpy("score").tolist(),
    }
    try:
        client.is_server_live()
        result["without_token"] = "OK"
    except InferenceServerException as error:
        result["without_token"] = f"{error.status()}: {error.message()}"
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
