"""Each journey drawn as its steps, with how many contacts reached each step (distinct
enrollments in the step log, `enrollment_steps`), how many wait there now (active
enrollments whose next step it is), and how the enrollments ended."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, distinct, func, select

from reengage.config import Home
from reengage.journeys import catalogue
from reengage.journeys.steps import Branch, Split, Step
from reengage.state.schema import enrollment_steps, enrollments

Node = dict[str, Any]


def _describers() -> tuple[Callable[[Step], str], Callable[[Any], str]]:
    """`journeys show`'s words for steps and triggers. The command line is loaded first: the
    journeys' command module cannot be the first of the commands to be imported."""
    import reengage.cli  # noqa: F401
    from reengage.journeys.commands import describe_step, describe_trigger

    return describe_step, describe_trigger


def _nodes(steps: Sequence[Step], reached: dict[str, int], waiting: dict[str, int]) -> list[Node]:
    describe_step = _describers()[0]
    found: list[Node] = []
    for step in steps:
        node: Node = {
            "id": step.id,
            "kind": step.kind,
            "text": describe_step(step),
            "reached": reached.get(step.id, 0),
            "waiting": waiting.get(step.id, 0),
            "branches": [],
        }
        if isinstance(step, Branch):
            node["branches"] = [
                {"label": "then", "steps": _nodes(step.then, reached, waiting)},
                {"label": "else", "steps": _nodes(step.otherwise, reached, waiting)},
            ]
        elif isinstance(step, Split):
            node["branches"] = [
                {
                    "label": f"variant {v.name}",
                    "steps": _nodes(v.steps, reached, waiting),
                }
                for v in step.variants
            ]
        found.append(node)
    return found


def journeys(home: Home, engine: Engine) -> list[dict[str, Any]]:
    """The enabled journeys and any other one with enrollments, by name."""
    e, s = enrollments, enrollment_steps
    with engine.connect() as conn:
        reached_rows = conn.execute(
            select(s.c.journey, s.c.step, func.count(distinct(s.c.enrollment_id))).group_by(
                s.c.journey, s.c.step
            )
        ).all()
        waiting_rows = conn.execute(
            select(e.c.journey, e.c.step, func.count())
            .where(e.c.status == "active", e.c.step.is_not(None))
            .group_by(e.c.journey, e.c.step)
        ).all()
        status_rows = conn.execute(
            select(e.c.journey, e.c.status, func.count()).group_by(e.c.journey, e.c.status)
        ).all()
    reached: dict[str, dict[str, int]] = {}
    for journey, step, n in reached_rows:
        reached.setdefault(str(journey), {})[str(step)] = int(n)
    waiting: dict[str, dict[str, int]] = {}
    for journey, step, n in waiting_rows:
        waiting.setdefault(str(journey), {})[str(step)] = int(n)
    ends: dict[str, dict[str, int]] = {}
    for journey, status, n in status_rows:
        ends.setdefault(str(journey), {})[str(status)] = int(n)
    describe_trigger = _describers()[1]
    drawn = []
    for entry in catalogue(home):
        if entry.journey is None or not (entry.enabled or entry.name in ends):
            continue
        statuses = ends.get(entry.name, {})
        drawn.append(
            {
                "name": entry.name,
                "enabled": entry.enabled,
                "description": " ".join(entry.journey.description.split()),
                "trigger": describe_trigger(entry.journey.trigger),
                "entered": sum(statuses.values()),
                "active": statuses.get("active", 0),
                "completed": statuses.get("done", 0),
                "goal": statuses.get("goal", 0),
                "held_out": statuses.get("held_out", 0),
                "exited": statuses.get("ended", 0),
                "steps": _nodes(
                    entry.journey.steps,
                    reached.get(entry.name, {}),
                    waiting.get(entry.name, {}),
                ),
            }
        )
    return drawn
