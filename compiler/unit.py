"""The compilation unit that the passes hand along.

Each pass is `(unit, diagnostics) -> unit`: it reads the unit, appends
diagnostics and returns the unit, extended (through `dataclasses.replace`)
with the facts it established for the passes after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inferplane.compiler import ast
from inferplane.compiler.syntax import SyntaxFile

if TYPE_CHECKING:
    from inferplane.compiler.onnx_model import OnnxModel
    from inferplane.compiler.passes.prepare_artifacts import Prepared
    from inferplane.compiler.plan import Estimate, Plan


@dataclass(frozen=True)
class Unit:
    file: str  # the spec's name as the user gave it, for messages
    base_dir: Path  # model sources are relative to this folder
    syntax: SyntaxFile
    spec: ast.Spec
    # False to ignore `infc profile` results (golden tests want the estimates).
    use_profiles: bool = True
    # Set by check_models: the ONNX file read for each model (name, version).
    model_files: dict[tuple[str, int], OnnxModel] = field(default_factory=dict)
    # Set by prepare_artifacts: the built int8/fp16 artifact (and its measured
    # agreement) per model; fp32 and bf16 models serve their source and are absent.
    artifacts: dict[tuple[str, int], Prepared] = field(default_factory=dict)
    # Set by check_slos: the service-time estimate per (name, version, target).
    estimates: dict[tuple[str, int, str], Estimate] = field(default_factory=dict)
    # Set by lower, when there were no errors.
    plan: Plan | None = None
