"""A worker started by `infc serve` dies with it, even when it is SIGKILLed.

    if not die_with_parent(args.parent_pid):   # first thing in `infc worker`
        exit: the parent is already gone

On Linux the worker asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), then checks that its parent is still the supervisor that
started it: a parent that died between the fork and the prctl would otherwise
go unnoticed. Done in the worker after exec, and not in the child between
fork and exec (a `preexec_fn`), because Python code run there in a process
with gRPC's threads can deadlock or abort (gRPC logs "Other threads are
currently calling into gRPC, skipping fork() handlers"); without a
`preexec_fn` the spawn also stays on the fast path. Elsewhere it only checks
the parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Arrange SIGTERM on the parent's death; False when `parent_pid` is no longer the parent."""
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent_pid
