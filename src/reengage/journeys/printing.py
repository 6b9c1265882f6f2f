"""How the journey and campaign commands print the problems of a definition file: each on
its own `error:` line, exactly as written. Apart from `journeys.commands` so that the
campaign commands can use it whichever of the two is imported first."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.markup import escape

from reengage.cli import err
from reengage.errors import ReengageError
from reengage.journeys.reading import JourneyError

P = ParamSpec("P")
R = TypeVar("R")


def problems(exc: ReengageError) -> list[str]:
    if isinstance(exc, JourneyError):
        return [str(p) for p in exc.problems]
    return [str(exc)]


def print_errors(found: list[str]) -> None:
    """Each problem on its own `error:` line, printed as written: a message may hold
    [brackets] (steps[2]), and a rule's caret must stay under its column."""
    for problem in found:
        err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)


def literal_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Like `cli.handles_errors`, but every problem of a file on its own line."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReengageError as exc:
            print_errors(problems(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper
