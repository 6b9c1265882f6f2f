"""How contacts enter and leave a journey: the trigger, the goals that end it early, and
whether someone may enter again.

    trigger:
      event: {type: add_to_cart, abandoned: {within: 1h}}
    goals: [order_placed, unsubscribed]
    reentry: {after: 7d}

Four kinds of trigger (docs/journeys.md, "Triggers"):

- `event` — an event of the vocabulary (`product_view`, `add_to_cart`, ...) or `order_placed`
  (a valid order in the facts); with `abandoned`, only when none of the `unless` events follow
  within the window (a cart: no `checkout_start` and no order within 1 h).
- `segment_entered` — the contact entered a segment (an `enter` transition of a refresh); the
  segment is named, or defined inline and written to `segments/` by `journeys enable`.
- `inactivity` — days since the contact's last valid order cross a number, or the contact's
  own inactivity threshold T (`scores.threshold_days`, docs/understanding.md).
- `date` — a yearly date (`birthday`, `order_anniversary`: the first order's) or the expected
  replenishment date, moved by `offset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml  # type: ignore[import-untyped, unused-ignore]

from reengage.audience.conditions import Rule
from reengage.ingest.vocabulary import EVENT_TYPES

if TYPE_CHECKING:
    from reengage.journeys.reading import Duration, Reader

Goal = Literal["order_placed", "clicked", "unsubscribed"]
GOALS: tuple[Goal, ...] = ("order_placed", "clicked", "unsubscribed")

ORDER_PLACED = "order_placed"
# what an event trigger may name: the event vocabulary, and a placed order
TRIGGER_EVENTS = (*EVENT_TYPES, ORDER_PLACED)
# what ends an abandonment when `unless` is not given
DEFAULT_UNLESS: dict[str, tuple[str, ...]] = {
    "add_to_cart": ("checkout_start", ORDER_PLACED),
    "checkout_start": (ORDER_PLACED,),
    "product_view": ("add_to_cart", ORDER_PLACED),
}
DATES = ("birthday", "order_anniversary", "expected_replenishment")
THRESHOLDS = ("lifecycle",)
KINDS = ("event", "segment_entered", "inactivity", "date")


@dataclass(frozen=True)
class Abandonment:
    """The trigger fires `within` after the event, and only if none of `unless` happened in
    between (events of the contact, or `order_placed`: a valid order)."""

    within: Duration
    unless: tuple[str, ...]


@dataclass(frozen=True)
class EventTrigger:
    """An event of the contact: `type` is an event type or `order_placed`."""

    kind: ClassVar[str] = "event"
    type: str
    abandoned: Abandonment | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.abandoned is None:
            return {"event": {"type": self.type}}
        abandoned = {"within": str(self.abandoned.within), "unless": list(self.abandoned.unless)}
        return {"event": {"type": self.type, "abandoned": abandoned}}


@dataclass(frozen=True)
class SegmentTrigger:
    """Entering the segment `segment`. `rule` (and `description`) when the journey defines the
    segment itself: `journeys enable` writes it to `segments/` if the home has none by that
    name; the file there is what `segments refresh` evaluates."""

    kind: ClassVar[str] = "segment_entered"
    segment: str
    rule: Rule | None = None
    description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.rule is None:
            return {"segment_entered": self.segment}
        inline: dict[str, Any] = {"name": self.segment}
        if self.description is not None:
            inline["description"] = self.description
        inline["rule"] = self.rule.text
        return {"segment_entered": inline}


@dataclass(frozen=True)
class InactivityTrigger:
    """Days since the last valid order reach `days`, or (`threshold="lifecycle"`) the
    contact's own inactivity threshold T: the move from `at_risk` to `inactive`."""

    kind: ClassVar[str] = "inactivity"
    days: int | None = None
    threshold: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.threshold is not None:
            return {"inactivity": {"threshold": self.threshold}}
        return {"inactivity": {"days": self.days}}


@dataclass(frozen=True)
class DateTrigger:
    """A date of the contact, moved by `offset` (`-3d`: three days before); the trigger fires
    at the start of that day in the contact's time zone.

    - `birthday`: `contacts.birthday`, every year;
    - `order_anniversary`: the date of the first valid order, every year;
    - `expected_replenishment`: `scores.expected_next_order_at`, or, when there is none, the
      last order of a product in one of the `intervals` categories plus that interval (the
      earliest of them).
    """

    kind: ClassVar[str] = "date"
    of: str
    offset: Duration
    intervals: tuple[tuple[str, Duration], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"of": self.of, "offset": str(self.offset)}
        if self.intervals:
            data["intervals"] = {c: str(d) for c, d in self.intervals}
        return {"date": data}


Trigger = EventTrigger | SegmentTrigger | InactivityTrigger | DateTrigger


@dataclass(frozen=True)
class Reentry:
    """Whether a contact may enter the journey again: `never`, `always`, or `after` a time
    since their previous entry. Nobody is ever in the same journey twice at once."""

    mode: Literal["never", "always", "after"]
    after: Duration | None = None

    def allows(self, previous_entry: datetime | None, now: datetime, *, active: bool) -> bool:
        """May a contact whose latest entry was `previous_entry` (None: never entered) enter
        at `now`? `active`: they are still in the journey."""
        if active:
            return False
        if previous_entry is None or self.mode == "always":
            return True
        if self.mode == "never" or self.after is None:
            return False
        return now - previous_entry >= self.after.timedelta

    def as_dict(self) -> str | dict[str, str]:
        return {"after": str(self.after)} if self.mode == "after" else self.mode


# --- reading ------------------------------------------------------------------------------


def _is_mapping(node: Any) -> bool:
    return isinstance(node, yaml.MappingNode)


def read_trigger(reader: Reader, node: Any, path: str, segments: Path | None) -> Trigger | None:
    """The trigger: a mapping with one of event, segment_entered, inactivity, date."""
    nodes = reader.mapping(node, path, KINDS, "a trigger: one of " + ", ".join(KINDS))
    if nodes is None:
        return None
    if len(nodes) != 1:
        given = ", ".join(nodes) or "none"
        reader.fail(node, path, f"give exactly one of {', '.join(KINDS)} (found {given})")
        return None
    kind, value = next(iter(nodes.items()))
    inner = f"{path}.{kind}"
    if kind == "event":
        return _event(reader, value, inner)
    if kind == "segment_entered":
        return _segment(reader, value, inner, segments)
    if kind == "inactivity":
        return _inactivity(reader, value, inner)
    return _date(reader, value, inner)


def _event(reader: Reader, node: Any, path: str) -> EventTrigger | None:
    if not _is_mapping(node):
        kind = reader.choice(node, path, TRIGGER_EVENTS, "event type")
        return None if kind is None else EventTrigger(kind)
    nodes = reader.mapping(node, path, ("type", "abandoned"))
    if nodes is None:
        return None
    type_node = reader.required(nodes, "type", node, path)
    kind = None
    if type_node is not None:
        kind = reader.choice(type_node, f"{path}.type", TRIGGER_EVENTS, "event type")
    if "abandoned" not in nodes:
        return None if kind is None else EventTrigger(kind)
    where = f"{path}.abandoned"
    if kind == ORDER_PLACED:
        reader.fail(nodes["abandoned"], where, "an order is not abandoned: remove abandoned")
        return None
    spec = reader.mapping(nodes["abandoned"], where, ("within", "unless"))
    if spec is None:
        return None
    within_node = reader.required(spec, "within", nodes["abandoned"], where)
    within: Duration | None = None
    if within_node is not None:
        within = reader.duration(within_node, f"{where}.within")
    unless = DEFAULT_UNLESS.get(kind or "", (ORDER_PLACED,))
    if "unless" in spec:
        listed = reader.sequence(spec["unless"], f"{where}.unless", "a list of event types")
        if listed is not None:
            names: list[str] = []
            for i, item in enumerate(listed):
                at = f"{where}.unless[{i}]"
                name = reader.choice(item, at, TRIGGER_EVENTS, "event type")
                if name is not None and name == kind:
                    reader.fail(item, at, f"{name} is the trigger's own event")
                elif name is not None and name in names:
                    reader.fail(item, at, f"{name} is listed twice")
                elif name is not None:
                    names.append(name)
            if not listed:
                reader.fail(spec["unless"], f"{where}.unless", "name at least one event type")
            unless = tuple(names)
    if kind is None or within is None:
        return None
    return EventTrigger(kind, Abandonment(within, unless))


def _segment(reader: Reader, node: Any, path: str, segments: Path | None) -> SegmentTrigger | None:
    if _is_mapping(node):
        nodes = reader.mapping(node, path, ("name", "description", "rule"))
        if nodes is None:
            return None
        name_node = reader.required(nodes, "name", node, path)
        rule_node = reader.required(nodes, "rule", node, path)
        name = None if name_node is None else reader.name(name_node, f"{path}.name", "segment")
        rule = None if rule_node is None else reader.rule(rule_node, f"{path}.rule")
        description = None
        if "description" in nodes:
            description = reader.text(nodes["description"], f"{path}.description")
        if name is None or rule is None:
            return None
        return SegmentTrigger(name, rule, description)
    name = reader.name(node, path, "segment")
    if name is None:
        return None
    if segments is not None and not (segments / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in segments.glob("*.yaml")) if segments.is_dir() else []
        reader.fail(
            node,
            path,
            f"no segment named {name!r} in {segments.name}/ (known: {', '.join(known) or 'none'});"
            " create it, or define it here with name and rule",
        )
        return None
    return SegmentTrigger(name)


def _inactivity(reader: Reader, node: Any, path: str) -> InactivityTrigger | None:
    nodes = reader.mapping(node, path, ("days", "threshold"), "days: N or threshold: lifecycle")
    if nodes is None:
        return None
    if len(nodes) != 1:
        reader.fail(node, path, "give either days: N or threshold: lifecycle")
        return None
    if "days" in nodes:
        days = reader.integer(nodes["days"], f"{path}.days", 1)
        return None if days is None else InactivityTrigger(days=days)
    threshold = reader.choice(nodes["threshold"], f"{path}.threshold", THRESHOLDS, "threshold")
    return None if threshold is None else InactivityTrigger(threshold=threshold)


def _date(reader: Reader, node: Any, path: str) -> DateTrigger | None:
    if not _is_mapping(node):
        of = reader.choice(node, path, DATES, "date")
        zero = reader.duration(None, path, default="0d")
        return None if of is None or zero is None else DateTrigger(of, zero)
    nodes = reader.mapping(node, path, ("of", "offset", "intervals"))
    if nodes is None:
        return None
    of_node = reader.required(nodes, "of", node, path)
    of = None if of_node is None else reader.choice(of_node, f"{path}.of", DATES, "date")
    offset = reader.duration(nodes.get("offset"), f"{path}.offset", signed=True, default="0d")
    intervals: list[tuple[str, Duration]] = []
    if "intervals" in nodes:
        where = f"{path}.intervals"
        if of is not None and of != "expected_replenishment":
            reader.fail(nodes["intervals"], where, "intervals are for expected_replenishment")
        elif not _is_mapping(nodes["intervals"]):
            reader.fail(nodes["intervals"], where, "expected a mapping: category: interval")
        else:
            for key, value in nodes["intervals"].value:
                category = reader.raw(key, where, "a category")
                interval = reader.duration(value, f"{where}.{category}")
                if category is not None and interval is not None:
                    intervals.append((category, interval))
    if of is None or offset is None:
        return None
    return DateTrigger(of, offset, tuple(intervals))


def read_goals(reader: Reader, node: Any, path: str) -> tuple[Goal, ...]:
    """Goals: a list of order_placed, clicked, unsubscribed."""
    items = reader.sequence(node, path, "a list of goals: " + ", ".join(GOALS))
    if items is None:
        return ()
    goals: list[Goal] = []
    for i, item in enumerate(items):
        goal = reader.choice(item, f"{path}[{i}]", GOALS, "goal")
        if goal is not None and goal in goals:
            reader.fail(item, f"{path}[{i}]", f"{goal} is listed twice")
        elif goal is not None:
            goals.append(goal)  # type: ignore[arg-type]
    return tuple(goals)


def read_reentry(reader: Reader, node: Any, path: str) -> Reentry | None:
    """Re-entry: never, always, or {after: DURATION}."""
    if _is_mapping(node):
        nodes = reader.mapping(node, path, ("after",), "never, always or {after: 30d}")
        if nodes is None:
            return None
        after_node = reader.required(nodes, "after", node, path)
        if after_node is None:
            return None
        after = reader.duration(after_node, f"{path}.after")
        return None if after is None else Reentry("after", after)
    mode = reader.choice(node, path, ("never", "always"), "re-entry (never, always, {after: 30d})")
    if mode == "never":
        return Reentry("never")
    if mode == "always":
        return Reentry("always")
    return None
