"""Journey definitions: the YAML schema, its loading and validation, and the typed model the
engine executes.

    # <home>/journeys/abandoned_cart.yaml
    name: abandoned_cart
    trigger:
      event: {type: add_to_cart, abandoned: {within: 1h}}
    goals: [order_placed, unsubscribed]
    reentry: {after: 7d}
    steps:
      - {id: reminder, type: send, intent: cart_reminder, channel: best}
      - {id: next_day, type: wait, duration: 23h}
      ...

A file is read with `yaml.compose`, so every value keeps its line: a mistake is reported as
`journeys/cart.yaml line 14 (steps[2].intent): unknown intent 'cart_remindr' (did you mean
'cart_reminder'?)`, and every mistake of a file is reported at once (`JourneyError.problems`).
The trigger, goals and re-entry live in `triggers`, the steps in `steps`, the checking of
values (durations, problems, `Reader`) in `reading`; docs/journeys.md is
the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reengage.journeys import steps as steps_module
from reengage.journeys import triggers as triggers_module
from reengage.journeys.reading import (
    NAME,
    Duration,
    JourneyError,
    Problem,
    Reader,
    open_document,
    parse_time_of_day,
    suggest,
)
from reengage.journeys.steps import End, Holdout, Split, Step, Variant
from reengage.journeys.triggers import Goal, Reentry, Trigger

__all__ = [
    "NAME",
    "Duration",
    "Journey",
    "JourneyError",
    "Problem",
    "Reader",
    "bucket",
    "journey_name",
    "load_journey",
    "parse_journey",
    "parse_time_of_day",
    "suggest",
]

KEYS = ("name", "description", "priority", "holdout", "trigger", "goals", "reentry", "steps")
DEFAULT_PRIORITY = 50


def bucket(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts: how holdouts and A/B splits draw, so that the
    same contact always falls on the same side and a replay decides the same way."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- the journey --------------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """A checked journey: what starts it, what ends it early, who may enter again, and the
    steps, as the engine executes them.

    Steps are addressed by their `id`, unique in the journey however deeply nested, so an
    enrollment's position is one step id. `first` is where an enrollment starts, `after(id)`
    where it goes once a step (and any list it opened) is done, and `into(step, steps)` where
    a branch or a split leads.
    """

    name: str
    description: str
    trigger: Trigger
    goals: tuple[Goal, ...]
    reentry: Reentry
    steps: tuple[Step, ...]
    priority: int = DEFAULT_PRIORITY
    holdout: float = 0.0
    path: Path | None = field(default=None, compare=False)
    digest: str = field(default="", compare=False)  # sha256 of the file's text
    _next: dict[str, str | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _by_id: dict[str, Step] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def index(steps: Sequence[Step], then: str | None) -> None:
            for i, step in enumerate(steps):
                following = steps[i + 1].id if i + 1 < len(steps) else then
                self._by_id[step.id] = step
                self._next[step.id] = None if isinstance(step, End) else following
                for inner in step.lists():
                    index(inner, following)

        index(self.steps, None)

    def walk(self) -> Iterator[Step]:
        """Every step, depth first, in the order they are written."""
        return steps_module.walk(self.steps)

    def has(self, step_id: str) -> bool:
        """Whether the journey has a step with this id."""
        return step_id in self._by_id

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError when the journey has none (it was edited)."""
        return self._by_id[step_id]

    @property
    def first(self) -> str | None:
        """The id of the step an enrollment starts at (None: nothing to do)."""
        return self.steps[0].id if self.steps else None

    def after(self, step_id: str) -> str | None:
        """The id of the step that runs once this one is done; None: the journey is over."""
        return self._next[step_id]

    def into(self, step: Step, steps: Sequence[Step]) -> str | None:
        """Where a branch or split continues, given the list it chose (`then`, `otherwise`,
        a variant's `steps`): its first step, or, for an empty list, what follows the step."""
        return steps[0].id if steps else self.after(step.id)

    def held_out(self, contact: str | int) -> bool:
        """Whether the journey's holdout keeps this contact out (decided once, the same way
        every time)."""
        return bucket(self.name, "", str(contact)) < self.holdout

    def holds(self, step: Holdout, contact: str | int) -> bool:
        """Whether a holdout step keeps this contact from the rest of the journey."""
        return bucket(self.name, step.id, str(contact)) < step.share

    def choose(self, step: Split, contact: str | int) -> Variant:
        """The variant of an A/B split this contact gets, in proportion to the weights."""
        point = bucket(self.name, step.id, str(contact)) * sum(v.weight for v in step.variants)
        for variant in step.variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return step.variants[-1]

    def as_dict(self) -> dict[str, Any]:
        """The journey in its YAML form: loading this (dumped as YAML) gives it back."""
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        data["priority"] = self.priority
        if self.holdout:
            data["holdout"] = self.holdout
        data["trigger"] = self.trigger.as_dict()
        data["goals"] = list(self.goals)
        data["reentry"] = self.reentry.as_dict()
        data["steps"] = [s.as_dict() for s in self.steps]
        return data


# --- loading ------------------------------------------------------------------------------


def parse_journey(source: str, *, name: str, shown: str, segments: Path | None = None) -> Journey:
    """Check the YAML text of a journey called `name` (its file name) and build it; every
    problem is reported at once as a JourneyError. `shown` names the file in messages.

    With `segments` (the home's segments folder), a trigger naming a segment checks that the
    segment exists.
    """
    doc = open_document(source, name=name, shown=shown, what="journey", keys=KEYS)
    reader, root, nodes, description = doc.reader, doc.root, doc.nodes, doc.description
    priority: int | None = DEFAULT_PRIORITY
    if "priority" in nodes:
        priority = reader.integer(nodes["priority"], "priority", 0, 100)
    holdout: float | None = 0.0
    if "holdout" in nodes:
        holdout = reader.share(nodes["holdout"], "holdout", zero=True)
    trigger_node = reader.required(nodes, "trigger", root, "")
    trigger = None
    if trigger_node is not None:
        trigger = triggers_module.read_trigger(reader, trigger_node, "trigger", segments)
    goals: tuple[Goal, ...] = ()
    if "goals" in nodes and not reader.is_null(nodes["goals"]):
        goals = triggers_module.read_goals(reader, nodes["goals"], "goals")
    reentry_node = reader.required(nodes, "reentry", root, "")
    reentry = None
    if reentry_node is not None:
        reentry = triggers_module.read_reentry(reader, reentry_node, "reentry")
    steps_node = reader.required(nodes, "steps", root, "")
    steps: tuple[Step, ...] = ()
    if steps_node is not None:
        steps = steps_module.read_steps(reader, steps_node, "steps")
    if reader.problems or trigger is None or reentry is None:
        raise JourneyError(reader.problems)
    assert priority is not None and holdout is not None  # else a problem was recorded
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return Journey(
        name, description, trigger, goals, reentry, steps, priority, holdout, digest=digest
    )


def journey_name(path: Path) -> str:
    """A journey's name: its file name without `.yaml` (or `.yaml.disabled`)."""
    file = path.name
    for suffix in (".yaml.disabled", ".yaml"):
        if file.endswith(suffix):
            return file[: -len(suffix)]
    return path.stem


def load_journey(path: Path, *, shown: str | None = None, segments: Path | None = None) -> Journey:
    """Read and check one journey file (see `parse_journey`)."""
    shown = shown or str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JourneyError([Problem(shown, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JourneyError([Problem(shown, None, "", f"cannot be read as text ({exc})")]) from None
    journey = parse_journey(source, name=journey_name(path), shown=shown, segments=segments)
    return replace(journey, path=path)


__all__ = [
    "Duration",
    "Journey",
    "JourneyError",
    "Problem",
    "bucket",
    "journey_name",
    "load_journey",
    "parse_journey",
    "parse_time_of_day",
]
