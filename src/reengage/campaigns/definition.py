"""Reading a campaign file: `<home>/campaigns/NAME.yaml`, checked value by value so that every
mistake is reported at once with its file, line and field (the journeys' `Reader`).

    description: December news
    audience:
      segments: [subscribers]          # one or more: their union
      exclude: [bought_this_week]      # optional: members of these are left out
      refresh: true                    # refresh the segments when the campaign starts
    message:
      intent: newsletter
      channel: email                   # email (default), sms or push
      adapt_style: true                # each contact's style variant (else neutral copy)
      copy:                            # optional: the shop's own text for some fields
        heading: "Our winter collection is here"
        it: {heading: "È arrivata la collezione invernale"}
    schedule:
      at: 2026-12-10T09:00:00+01:00    # optional: else when `campaigns schedule` is run
      best_time: 24h                   # optional: each contact's best hour in this window
    holdout: 10%                       # optional: kept out, to measure the lift
    conversion_window: 5d              # an order this soon after the send counts
    priority: 40                       # for the contact policy, as journeys' (0-100)
    test:                              # optional: A/B/n on part of the audience
      share: 20%
      window: 4h                       # then the winner goes to the rest
      metric: clicks                   # clicks or revenue (per recipient)
      variants:
        - name: a                      # the first is the default
          copy: {subject: "New in: the winter collection"}
        - name: b
          copy: {subject: "{{ first_name or 'Hello' }}, winter is here"}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from reengage.config import LANGUAGES
from reengage.journeys.reading import Duration, JourneyError, Problem, Reader, open_document
from reengage.messages.intents import FIELDS, INTENTS
from reengage.messages.outbox import DELIVERABLE

FOLDER = "campaigns"
SUFFIX = ".yaml"
KEYS = (
    "name",
    "description",
    "audience",
    "message",
    "schedule",
    "holdout",
    "conversion_window",
    "priority",
    "test",
)
METRICS = ("clicks", "revenue")
DEFAULT_PRIORITY = 40  # below the journeys' 50: a reaction to what a person did goes first
DEFAULT_CONVERSION_WINDOW = "5d"


class CampaignError(JourneyError):
    """A campaign file that cannot be used: every problem found in it, one per line."""


# copy overrides: {field: text} for every language, {language: {field: text}} for one
Copy = Mapping[str, Mapping[str, str]]  # language ("*" for all) -> field -> template


@dataclass(frozen=True)
class Arm:
    """One variant of a test: its name and the copy it changes."""

    name: str
    copy: Copy = field(default_factory=dict)


@dataclass(frozen=True)
class Test:
    share: float
    window: Duration
    metric: str
    arms: tuple[Arm, ...]

    @property
    def default(self) -> str:
        return self.arms[0].name

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


@dataclass(frozen=True)
class Campaign:
    name: str
    description: str
    segments: tuple[str, ...]
    exclude: tuple[str, ...]
    refresh: bool
    intent: str
    channel: str
    adapt_style: bool
    copy: Copy
    at: datetime | None
    best_time: Duration | None
    holdout: float
    conversion_window: Duration
    priority: int
    test: Test | None
    source: str = ""
    digest: str = ""

    def copy_for(self, language: str, arm: str | None = None) -> dict[str, str]:
        """The overridden fields in one language: the campaign's, then the test arm's."""
        merged: dict[str, str] = {}
        layers = [self.copy]
        if arm is not None and self.test is not None:
            layers.append(self.test.arm(arm).copy)
        for layer in layers:
            merged.update(layer.get("*", {}))
            merged.update(layer.get(language, {}))
        return merged


def folder(home_path: Path) -> Path:
    return home_path / FOLDER


def parse_campaign(source: str, *, name: str, shown: str, segments: Path | None = None) -> Campaign:
    """Check the YAML text of campaign `name` and build it; every problem at once as a
    CampaignError. With `segments` (the home's folder) the named segments must exist."""
    doc = open_document(
        source, name=name, shown=shown, what="campaign", keys=KEYS, error=CampaignError
    )
    reader, root, nodes, description = doc.reader, doc.root, doc.nodes, doc.description

    audience = _audience(reader, reader.required(nodes, "audience", root, ""), segments)
    message = _message(reader, reader.required(nodes, "message", root, ""))
    at, best_time = _schedule(reader, nodes.get("schedule"))
    holdout: float | None = 0.0
    if "holdout" in nodes:
        holdout = reader.share(nodes["holdout"], "holdout", zero=True)
    window = reader.duration(
        nodes.get("conversion_window"), "conversion_window", default=DEFAULT_CONVERSION_WINDOW
    )
    priority: int | None = DEFAULT_PRIORITY
    if "priority" in nodes:
        priority = reader.integer(nodes["priority"], "priority", 0, 100)
    test = None
    if "test" in nodes and not reader.is_null(nodes["test"]):
        test = _test(reader, nodes["test"])
    if reader.problems or audience is None or message is None:
        raise CampaignError(reader.problems)
    assert holdout is not None and window is not None and priority is not None
    if test is not None and holdout + test.share >= 1:
        raise CampaignError(
            [Problem(shown, None, "test.share", "holdout and test share leave no one for the rest")]
        )
    included, excluded, refresh = audience
    intent, channel, adapt, copy = message
    return Campaign(
        name=name,
        description=description,
        segments=included,
        exclude=excluded,
        refresh=refresh,
        intent=intent,
        channel=channel,
        adapt_style=adapt,
        copy=copy,
        at=at,
        best_time=best_time,
        holdout=holdout,
        conversion_window=window,
        priority=priority,
        test=test,
        source=source,
        digest=hashlib.sha256(source.encode("utf-8")).hexdigest(),
    )


def load_campaign(
    path: Path, *, shown: str | None = None, segments: Path | None = None
) -> Campaign:
    shown = shown or str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignError([Problem(shown, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError([Problem(shown, None, "", f"cannot be read as text ({exc})")]) from None
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return parse_campaign(source, name=name, shown=shown, segments=segments)


# --- parts -------------------------------------------------------------------------------


def _names(reader: Reader, node: Any, path: str) -> tuple[str, ...] | None:
    """One segment name or a list of them."""
    if isinstance(node, yaml.SequenceNode):
        names = [reader.name(item, f"{path}[{i}]", "segment") for i, item in enumerate(node.value)]
        if not names:
            reader.fail(node, path, "name at least one segment")
            return None
        return None if None in names else tuple(n for n in names if n is not None)
    one = reader.name(node, path, "segment")
    return None if one is None else (one,)


def _audience(
    reader: Reader, node: Any, segments: Path | None
) -> tuple[tuple[str, ...], tuple[str, ...], bool] | None:
    if node is None:
        return None
    nodes = reader.mapping(node, "audience", ("segments", "exclude", "refresh"))
    if nodes is None:
        return None
    included = _names(
        reader, reader.required(nodes, "segments", node, "audience"), "audience.segments"
    )
    excluded: tuple[str, ...] | None = ()
    if "exclude" in nodes and not reader.is_null(nodes["exclude"]):
        excluded = _names(reader, nodes["exclude"], "audience.exclude")
    refresh = True
    if "refresh" in nodes:
        refresh = _boolean(reader, nodes["refresh"], "audience.refresh")
    if included is None or excluded is None:
        return None
    if segments is not None:
        for path, names, value in (
            ("audience.segments", included, nodes.get("segments")),
            ("audience.exclude", excluded, nodes.get("exclude")),
        ):
            for name in names:
                if not (segments / f"{name}.yaml").is_file():
                    reader.fail(value, path, f"no segment {name!r} (segments/{name}.yaml)")
    overlap = set(included) & set(excluded)
    if overlap:
        reader.fail(node, "audience", f"{', '.join(sorted(overlap))} is included and excluded")
    return included, excluded, refresh


def _boolean(reader: Reader, node: Any, path: str) -> bool:
    value = reader.scalar(node, path)
    if not isinstance(value, bool):
        reader.fail(node, path, "must be true or false")
        return False
    return value


def _message(reader: Reader, node: Any) -> tuple[str, str, bool, Copy] | None:
    if node is None:
        return None
    nodes = reader.mapping(node, "message", ("intent", "channel", "adapt_style", "copy"))
    if nodes is None:
        return None
    intent = reader.choice(
        reader.required(nodes, "intent", node, "message"), "message.intent", list(INTENTS), "intent"
    )
    channel: str | None = "email"
    if "channel" in nodes:
        channel = reader.choice(nodes["channel"], "message.channel", DELIVERABLE, "channel")
    if intent is not None and channel is not None and channel not in INTENTS[intent].channels:
        reader.fail(
            nodes.get("channel", node),
            "message.channel",
            f"{intent} is written for {', '.join(INTENTS[intent].channels)}, not {channel}",
        )
    adapt = True
    if "adapt_style" in nodes:
        adapt = _boolean(reader, nodes["adapt_style"], "message.adapt_style")
    copy: Copy | None = {}
    if "copy" in nodes and not reader.is_null(nodes["copy"]):
        copy = read_copy(reader, nodes["copy"], "message.copy")
    if intent is None or channel is None or copy is None:
        return None
    return intent, channel, adapt, copy


def read_copy(reader: Reader, node: Any, path: str) -> Copy | None:
    """`{field: text}` for every language, and `{language: {field: text}}` for one."""
    nodes = reader.mapping(node, path, (*FIELDS, *LANGUAGES), "a mapping of copy fields")
    if nodes is None:
        return None
    every: dict[str, str] = {}
    copy: dict[str, dict[str, str]] = {}
    for key, value in nodes.items():
        inner = f"{path}.{key}"
        if key in FIELDS:
            text = reader.text(value, inner)
            if text is not None:
                every[key] = text
            continue
        fields = reader.mapping(value, inner, FIELDS, "a mapping of copy fields")
        for name, text_node in (fields or {}).items():
            text = reader.text(text_node, f"{inner}.{name}")
            if text is not None:
                copy.setdefault(key, {})[name] = text
    if every:
        copy["*"] = every
    return copy


def _schedule(reader: Reader, node: Any) -> tuple[datetime | None, Duration | None]:
    if node is None or reader.is_null(node):
        return None, None
    nodes = reader.mapping(node, "schedule", ("at", "best_time"))
    if nodes is None:
        return None, None
    at = None
    if "at" in nodes:
        at = read_instant(reader, nodes["at"], "schedule.at")
    best = None
    if "best_time" in nodes:
        best = reader.duration(nodes["best_time"], "schedule.best_time")
        if best is not None and best.seconds < 3600:
            reader.fail(nodes["best_time"], "schedule.best_time", "must be at least 1h")
            best = None
    return at, best


def read_instant(reader: Reader, node: Any, path: str) -> datetime | None:
    text = reader.raw(node, path, "an ISO 8601 instant such as 2026-12-10T09:00:00+01:00")
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        reader.fail(node, path, f"{text!r} is not an ISO 8601 instant")
        return None
    if moment.tzinfo is None:
        reader.fail(node, path, f"{text!r} has no UTC offset: write e.g. {text}+01:00 or {text}Z")
        return None
    return moment.astimezone(UTC)


def _test(reader: Reader, node: Any) -> Test | None:
    nodes = reader.mapping(node, "test", ("share", "window", "metric", "variants"))
    if nodes is None:
        return None
    share = reader.share(reader.required(nodes, "share", node, "test"), "test.share", zero=False)
    window = reader.duration(nodes.get("window"), "test.window", default="4h")
    metric: str | None = "clicks"
    if "metric" in nodes:
        metric = reader.choice(nodes["metric"], "test.metric", METRICS, "metric")
    listed = reader.sequence(reader.required(nodes, "variants", node, "test"), "test.variants")
    arms: list[Arm] = []
    for i, item in enumerate(listed or []):
        path = f"test.variants[{i}]"
        fields = reader.mapping(item, path, ("name", "copy"))
        if fields is None:
            continue
        name = reader.name(reader.required(fields, "name", item, path), f"{path}.name", "variant")
        copy: Copy | None = {}
        if "copy" in fields:
            copy = read_copy(reader, fields["copy"], f"{path}.copy")
        if name is not None and any(a.name == name for a in arms):
            reader.fail(item, f"{path}.name", f"variant {name!r} is given twice")
        elif name is not None and copy is not None:
            arms.append(Arm(name, copy))
    if listed is not None and len(listed) < 2:
        reader.fail(node, "test.variants", "a test needs at least two variants")
    if share is None or window is None or metric is None or len(arms) < 2:
        return None
    return Test(share, window, metric, tuple(arms))


def dump_campaign(values: Mapping[str, Any]) -> str:
    """A campaign file's text from plain values (what `campaigns create` writes)."""
    return yaml.safe_dump(dict(values), sort_keys=False, allow_unicode=True)


def timedelta_of(duration: Duration | None) -> timedelta | None:
    return None if duration is None else duration.timedelta
