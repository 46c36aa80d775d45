"""The `infc` subcommands: read files, call the compiler, print, return an exit code."""

from __future__ import annotations

import argparse
import difflib
import os
from pathlib import Path

from pydantic import ValidationError

from inferplane.cli import gateway_access
from inferplane.cli.console import Console
from inferplane.cli.spec_input import compile_spec, read_text
from inferplane.compiler import render
from inferplane.compiler.diff import diff_plans, render_diff
from inferplane.compiler.fmt import format_text
from inferplane.compiler.passes.field_reader import is_address
from inferplane.compiler.plan import Plan, load_plan
from inferplane.compiler.review import ANSI, PLAIN, render_plan

OK, ERRORS, CHANGES = 0, 1, 2


def check(args: argparse.Namespace, console: Console) -> int:
    status = OK
    records = []
    for path in args.specs:
        compilation = compile_spec(path, console)
        if compilation is None:
            status = ERRORS
            continue
        found = compilation.diagnostics
        if compilation.has_errors:
            status = ERRORS
        if args.format == "json":
            records.extend(found)
            continue
        console.print(render.render_human(found, compilation.text, console.colour), end="")
        console.print(render.summary(path, found))
    if args.format == "json":
        console.print(render.to_json(records), end="")
    return status


def fmt(args: argparse.Namespace, console: Console) -> int:
    status = OK
    for path in args.specs:
        text = console.stdin.read() if path == "-" else read_text(path, console)
        if text is None:
            status = ERRORS
            continue
        result = format_text(text, "<stdin>" if path == "-" else path)
        if result.text is None:
            console.error(render.render_human(result.diagnostics, text, console.err_colour), end="")
            console.error(f"infc: not formatting {path}: it has syntax errors")
            status = ERRORS
            continue
        if path == "-" and not (args.check or args.diff):
            console.print(result.text, end="")  # a filter: stdin to stdout
            continue
        if result.text == text:
            continue
        if args.diff:
            console.print(
                "".join(
                    difflib.unified_diff(
                        text.splitlines(keepends=True),
                        result.text.splitlines(keepends=True),
                        fromfile=f"{path} (original)",
                        tofile=f"{path} (formatted)",
                    )
                ),
                end="",
            )
        if args.check:
            console.print(f"would reformat {path}")
            status = max(status, ERRORS)
        elif not args.diff and path != "-":
            Path(path).write_text(result.text, encoding="utf-8")
            console.print(f"reformatted {path}")
    return status


def _is_address(against: str) -> bool:
    """HOST:PORT or unix:PATH, and no file of that name (a file wins)."""
    if Path(against).exists():
        return False
    return is_address(against)


def _load_against(args: argparse.Namespace, console: Console) -> Plan | None:
    against = args.against
    if _is_address(against):
        # Only here: grpc loads when a gateway is asked, not for every `infc` command.
        from inferplane.cli import gateway_plan

        wrong = gateway_access.problem(args)
        if wrong is not None:
            console.error(f"infc: {wrong}")
            return None
        access = gateway_plan.Access(**gateway_access.settings(args, os.environ))
        try:
            text = gateway_plan.fetch_plan_json(against, access=access)
        except gateway_plan.GatewayPlanError as e:
            console.error(f"infc: {e}")
            return None
        what = f"the plan from the gateway at {against}"
    else:
        text = read_text(against, console)
        if text is None:
            return None
        what = against
    try:
        return load_plan(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        console.error(f"infc: {what} is not a routing plan: {first['msg']} at {where}")
        return None


def plan(args: argparse.Namespace, console: Console) -> int:
    compilation = compile_spec(args.spec, console)
    if compilation is None:
        return ERRORS
    found = compilation.diagnostics
    result = compilation.plan
    if result is None:
        if args.format == "json":
            console.error(render.to_json(found), end="")
        else:
            console.error(render.render_human(found, compilation.text, console.err_colour), end="")
            console.error(render.summary(args.spec, found))
        return ERRORS
    warnings = [d for d in found if not d.is_error]
    style = ANSI if console.colour else PLAIN
    review_shows_warnings = not args.json and not args.against
    if warnings and not review_shows_warnings:
        if args.format == "json":
            console.error(render.to_json(warnings), end="")
        else:
            console.error(
                render.render_human(warnings, compilation.text, console.err_colour), end=""
            )
    if args.against:
        old = _load_against(args, console)
        if old is None:
            return ERRORS
        changes = diff_plans(old, result)
        if args.json:
            console.print(result.to_json(), end="")
        else:
            console.print(render_diff(changes, style), end="")
        changed = not changes.is_empty
    else:
        if args.json:
            console.print(result.to_json(), end="")
        else:
            console.print(render_plan(result, warnings, style), end="")
        changed = True  # against nothing, everything in the plan is new
    return CHANGES if args.detailed_exitcode and changed else OK
