"""Journeys: what happens to a contact after a trigger — waits, branches, messages, splits,
holdouts — written as YAML (docs/journeys.md) and checked into a typed model the engine runs.

Where journeys live, and which run:

- the **library**: the built-in journeys shipped in `reengage/journeys/library/`;
- the **home**: `<home>/journeys/NAME.yaml` is an *enabled* journey — the engine runs every
  one of them; `NAME.yaml.disabled` is a disabled one, kept with its edits.

`enable_journey` copies a built-in into the home (or renames a disabled file back) after
checking it, and writes any segment the journey defines inline; `disable_journey` renames the
file to `.disabled`. A journey in the home shadows the built-in of the same name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reengage.config import Home
from reengage.errors import InputError
from reengage.journeys.definition import (
    NAME,
    Duration,
    Journey,
    JourneyError,
    Problem,
    bucket,
    journey_name,
    load_journey,
    parse_journey,
)
from reengage.journeys.steps import (
    Audience,
    Branch,
    End,
    Holdout,
    Send,
    Split,
    Step,
    Update,
    Variant,
    Wait,
    Webhook,
)
from reengage.journeys.triggers import (
    Abandonment,
    DateTrigger,
    EventTrigger,
    Goal,
    InactivityTrigger,
    Reentry,
    SegmentTrigger,
    Trigger,
)

FOLDER = "journeys"
SUFFIX = ".yaml"
DISABLED = ".yaml.disabled"
LIBRARY = Path(__file__).parent / "library"

Source = Literal["builtin", "home"]


@dataclass(frozen=True)
class JourneyFile:
    """A journey as found: where, whether it runs, and the journey or what is wrong with it."""

    name: str
    path: Path
    shown: str  # how messages name the file
    source: Source
    enabled: bool
    journey: Journey | None
    error: JourneyError | None


@dataclass(frozen=True)
class Enabled:
    """What `enable_journey` did: `copied` a built-in, `restored` a disabled file, or found
    it `already` enabled; and the segment files it wrote."""

    path: Path
    action: Literal["copied", "restored", "already"]
    segments: tuple[str, ...]


def folder(home: Home) -> Path:
    return home.path / FOLDER


def builtin_names() -> list[str]:
    """The names of the built-in journeys."""
    return sorted(journey_name(p) for p in LIBRARY.glob("*" + SUFFIX))


def _shown(home: Home | None, path: Path) -> str:
    if path.parent == LIBRARY:
        return f"library/{path.name}"
    if home is not None:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(home.path))
    return str(path)


def read(path: Path, home: Home | None = None) -> Journey:
    """Load and check one journey file (named relative to the home in messages); with a home,
    a segment the trigger names must exist in it."""
    segments = home.path / "segments" if home is not None else None
    return load_journey(path, shown=_shown(home, path), segments=segments)


def _entry(home: Home, path: Path, source: Source, enabled: bool) -> JourneyFile:
    try:
        journey, error = read(path, home), None
    except JourneyError as exc:
        journey, error = None, exc
    return JourneyFile(
        journey_name(path), path, _shown(home, path), source, enabled, journey, error
    )


def catalogue(home: Home) -> list[JourneyFile]:
    """Every journey, by name: the home's (enabled, then disabled ones without an enabled
    file), and the built-ins the home does not have."""
    found: dict[str, JourneyFile] = {}
    base = folder(home)
    if base.is_dir():
        for path in sorted(base.glob("*" + SUFFIX)):
            found[journey_name(path)] = _entry(home, path, "home", True)
        for path in sorted(base.glob("*" + DISABLED)):
            found.setdefault(journey_name(path), _entry(home, path, "home", False))
    for name in builtin_names():
        if name not in found:
            found[name] = _entry(home, LIBRARY / (name + SUFFIX), "builtin", False)
    return [found[name] for name in sorted(found)]


def find_journey(home: Home, name: str) -> JourneyFile:
    """The journey called `name`: enabled in the home, disabled in the home, or built in."""
    for entry in catalogue(home):
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in catalogue(home))
    raise InputError(f"no journey named {name!r} (known: {known})")


def enabled_journeys(home: Home) -> dict[str, Journey]:
    """The journeys the engine runs: every `<home>/journeys/*.yaml`, checked; a broken file
    stops everything with every problem of every file (JourneyError)."""
    journeys: dict[str, Journey] = {}
    problems: list[Problem] = []
    for entry in catalogue(home):
        if not entry.enabled:
            continue
        if entry.error is not None:
            problems.extend(entry.error.problems)
        elif entry.journey is not None:
            journeys[entry.name] = entry.journey
    if problems:
        raise JourneyError(problems)
    return journeys


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_segments(home: Home, journey: Journey) -> tuple[str, ...]:
    """Write the segment a journey defines inline to `segments/NAME.yaml` when the home has
    no segment by that name (an existing one is kept: it may have been tuned). Returns the
    names written."""
    from reengage.audience.definitions import create_segment

    trigger = journey.trigger
    if not isinstance(trigger, SegmentTrigger) or trigger.rule is None:
        return ()
    if (home.path / "segments" / f"{trigger.segment}.yaml").exists():
        return ()
    create_segment(home, trigger.segment, trigger.rule.text, description=trigger.description)
    return (trigger.segment,)


def enable_journey(home: Home, name: str) -> Enabled:
    """Make a journey run: check it, then copy the built-in into the home (or rename a
    disabled file back), and write the segment it defines inline. Safe to run again."""
    if not NAME.fullmatch(name):
        raise InputError(f"journey name {name!r}: use letters, digits, - and _")
    base = folder(home)
    target = base / (name + SUFFIX)
    disabled = base / (name + DISABLED)
    if target.is_file():
        journey = read(target, home)
        return Enabled(target, "already", ensure_segments(home, journey))
    if disabled.is_file():
        journey = read(disabled, home)
        os.replace(disabled, target)
        return Enabled(target, "restored", ensure_segments(home, journey))
    builtin = LIBRARY / (name + SUFFIX)
    if not builtin.is_file():
        known = sorted({*builtin_names(), *(e.name for e in catalogue(home))})
        raise InputError(f"no journey named {name!r} (known: {', '.join(known)})")
    journey = read(builtin, home)
    _write(target, builtin.read_text(encoding="utf-8"))
    return Enabled(target, "copied", ensure_segments(home, journey))


def disable_journey(home: Home, name: str) -> Path | None:
    """Stop a journey: rename `journeys/NAME.yaml` to `NAME.yaml.disabled` (kept, edits and
    all). Returns the new path, or None when it was not enabled."""
    target = folder(home) / (name + SUFFIX)
    if not NAME.fullmatch(name) or not target.is_file():
        return None
    disabled = target.with_name(name + DISABLED)
    os.replace(target, disabled)
    return disabled


__all__ = [
    "LIBRARY",
    "Abandonment",
    "Audience",
    "Branch",
    "DateTrigger",
    "Duration",
    "Enabled",
    "End",
    "EventTrigger",
    "Goal",
    "Holdout",
    "InactivityTrigger",
    "Journey",
    "JourneyError",
    "JourneyFile",
    "Problem",
    "Reentry",
    "SegmentTrigger",
    "Send",
    "Split",
    "Step",
    "Trigger",
    "Update",
    "Variant",
    "Wait",
    "Webhook",
    "bucket",
    "builtin_names",
    "catalogue",
    "disable_journey",
    "enable_journey",
    "enabled_journeys",
    "ensure_segments",
    "find_journey",
    "load_journey",
    "parse_journey",
    "read",
]
