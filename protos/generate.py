"""Generate the Python stubs of protos/*.proto: `make protos`.

protoc runs from one root with the virtual path `inferplane/protos=protos`,
so the stubs import each other as `inferplane.protos.…` and need no
rewriting; they are written beside the .proto files and committed. A test
regenerates them into a temporary folder and fails when they differ.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
VIRTUAL = "inferplane/protos"


def generate(out: Path) -> list[Path]:
    """Write the stubs of every .proto into `out`; return the files written."""
    from grpc_tools import protoc  # only here: grpcio-tools is a dev dependency

    sources = sorted(PROTOS.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{VIRTUAL}={PROTOS}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(f"{VIRTUAL}/{s.name}" for s in sources),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + ", ".join(s.name for s in sources))
        written = []
        for stub in sorted((Path(tmp) / VIRTUAL).iterdir()):
            shutil.copy(stub, out / stub.name)
            written.append(out / stub.name)
    return written


if __name__ == "__main__":
    for path in generate(PROTOS):
        print(f"wrote {path.relative_to(PROTOS.parent)}")
    sys.exit(0)
