"""Wait until a KServe v2 gRPC server says it and its models are ready.

    .peers/<peer>-venv/bin/python bench/peers/probe.py 127.0.0.1:PORT --model mlp \\
        --model tiny --timeout 120

Polls ServerReady and ModelReady (with tritonclient, which both peer
environments install) every quarter second; exits 0 once all answer ready,
1 when the timeout passes first, printing what it last saw. Runs in a peer's
environment so that bench/peer_servers.py needs only the standard library.
"""

from __future__ import annotations

import argparse
import sys
import time

import tritonclient.grpc as triton_grpc

POLL_S = 0.25
CALL_TIMEOUT_S = 2.0


def not_ready(client: triton_grpc.InferenceServerClient, models: list[str]) -> str | None:
    """None when the server and every model are ready, else what is not."""
    try:
        if not client.is_server_ready(client_timeout=CALL_TIMEOUT_S):
            return "server not ready"
        waiting = [m for m in models if not client.is_model_ready(m, client_timeout=CALL_TIMEOUT_S)]
    except Exception as error:  # refused connections etc. mean "not yet"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return f"models not ready: {', '.join(waiting)}" if waiting else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the gRPC endpoint")
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    with triton_grpc.InferenceServerClient(args.address) as client:
        while True:
            reason = not_ready(client, args.model)
            if reason is None:
                print("ready", flush=True)
                return 0
            if time.monotonic() >= deadline:
                print(f"not ready after {args.timeout:g} s: {reason}", flush=True)
                return 1
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
