"""Talks to `infc serve specs/demo.infer` with the unmodified Triton client.

    python specs/demo_client.py 127.0.0.1:8001

Checks readiness, then sends: fraud-scorer rows (from specs/models/fraud-eval.npz
when built, else random), the same rows through the `payments` route (90/10
canary with a fallback), support tickets whose text holds an email address and
a phone number (redacted by the gateway before any worker sees them), one
batch of 8, and 64 concurrent single-row requests; prints the answers and the
batch sizes the gateway achieved (ModelStatistics). Exits 0 when every
request was answered, 1 otherwise.

Only `tritonclient`, NumPy and onnx: inferplane's own protobuf stubs declare the
same `inference` package as tritonclient's, and both cannot load in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

MODELS = Path(__file__).resolve().parent / "models"
FRAUD_COLUMNS = ("legit", "fraud")
TICKETS = (
    "I was charged twice, please refund me at jane.doe@example.com",
    "My card was stolen yesterday, call me on +44 20 7946 0958",
    "Why was my card declined at the store? Write to bob@example.org",
    "I do not recognise this charge, phone 415-555-0132 anytime",
)
CONCURRENT = 64


def labels(model_file: str, width: int) -> list[str]:
    """The model's `labels` metadata entry (specs/build_models.py writes it), else numbers."""
    try:
        import onnx

        model = onnx.load(str(MODELS / model_file), load_external_data=False)
        found = {p.key: p.value for p in model.metadata_props}.get("labels", "").split(",")
        if len(found) == width:
            return found
    except (ImportError, OSError, ValueError):
        pass
    return [str(i) for i in range(width)]


def fraud_rows(count: int, seed: int = 0) -> np.ndarray:
    path = MODELS / "fraud-eval.npz"
    if path.exists():
        with np.load(path) as data:
            return np.asarray(data["features"][:count], dtype=np.float32)
    return np.random.default_rng(seed).normal(size=(count, 30)).astype(np.float32)


def infer(client, model: str, name: str, array: np.ndarray, datatype: str, output: str):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor], outputs=[triton.InferRequestedOutput(output)])
    return result.as_numpy(output), result.get_response()


def wait_ready(client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.is_server_ready():
                return
        except InferenceServerException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway is not ready after {timeout_s:g}s")
        time.sleep(0.2)


def show_fraud(client) -> None:
    rows = fraud_rows(4)
    direct, _ = infer(client, "fraud-scorer", "features", rows, "FP32", "score")
    print("\n== fraud-scorer (highest version) and the `payments` route, 4 transactions")
    print(f"{'row':>3}  {'P(fraud) fraud-scorer':>22}  {'P(fraud) payments':>18}  served by")
    for i, row in enumerate(rows):
        # One request per row through the route: each takes the 90/10 split on its own.
        routed, response = infer(client, "payments", "features", row[None], "FP32", "score")
        served = f"{response.model_name}@{response.model_version or '?'}"
        print(f"{i:>3}  {direct[i, 1]:>22.4f}  {routed[0, 1]:>18.4f}  {served}")


def show_intents(client) -> None:
    texts = np.array([t.encode() for t in TICKETS], dtype=object)
    scores, _ = infer(client, "support-intent", "text", texts, "BYTES", "intent")
    names = labels("intent.onnx", scores.shape[1])
    print("\n== support-intent (emails and phone numbers are redacted by the gateway)")
    for text, row in zip(TICKETS, scores, strict=True):
        best = int(np.argmax(row))
        print(f"  {names[best]:<16} {row[best]:.2f}  {text}")


def show_batch(client) -> None:
    rows = fraud_rows(8, seed=1)
    scores, _ = infer(client, "fraud-scorer", "features", rows, "FP32", "score")
    verdicts = labels("fraud.onnx", scores.shape[1])
    picked = [verdicts[int(i)] for i in np.argmax(scores, axis=1)]
    print(f"\n== one batch of 8: {scores.shape[0]} answers: {', '.join(picked)}")


def show_concurrency(client) -> None:
    rows = fraud_rows(CONCURRENT, seed=2)
    if len(rows) < CONCURRENT:
        rows = np.resize(rows, (CONCURRENT, 30))

    def one(i: int) -> float:
        scores, _ = infer(client, "fraud-scorer", "features", rows[i : i + 1], "FP32", "score")
        return float(scores[0, 1])

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(one, range(CONCURRENT)))
    took = time.perf_counter() - started
    print(
        f"\n== {CONCURRENT} concurrent single-row requests: {len(answers)} answers "
        f"in {took * 1000:.0f} ms"
    )


def show_batching(client) -> None:
    stats = client.get_inference_statistics("fraud-scorer", as_json=True)
    print("\n== batching achieved (ModelStatistics batch_stats: executions per batch size)")
    for model in stats.get("model_stats", []):
        sizes = sorted(
            (int(b["batch_size"]), int(b.get("compute_infer", {}).get("count", 0)))
            for b in model.get("batch_stats", [])
        )
        shown = ", ".join(f"{size}×{count}" for size, count in sizes) or "none yet"
        print(f"  {model['name']}@{model.get('version', '')}: {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the gateway's HOST:PORT")
    parser.add_argument("--ready-timeout", type=float, default=30.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    client = triton.InferenceServerClient(url=args.address)
    try:
        wait_ready(client, args.ready_timeout)
        meta = client.get_server_metadata(as_json=True)
        print(f"gateway {args.address}: {meta.get('name', '?')} {meta.get('version', '')}")
        show_fraud(client)
        show_intents(client)
        show_batch(client)
        show_concurrency(client)
        show_batching(client)
    except InferenceServerException as error:
        print(f"demo_client: request failed: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print("\nall requests answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
