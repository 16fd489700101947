"""The course's command line: ``python -m saliency_helpers <command>`` (or ``saliency-course``).

Commands:

* ``run``: execute every lecture notebook headlessly, export figures, print a summary
  (see :mod:`saliency_helpers.run`);
* ``grade``: grade submitted exercise notebooks (the same as
  ``python -m saliency_helpers.grade``, see :mod:`saliency_helpers.grade`).

Without a command it prints this help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import grade, run

__all__ = ["main"]


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="python -m saliency_helpers",
        description="The saliency-maps course: run the lecture notebooks, grade exercises.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="execute every lecture notebook, export figures, print a summary",
        description="Execute every lecture notebook top to bottom in a fresh kernel, write "
        "executed copies and figures, and print a one-screen summary.",
    )
    run.add_arguments(run_parser)
    # grade keeps its own parser (python -m saliency_helpers.grade); listed here for the help.
    commands.add_parser(
        "grade",
        add_help=False,
        help="grade submitted exercise notebooks "
        "(options: python -m saliency_helpers grade --help)",
    )
    return parser, run_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m saliency_helpers`` and of the ``saliency-course`` script.

    Args:
        argv: The arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 if a notebook failed, 2 for bad options.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grade"]:
        return grade.main(argv[1:])
    parser, run_parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return run.run_from_args(args, run_parser)


if __name__ == "__main__":
    sys.exit(main())
