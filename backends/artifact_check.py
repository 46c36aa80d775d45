"""Is the artifact on disk the one the plan was made with? Its sha256 against the plan's.

A plan is reviewed (`infc review`) with the sha256 of each artifact it names;
a worker must not serve a file that changed since. The worker core calls
`check_artifact` for each model before it creates the model's backend, so
every runtime gets the same refusal, and the model alone fails.

Hashing a large artifact takes a while, and a worker may serve many models
from one file, so the digest is cached per (path, mtime, size): a file that is
rewritten gets hashed again, an unchanged one once per process.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from inferplane.backends.runtime import LoadFailed

_SHOWN = 12  # hex digits of a digest in messages


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at `path`; raises OSError when it cannot be read."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    # mtime and size are the cache key only: a changed file is a new entry.
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def changed(path: Path, found: str, planned: str) -> str:
    """The message for an artifact whose sha256 differs from the plan's."""
    return (
        f"artifact `{path}` changed since the plan was made: sha256 {found[:_SHOWN]}…, "
        f"plan says {planned[:_SHOWN]}…; recompile the spec (infc plan) and restart"
    )


def check_artifact(path: Path, planned: str) -> None:
    """Raises LoadFailed when the file at `path` is not the one whose sha256 is `planned`.

    A missing file passes: the backend's `load` reports it, as it would any
    other file it cannot open.
    """
    try:
        found = file_sha256(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise LoadFailed(f"cannot read artifact `{path}`: {error}") from error
    if found != planned:
        raise LoadFailed(changed(path, found, planned))
