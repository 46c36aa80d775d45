"""Reading a spec from disk and compiling it: what every `infc` command starts with."""

from __future__ import annotations

from pathlib import Path

from inferplane.cli.console import Console
from inferplane.compiler import render
from inferplane.compiler.compilation import Compilation


def read_text(path: str, console: Console) -> str | None:
    """The file's text, or None after printing why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        console.error(f"infc: cannot read {path}: {reason}")
        return None


def compile_spec(path: str, console: Console, base_dir: Path | None = None) -> Compilation | None:
    """The spec's compilation, None if unreadable. Model sources are relative to
    `base_dir`, by default the spec's folder."""
    text = read_text(path, console)
    if text is None:
        return None
    return Compilation(text, path, base_dir or Path(path).resolve().parent)


def compile_for_running(
    path: str, console: Console, base_dir: Path | None = None
) -> Compilation | None:
    """For the commands that run a plan (worker, serve, profile).

    Every diagnostic goes to stderr, warnings included; None when the spec
    cannot be read or has errors, so the command exits 1 without a plan.
    """
    compilation = compile_spec(path, console, base_dir)
    if compilation is None:
        return None
    found = compilation.diagnostics
    if found:
        console.error(render.render_human(found, compilation.text, console.err_colour), end="")
    if compilation.plan is None:
        console.error(render.summary(path, found))
        return None
    return compilation
