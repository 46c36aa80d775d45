"""`infc profile SPEC`: measure each model on this host and write the spec's profile.

1. Compile the spec (errors: print them, exit 1).
2. Pick the targets: the one `--target` names, or every local target (no
   `workers`). For each, load each of its models through the backend the
   worker would use (`backends.registry.create_backend`). A target whose
   hardware this host lacks is skipped with the backend's reason, unless
   `--cpu-fallback`: then it is measured on the CPU and recorded as such, and
   the compiler never uses that entry for the gpu or tpu target.
3. Measure at batch sizes 1, 2, 4, … up to the shard's `batch max`
   (`backends.profiling`), merge the entries into the profile file beside the
   spec (or `--out`), replacing older entries of the same model and target,
   and print a table.

Exit 0 when every model of the chosen targets was measured, 1 otherwise (the
measurements that succeeded are still written).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from inferplane.cli.console import Console
from inferplane.cli.spec_input import compile_for_running
from inferplane.compiler import plan, profiles
from inferplane.compiler.review import table
from inferplane.compiler.units import format_duration

OK, ERRORS = 0, 1


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    p = subparsers.add_parser(
        "profile",
        help="measure each model on this host's hardware; the compiler uses the figures",
        parents=parents,
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument(
        "--target",
        metavar="NAME",
        help="profile this target only (default: every target without `workers`)",
    )
    p.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="measure gpu/tpu targets on the CPU when this host lacks the hardware "
        "(recorded as such; the compiler does not use it for those targets)",
    )
    p.add_argument(
        "--iterations",
        type=_positive(int),
        default=1000,
        metavar="N",
        help="timed runs per batch size, at most (default 1000)",
    )
    p.add_argument(
        "--max-seconds",
        type=_positive(float),
        default=1.0,
        metavar="S",
        help="stop a batch size after S seconds of runs (default 1)",
    )
    p.add_argument("--out", metavar="PATH", help="write here instead of SPEC's <stem>.profile.json")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def run(args: argparse.Namespace, console: Console) -> int:
    spec = Path(args.spec)
    compilation = compile_for_running(args.spec, console)
    if compilation is None:
        return ERRORS
    result = compilation.plan
    base_dir = spec.resolve().parent

    out_path = Path(args.out) if args.out else profiles.profile_path(str(spec), base_dir)
    try:
        existing = profiles.read_profile(out_path) or profiles.Profile()
    except profiles.ProfileError as e:
        console.error(f"infc: {e}; move {out_path} away or pass --out")
        return ERRORS

    targets = _targets(result, args.target, console)
    if targets is None:
        return ERRORS
    sources = {key: found.sha256 for key, found in compilation.unit.model_files.items()}
    host = _host()
    entries, status = [], OK
    for target in targets:
        measured, ok = _profile_target(result, target, base_dir, sources, host, args, console)
        entries += measured
        status = max(status, OK if ok else ERRORS)
    if not entries:
        console.error("infc: nothing was measured")
        return ERRORS

    console.print(_table(entries))
    try:
        _write(out_path, existing.merged(entries))
    except OSError as e:
        console.error(f"infc: cannot write {out_path}: {e.strerror or e}")
        return ERRORS
    console.print(f"wrote {out_path}")
    return status


def _targets(result: plan.Plan, name: str | None, console: Console) -> list[plan.Target] | None:
    if name is not None:
        target = result.target(name)
        if target is None:
            known = ", ".join(f"`{t.name}`" for t in result.targets)
            console.error(f"infc: no target `{name}` in {result.source} (it has {known})")
            return None
        return [target]
    local = [t for t in result.targets if not t.workers]
    if not local:
        console.error(
            "infc: every target has remote `workers`; run `infc profile --target NAME` "
            "on a host of that target"
        )
        return None
    return local


def _profile_target(
    result: plan.Plan,
    target: plan.Target,
    base_dir: Path,
    sources: dict[tuple[str, int], str],
    host: profiles.Host,
    args: argparse.Namespace,
    console: Console,
) -> tuple[list[profiles.Entry], bool]:
    """The entries measured on `target`, and whether every model on it was measured."""
    from inferplane.backends import profiling
    from inferplane.backends.registry import create_backend
    from inferplane.backends.runtime import BackendError, WrongDevice

    entries, ok = [], True
    for model in result.models:
        shard = next((s for s in model.shards if s.target == target.name), None)
        if shard is None:
            continue
        label = f"{model.name}@{model.version} on `{target.name}`"
        started = time.perf_counter()
        try:
            backend = create_backend(model, target, base_dir, cpu_fallback=args.cpu_fallback)
            backend.load()
            measured = profiling.profile_model(
                backend,
                model,
                shard.batching.max_batch_size,
                iterations=args.iterations,
                max_seconds=args.max_seconds,
            )
        except WrongDevice as e:
            console.error(
                f"infc: skipped target `{target.name}`: {e}"
                + ("" if args.cpu_fallback else " (or pass --cpu-fallback)")
            )
            return entries, False
        except (BackendError, ImportError) as e:
            console.error(f"infc: cannot profile {label}: {e}")
            ok = False
            continue
        entry = profiling.entry_for(
            model, target, measured, host, source_sha256=sources[(model.name, model.version)]
        )
        entries.append(entry)
        console.error(
            f"measured {label}: {len(entry.rows)} batch sizes in "
            f"{time.perf_counter() - started:.1f}s ({entry.runtime.device}, "
            f"{', '.join(entry.runtime.providers) or entry.runtime.runtime})"
        )
        if entry.cpu_fallback:
            console.error(
                f"note: {label} ran on the CPU (--cpu-fallback); the entry is recorded, "
                f"but the compiler will not use it for {target.hardware} target `{target.name}`"
            )
    return entries, ok


def _host() -> profiles.Host:
    from inferplane.backends.profiling import host_facts

    return host_facts()


def _table(entries: list[profiles.Entry]) -> str:
    from inferplane.backends.profiling import format_count

    rows = [["model", "target", "batch", "p50", "p99", "throughput"]]
    for e in entries:
        for i, r in enumerate(e.rows):
            first = i == 0
            rows.append(
                [
                    f"{e.model}@{e.version}" if first else "",
                    e.target + (" (cpu fallback)" if e.cpu_fallback else "") if first else "",
                    str(r.batch_size),
                    format_duration(r.p50_s),
                    format_duration(r.p99_s),
                    f"{format_count(r.throughput_items_per_s)} items/s",
                ]
            )
    return "\n".join(table(rows, indent=0))


def _write(path: Path, profile: profiles.Profile) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a profile is not secret
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(profile.to_json())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
