"""`infc`: the inferplane command line.

Only parses arguments, reads and writes files, and prints; the work is done
by `inferplane.compiler`. Exit codes are named in `ExitCode`.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Sequence

from inferplane.cli import (
    apply_command,
    commands,
    gateway_access,
    profile_command,
    render_command,
    serve_command,
    worker_command,
)
from inferplane.cli.console import Console


class ExitCode(enum.IntEnum):
    OK = 0
    ERRORS = 1  # errors in a spec, a refused command, or bad usage
    CHANGES = 2  # `plan --detailed-exitcode`: the plan would change something


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1, keeping 2 for `--detailed-exitcode`'s "changes"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.ERRORS, f"infc: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infc", description="The inferplane compiler for .infer specs.")
    colour = {
        "choices": ("auto", "always", "never"),
        "help": "colour the output (default: auto, on a terminal)",
    }
    parser.add_argument("--color", default="auto", **colour)
    # Accepted after the subcommand too, where it overrides the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--color", default=argparse.SUPPRESS, **colour)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="parse and check specs", parents=[common])
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.add_argument(
        "--format",
        choices=("human", "json"),
        default="human",
        help="diagnostics as text with carets, or as a JSON list",
    )

    fmt = sub.add_parser(
        "fmt", help="rewrite specs in canonical layout ('-' for stdin)", parents=[common]
    )
    fmt.add_argument("specs", nargs="+", metavar="SPEC")
    fmt.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a file is not formatted"
    )
    fmt.add_argument(
        "--diff",
        action="store_true",
        help="print what would change as a unified diff; change nothing",
    )

    plan = sub.add_parser(
        "plan", help="review the routing plan a spec lowers to (dry run)", parents=[common]
    )
    plan.add_argument("spec", metavar="SPEC")
    plan.add_argument("--json", action="store_true", help="print the plan itself as JSON")
    plan.add_argument(
        "--against",
        metavar="PLAN.json|HOST:PORT",
        help="show what would change relative to this plan",
    )
    gateway_access.add_arguments(plan)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing would change, 2 when something would",
    )
    plan.add_argument(
        "--format",
        choices=("human", "json"),
        default="human",
        help="how to print diagnostics (on stderr)",
    )
    worker_command.add_parser(sub, [common])
    profile_command.add_parser(sub, [common])
    serve_command.add_parser(sub, [common])
    render_command.add_parser(sub, [common])
    apply_command.add_parser(sub, [common])
    return parser


def run(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = console or Console()
    console.colour_choice = args.color
    handler = {"check": commands.check, "fmt": commands.fmt, "plan": commands.plan}
    handler["worker"] = worker_command.run
    handler["profile"] = profile_command.run
    handler["serve"] = serve_command.run
    handler["render"] = render_command.run
    handler["apply"] = apply_command.run
    return int(handler[args.command](args, console))


def main() -> None:
    try:
        sys.exit(run())
    except BrokenPipeError:
        # The reader went away (`infc plan … | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.ERRORS)


if __name__ == "__main__":
    main()
