"""An MLServer custom runtime that serves one ONNX file with onnxruntime.

MLServer 1.7 ships no onnxruntime runtime. This one is named in each model's
`model-settings.json` as `mlserver_runtime.OnnxRuntime` (bench/peer_servers.py
puts this folder on the server's PYTHONPATH), with the ONNX file's path as
`parameters.uri`. The session has the inferplane worker's options: one
intra-op thread, sequential execution, every graph optimisation. Adaptive
batching is MLServer's own (`max_batch_size`, `max_batch_time` in the same
file): it merges requests along the first dimension before `predict`.

Runs inside .peers/mlserver-venv, never in the project's environment.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxRuntime(MLModel):
    """`load` opens the session; `predict` feeds every input and returns every output."""

    async def load(self) -> bool:
        path = self.settings.parameters.uri
        self._session = ort.InferenceSession(
            path, session_options(), providers=["CPUExecutionProvider"]
        )
        self._outputs = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, value)
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
