"""Triton Inference Server (through nvidia-pytriton) serving ONNX files with onnxruntime.

    .peers/pytriton-venv/bin/python bench/peers/pytriton_server.py \\
        --model mlp=/path/mlp.onnx --model tiny=/path/tiny.onnx --grpc-port 8001

Each model is a Python function bound into Triton: Triton's dynamic batcher
(`max_batch_size`, `max_queue_delay_microseconds`) merges requests, and the
function runs one onnxruntime session with the inferplane worker's options
(one intra-op thread, sequential, every graph optimisation). Only gRPC
listens (on 127.0.0.1); HTTP and metrics are off. Prints
`serving on 127.0.0.1:PORT` once every model is bound; SIGTERM or SIGINT stops
Triton and removes its workspace.

Runs inside .peers/pytriton-venv, never in the project's environment.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

HOST = "127.0.0.1"


def use_this_libpython() -> None:
    """Make Triton's Python backend stub load this interpreter's libpython.

    The stub finds `libpython3.X.so.1.0` by soname; without this it can pick a
    system copy of another patch release, and the models then fail to load.
    Triton's process inherits this environment.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def tensors(args: list[ort.NodeArg]) -> list[Tensor]:
    """Triton tensors for ONNX arguments whose first dimension is the batch."""
    return [Tensor(name=arg.name, dtype=np.float32, shape=tuple(arg.shape[1:])) for arg in args]


def infer_function(sess: ort.InferenceSession):
    outputs = [output.name for output in sess.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(outputs, sess.run(outputs, inputs), strict=True))

    return infer


def bind(triton: Triton, name: str, path: Path, max_batch: int, delay_us: int) -> None:
    sess = session(path)
    triton.bind(
        model_name=name,
        infer_func=infer_function(sess),
        inputs=tensors(sess.get_inputs()),
        outputs=tensors(sess.get_outputs()),
        config=ModelConfig(
            max_batch_size=max_batch,
            batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us),
        ),
        strict=False,
    )


def parse_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def stop_on_signals() -> None:
    """SIGTERM and SIGINT leave `serve()` through an exception, so Triton stops cleanly."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=parse_model, action="append", required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--delay-us", type=int, default=2000, help="dynamic batcher queue delay")
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args(argv)
    use_this_libpython()
    stop_on_signals()
    config = TritonConfig(
        grpc_address=HOST,
        grpc_port=args.grpc_port,
        allow_http=False,
        allow_metrics=False,
        log_verbose=0,
    )
    # No restricted endpoints: perf_analyzer reads ModelStatistics, as any client may.
    security = TritonSecurityConfig(restricted_endpoints=[])
    try:
        with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
            for name, path in args.model:
                bind(triton, name, path, args.max_batch, args.delay_us)
            print(f"serving on {HOST}:{args.grpc_port}", flush=True)
            triton.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
