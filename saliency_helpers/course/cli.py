"""The course's command line: ``saliency-course <command>`` (or ``python -m saliency_helpers``).

Commands, each with its own ``--help``:

* ``run``: execute every lecture notebook headlessly, export figures, print a summary
  (:mod:`saliency_helpers.course.run`);
* ``grade``: grade submitted exercise notebooks (:mod:`saliency_helpers.course.grade`);
* ``export``: executed notebooks to offline HTML pages and reveal.js slides
  (:mod:`saliency_helpers.course.export`);
* ``make-exercises``: generate ``exercises/`` from ``solutions/``
  (:mod:`saliency_helpers.course.assignments`).

Only the chosen command's module is imported, so ``grade --help`` does not load torch.
Without a command it prints this help.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: command -> (module under saliency_helpers.course, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "execute every lecture notebook, export figures, print a summary"),
    "grade": ("grade", "autograde submitted exercise notebooks with nbgrader (--jobs N)"),
    "export": ("export", "executed notebooks to offline HTML pages and reveal.js slides"),
    "make-exercises": ("assignments", "exercises/ from solutions/ by nbgrader (--check: stale?)"),
}


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: saliency-course COMMAND [options]",
        "",
        "The saliency-maps course: run the lectures, grade exercises, export slides.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()),
        "",
        "Options of a command: saliency-course COMMAND --help",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``saliency-course`` and ``python -m saliency_helpers``.

    Args:
        argv: The arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The command's exit code (0 success, 1 a notebook or export failed, 2 bad options).

    Example:
        >>> main(["run", "--quick", "--only", "00"])  # doctest: +SKIP
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_help())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(_help(), file=sys.stderr)
        print(f"\nsaliency-course: unknown command {command!r}; choose one of: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.{COMMANDS[command][0]}")
    try:
        return int(module.main(rest) or 0)
    except SystemExit as stop:  # argparse's exit on --help or bad options
        return stop.code if isinstance(stop.code, int) else 2
