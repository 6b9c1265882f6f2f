"""The steps of a journey: what the engine does, one step at a time, for each enrollment.

    steps:
      - {id: reminder, type: send, intent: cart_reminder, channel: best}
      - {id: next_day, type: wait, duration: 23h}
      - id: still_no_order
        type: branch
        if: not purchased within 3d
        then:
          - {id: incentive, type: send, intent: cart_incentive, offer: {level: 1}}

Every step has an `id`, unique in the journey however deeply nested, and a `type`. A branch
and a split hold nested lists of steps; when a nested list is done, the journey goes on after
the step that opened it. Nothing jumps backwards, so every journey ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import yaml  # type: ignore[import-untyped, unused-ignore]

from reengage.audience.conditions import Rule
from reengage.messages.intents import INTENTS
from reengage.messages.offers import DEFAULT_LADDER

if TYPE_CHECKING:
    from reengage.journeys.reading import Duration, Reader

STEP_TYPES = ("wait", "branch", "send", "split", "holdout", "audience", "update", "webhook", "end")
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "wait": ("duration", "until"),
    "branch": ("if", "then", "else"),
    "send": ("intent", "channel", "offer"),
    "split": ("variants",),
    "holdout": ("share",),
    "audience": ("add", "remove"),
    "update": ("set", "suppress"),
    "webhook": ("endpoint",),
    "end": (),
}
CHANNELS = ("best", "email", "sms", "push")
SUPPRESS = ("sunset",)  # the suppression reasons a journey may record
OFFER_LEVELS = tuple(r.level for r in DEFAULT_LADDER.rungs)
STEP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class StepBase:
    """What every step has: its id, and the line of the file it was written on."""

    kind: ClassVar[str] = ""
    id: str
    line: int = field(default=0, compare=False, kw_only=True)

    def lists(self) -> tuple[tuple[Step, ...], ...]:
        """The nested lists of steps this step may lead into (a branch's, a split's)."""
        return ()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.kind}


@dataclass(frozen=True)
class Wait(StepBase):
    """Wait `duration`, then (with `until`) until the contact's wall clock next shows that
    time; at least one of the two is given."""

    kind: ClassVar[str] = "wait"
    duration: Duration | None = None
    until: time | None = None

    def due_at(self, start: datetime, zone: tzinfo) -> datetime:
        """When the wait that began at `start` ends, in UTC. A time of day that does not
        exist that day (clocks go forward) is the first instant after the gap; one that
        happens twice (clocks go back) is the first of the two."""
        moment = start.astimezone(UTC)
        if self.duration is not None:
            moment += self.duration.timedelta
        if self.until is None:
            return moment
        day = moment.astimezone(zone).date()
        due = local_instant(day, self.until, zone)
        if due < moment:
            due = local_instant(day + timedelta(days=1), self.until, zone)
        return due

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        if self.duration is not None:
            data["duration"] = str(self.duration)
        if self.until is not None:
            data["until"] = f"{self.until:%H:%M}"
        return data


@dataclass(frozen=True)
class Send(StepBase):
    """Send a message of `intent` (its copy variant chosen at send time from the contact's
    style and language) on `channel`; `best`: the first of the intent's channels the contact
    can be reached on. `offer`: the escalation-ladder level asked for (the ladder may give
    less, then the message goes without an offer)."""

    kind: ClassVar[str] = "send"
    intent: str
    channel: str = "best"
    offer: int | None = None

    @property
    def purpose(self) -> str:
        """The consent purpose the policy checks: marketing or transactional."""
        return INTENTS[self.intent].purpose

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels to try, best first."""
        if self.channel != "best":
            return (self.channel,)
        return tuple(c for c in INTENTS[self.intent].channels if c in CHANNELS)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict() | {"intent": self.intent, "channel": self.channel}
        if self.offer is not None:
            data["offer"] = {"level": self.offer}
        return data


@dataclass(frozen=True)
class Branch(StepBase):
    """If the contact matches `condition` (a segment rule, evaluated when the step runs),
    go into `then`, else into `otherwise` (YAML `else`); both continue after the branch."""

    kind: ClassVar[str] = "branch"
    condition: Rule
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...] = ()

    def lists(self) -> tuple[tuple[Step, ...], ...]:
        return (self.then, self.otherwise)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict() | {"if": self.condition.text}
        data["then"] = [s.as_dict() for s in self.then]
        if self.otherwise:
            data["else"] = [s.as_dict() for s in self.otherwise]
        return data


@dataclass(frozen=True)
class Variant:
    """One arm of an A/B split: its name (recorded with the enrollment), its weight, and
    its steps (none: the control arm goes straight on)."""

    name: str
    weight: float
    steps: tuple[Step, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Split(StepBase):
    """An A/B split: each contact goes into one variant, drawn in proportion to the weights
    (`Journey.choose`: the same contact always gets the same variant)."""

    kind: ClassVar[str] = "split"
    variants: tuple[Variant, ...]

    def lists(self) -> tuple[tuple[Step, ...], ...]:
        return tuple(v.steps for v in self.variants)

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"variants": [v.as_dict() for v in self.variants]}


@dataclass(frozen=True)
class Holdout(StepBase):
    """A random `share` of contacts receives nothing more: their enrollment ends here, marked
    as held out, so what follows can be measured against them (`Journey.holds`)."""

    kind: ClassVar[str] = "holdout"
    share: float

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"share": self.share}


@dataclass(frozen=True)
class Audience(StepBase):
    """Add the contact to, or remove them from, the ad audience `audience`
    (docs/audiences.md: only people who allow ads are ever sent to a platform)."""

    kind: ClassVar[str] = "audience"
    audience: str
    action: Literal["add", "remove"]

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {self.action: self.audience}


@dataclass(frozen=True)
class Update(StepBase):
    """Set custom attributes of the contact (`contacts.attributes`, readable in rules as
    `attributes.NAME`), and, with `suppress: sunset`, suppress each of the contact's
    addresses on every channel with reason `sunset`: nothing more is sent to them."""

    kind: ClassVar[str] = "update"
    attributes: tuple[tuple[str, Scalar], ...] = ()
    suppress: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        if self.attributes:
            data["set"] = dict(self.attributes)
        if self.suppress is not None:
            data["suppress"] = self.suppress
        return data


@dataclass(frozen=True)
class Webhook(StepBase):
    """Call the webhook named `endpoint` (its URL and secret come from the settings, never
    from the journey file) with the contact and the journey."""

    kind: ClassVar[str] = "webhook"
    endpoint: str

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"endpoint": self.endpoint}


@dataclass(frozen=True)
class End(StepBase):
    """End the enrollment here."""

    kind: ClassVar[str] = "end"


Step = Wait | Send | Branch | Split | Holdout | Audience | Update | Webhook | End


def walk(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step, depth first, in the order they are written."""
    for step in steps:
        yield step
        for inner in step.lists():
            yield from walk(inner)


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC instant the wall clock of `zone` shows `at` on `day`: the first of two
    (clocks going back), or the first instant after the gap (clocks going forward)."""
    wall = datetime.combine(day, at.replace(fold=0), tzinfo=zone)
    first = wall.astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return first
    # a gap: the offset changes somewhere between the two readings of the wall time
    low, high = wall.replace(fold=1).astimezone(UTC), first
    low, high = min(low, high), max(low, high)
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


# --- reading ------------------------------------------------------------------------------


def read_steps(
    reader: Reader, node: Any, path: str, seen: dict[str, str] | None = None
) -> tuple[Step, ...]:
    """A list of steps; `seen` holds the ids met so far in the journey (id -> field)."""
    top, seen = seen is None, {} if seen is None else seen
    items = reader.sequence(node, path, "a list of steps")
    if items is None:
        return ()
    if top and not items:
        reader.fail(node, path, "a journey needs at least one step")
    steps: list[Step] = []
    ended: str | None = None
    for i, item in enumerate(items):
        if ended is not None:
            reader.fail(item, f"{path}[{i}]", f"never reached: it comes after the end {ended!r}")
        step = _step(reader, item, f"{path}[{i}]", seen)
        if step is not None:
            steps.append(step)
            ended = step.id if isinstance(step, End) else ended
    return tuple(steps)


def _step(reader: Reader, node: Any, path: str, seen: dict[str, str]) -> Step | None:
    if not isinstance(node, yaml.MappingNode):
        reader.fail(node, path, "expected a step: a mapping with id and type")
        return None
    kind = None
    types = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "type"]
    if not types:
        reader.fail(node, f"{path}.type", "type is missing: one of " + ", ".join(STEP_TYPES))
    else:
        kind = reader.choice(types[0], f"{path}.type", STEP_TYPES, "step type")
    # an unknown type: its keys cannot be checked, only the id
    keys = STEP_KEYS[kind] if kind else tuple({k for ks in STEP_KEYS.values() for k in ks})
    nodes = reader.mapping(node, path, ("id", "type", *keys))
    if nodes is None:
        return None
    step_id = None
    id_node = reader.required(nodes, "id", node, path)
    if id_node is not None and (step_id := reader.raw(id_node, f"{path}.id", "a step id")):
        if not STEP_ID.fullmatch(step_id):
            reader.fail(id_node, f"{path}.id", f"step id {step_id!r}: use letters, digits, - _")
            step_id = None
        elif step_id in seen:
            reader.fail(id_node, f"{path}.id", f"id {step_id!r} is already used by {seen[step_id]}")
            step_id = None
        else:
            seen[step_id] = path
    if kind is None:
        return None
    cls, read = _KINDS[kind]
    fields = read(reader, nodes, node, path, seen)
    if fields is None or step_id is None:
        return None
    return cast(Step, cls(step_id, line=node.start_mark.line + 1, **fields))


Fields = dict[str, Any] | None
Nodes = dict[str, Any]


def _wait(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    if not nodes.keys() & {"duration", "until"}:
        reader.fail(node, path, "a wait needs a duration, an until time, or both")
        return None
    fields: dict[str, Any] = {}
    if "duration" in nodes:
        fields["duration"] = reader.duration(nodes["duration"], f"{path}.duration")
    if "until" in nodes:
        fields["until"] = reader.time_of_day(nodes["until"], f"{path}.until")
    return None if None in fields.values() else fields


def _send(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    intent_node = reader.required(nodes, "intent", node, path)
    intent = None
    if intent_node is not None:
        intent = reader.choice(intent_node, f"{path}.intent", tuple(INTENTS), "intent")
    channel: str | None = "best"
    if "channel" in nodes:
        channel = reader.choice(nodes["channel"], f"{path}.channel", CHANNELS, "channel")
        usual = INTENTS[intent].channels if intent is not None else ()
        if intent is not None and channel not in (None, "best", *usual):
            reader.fail(
                nodes["channel"],
                f"{path}.channel",
                f"{intent} is not sent by {channel} (its channels: {', '.join(usual)}; or best)",
            )
            channel = None
    offer = None
    if "offer" in nodes:
        where = f"{path}.offer"
        if intent is not None and not INTENTS[intent].incentive:
            takers = ", ".join(i.id for i in INTENTS.values() if i.incentive)
            reader.fail(
                nodes["offer"], where, f"{intent} carries no offer (those that do: {takers})"
            )
            return None
        spec = reader.mapping(nodes["offer"], where, ("level",), "{level: N}")
        level = None if spec is None else reader.required(spec, "level", nodes["offer"], where)
        if level is not None:
            offer = reader.integer(level, f"{where}.level", 0, max(OFFER_LEVELS))
        if offer is None:
            return None
    if intent is None or channel is None:
        return None
    return {"intent": intent, "channel": channel, "offer": offer}


def _branch(reader: Reader, nodes: Nodes, node: Any, path: str, seen: dict[str, str]) -> Fields:
    rule_node = reader.required(nodes, "if", node, path)
    then_node = reader.required(nodes, "then", node, path)
    rule = None if rule_node is None else reader.rule(rule_node, f"{path}.if")
    then = () if then_node is None else read_steps(reader, then_node, f"{path}.then", seen)
    otherwise: tuple[Step, ...] = ()
    if "else" in nodes:
        otherwise = read_steps(reader, nodes["else"], f"{path}.else", seen)
    if rule is None or then_node is None:
        return None
    return {"condition": rule, "then": then, "otherwise": otherwise}


def _split(reader: Reader, nodes: Nodes, node: Any, path: str, seen: dict[str, str]) -> Fields:
    where = f"{path}.variants"
    given = reader.required(nodes, "variants", node, path)
    items = None if given is None else reader.sequence(given, where, "a list of variants")
    if items is None:
        return None
    if len(items) < 2:
        reader.fail(given, where, "a split needs at least two variants")
    variants: list[Variant] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        spec = reader.mapping(item, at, ("name", "weight", "steps"), "a variant")
        if spec is None:
            continue
        name_node = reader.required(spec, "name", item, at)
        name = None if name_node is None else reader.name(name_node, f"{at}.name", "variant")
        if name is not None and name in {v.name for v in variants}:
            reader.fail(name_node, f"{at}.name", f"variant {name!r} is named twice")
            name = None
        weight = reader.number(spec["weight"], f"{at}.weight") if "weight" in spec else 1.0
        steps_node = reader.required(spec, "steps", item, at)
        steps = () if steps_node is None else read_steps(reader, steps_node, f"{at}.steps", seen)
        if name is not None and weight is not None and steps_node is not None:
            variants.append(Variant(name, weight, steps))
    return {"variants": tuple(variants)} if len(variants) == len(items) >= 2 else None


def _holdout(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    share_node = reader.required(nodes, "share", node, path)
    share = None if share_node is None else reader.share(share_node, f"{path}.share", zero=False)
    return None if share is None else {"share": share}


def _audience(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    given = [k for k in ("add", "remove") if k in nodes]
    if len(given) != 1:
        reader.fail(node, path, "give either add: AUDIENCE or remove: AUDIENCE")
        return None
    name = reader.name(nodes[given[0]], f"{path}.{given[0]}", "audience")
    return None if name is None else {"audience": name, "action": given[0]}


def _update(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    if not nodes.keys() & {"set", "suppress"}:
        reader.fail(node, path, "an update needs set: {attribute: value}, suppress, or both")
        return None
    before = len(reader.problems)
    attributes: dict[str, Scalar] = {}
    if "set" in nodes:
        where = f"{path}.set"
        if not isinstance(nodes["set"], yaml.MappingNode) or not nodes["set"].value:
            reader.fail(nodes["set"], where, "expected a mapping: attribute: value")
        else:
            for key, value in nodes["set"].value:
                name = reader.raw(key, where, "an attribute name") or ""
                if not ATTRIBUTE.fullmatch(name):
                    reader.fail(key, where, f"attribute {name!r}: use letters, digits and _")
                elif name in attributes:
                    reader.fail(key, f"{where}.{name}", f"{name} is given twice")
                else:
                    attributes[name] = reader.scalar(value, f"{where}.{name}")
    suppress = None
    if "suppress" in nodes:
        suppress = reader.choice(
            nodes["suppress"], f"{path}.suppress", SUPPRESS, "suppression reason"
        )
    if len(reader.problems) > before:
        return None
    return {"attributes": tuple(attributes.items()), "suppress": suppress}


def _webhook(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    given = reader.required(nodes, "endpoint", node, path)
    name = None if given is None else reader.name(given, f"{path}.endpoint", "webhook endpoint")
    return None if name is None else {"endpoint": name}


def _end(reader: Reader, nodes: Nodes, node: Any, path: str, _: Any) -> Fields:
    return {}


_KINDS: dict[str, tuple[type[StepBase], Callable[..., Fields]]] = {  # type -> class, reader
    "wait": (Wait, _wait),
    "send": (Send, _send),
    "branch": (Branch, _branch),
    "split": (Split, _split),
    "holdout": (Holdout, _holdout),
    "audience": (Audience, _audience),
    "update": (Update, _update),
    "webhook": (Webhook, _webhook),
    "end": (End, _end),
}
