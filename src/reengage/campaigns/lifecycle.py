"""A campaign's life: written (draft), scheduled, under way (testing, sending), paused,
finished (done) or cancelled; each change one short transaction on the `campaigns` row.

    draft --schedule--> scheduled --start_at--> testing --decision--> sending --> done
                 any of scheduled, testing, sending <--pause/resume--> paused
                 anything not done --cancel--> cancelled

Scheduling copies the file's text into the row: what is under way no longer depends on the
file (edit it, and the change applies when the campaign is scheduled again, before it
starts). Pausing sets the campaign's unsent messages aside (`paused`, never claimed);
resuming puts them back in the queue, due when they were; cancelling marks them
`cancelled`. A message already claimed by a dispatcher when the pause lands still goes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, or_, select

from reengage.campaigns.definition import (
    SUFFIX,
    Campaign,
    CampaignError,
    folder,
    load_campaign,
    parse_campaign,
)
from reengage.clock import Clock, as_utc
from reengage.config import Home
from reengage.errors import InputError
from reengage.journeys.reading import NAME, Problem
from reengage.state.schema import campaigns, messages

LEASE = timedelta(minutes=10)
UNDER_WAY = ("testing", "sending")
PENDING = ("queued", "deferred", "sending")


class CampaignStateError(InputError):
    """A change the campaign's state does not allow (pausing a finished campaign, ...)."""


@dataclass(frozen=True)
class Row:
    """A campaign's run as state holds it."""

    name: str
    status: str
    phase: str | None
    start_at: datetime | None
    started_at: datetime | None
    frozen_at: datetime | None
    decide_at: datetime | None
    decided_at: datetime | None
    finished_at: datetime | None
    audience: int | None
    excluded: int | None
    holdout: int | None
    winner: str | None
    decision: dict[str, Any] | None
    definition: str
    digest: str

    def campaign(self) -> Campaign:
        """The definition as scheduled."""
        return parse_campaign(self.definition, name=self.name, shown=f"campaign {self.name}")


def path_of(home: Home, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise InputError(f"campaign name {name!r}: use letters, digits, - and _ (at most 100)")
    return folder(home.path) / f"{name}{SUFFIX}"


def shown(home: Home, path: Path) -> str:
    try:
        return str(path.relative_to(home.path))
    except ValueError:
        return str(path)


def read(home: Home, name: str) -> Campaign:
    """The campaign file `name`, checked (its segments must exist)."""
    path = path_of(home, name)
    if not path.is_file():
        raise InputError(f"no campaign {name!r} ({shown(home, path)} does not exist)")
    return load_campaign(path, shown=shown(home, path), segments=home.path / "segments")


def check_copy(home: Home, campaign: Campaign) -> None:
    """The campaign's own copy compiles and renders in every language it may be sent in
    (the samples of the copy check): a mistake fails here, not in an inbox."""
    from reengage.config import LANGUAGES
    from reengage.messages.copy import check_overrides

    arms = [None] if campaign.test is None else [a.name for a in campaign.test.arms]
    for language in LANGUAGES:
        for arm in arms:
            copy = campaign.copy_for(language, arm)
            if copy:
                where = f"campaign {campaign.name}" + (f" variant {arm}" if arm else "")
                check_overrides(copy, language, where=where, settings=home.settings)


def write(home: Home, engine: Engine, clock: Clock, name: str, text: str) -> Campaign:
    """Check the text of campaign `name` and write its file (replacing it) and a draft row.
    A campaign under way or finished cannot be rewritten: its run is what it was."""
    path = path_of(home, name)
    campaign = parse_campaign(
        text, name=name, shown=shown(home, path), segments=home.path / "segments"
    )
    check_copy(home, campaign)
    now = clock.now()
    with engine.begin() as conn:
        found = _row(conn, name)
        if found is not None and found.status not in ("draft", "scheduled", "cancelled"):
            raise CampaignStateError(
                f"campaign {name!r} is {found.status}: its definition can no longer change"
            )
        values = {
            "status": "draft",
            "phase": None,
            "definition": text,
            "digest": campaign.digest,
            "start_at": None,
            "updated_at": now,
        }
        if found is None:
            conn.execute(campaigns.insert().values(name=name, created_at=now, **values))
        else:
            conn.execute(campaigns.update().where(campaigns.c.name == name).values(**values))
        _write_file(path, text)
    return campaign


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".campaign-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def schedule(home: Home, engine: Engine, clock: Clock, name: str, at: datetime | None) -> Row:
    """Schedule campaign `name` to start at `at` (else its file's `schedule.at`, else now):
    its current file becomes the definition of the run."""
    campaign = read(home, name)
    check_copy(home, campaign)
    now = clock.now()
    start = as_utc(at or campaign.at or now)
    with engine.begin() as conn:
        found = _row(conn, name)
        if found is not None and found.status not in ("draft", "scheduled", "cancelled"):
            raise CampaignStateError(
                f"campaign {name!r} is {found.status}: only a draft or scheduled campaign can "
                "be scheduled"
            )
        if found is not None and found.status == "cancelled" and found.phase is not None:
            raise CampaignStateError(
                f"campaign {name!r} was cancelled after it started: write it again under a new name"
            )
        values = {
            "status": "scheduled",
            "phase": None,
            "definition": campaign.source,
            "digest": campaign.digest,
            "start_at": start,
            "updated_at": now,
        }
        if found is None:
            conn.execute(campaigns.insert().values(name=name, created_at=now, **values))
        else:
            conn.execute(campaigns.update().where(campaigns.c.name == name).values(**values))
        return get(conn, name)


def pause(engine: Engine, clock: Clock, name: str) -> Row:
    now = clock.now()
    with engine.begin() as conn:
        found = get(conn, name, lock=True)
        if found.status not in ("scheduled", *UNDER_WAY):
            raise CampaignStateError(f"campaign {name!r} is {found.status}: it cannot be paused")
        conn.execute(
            campaigns.update()
            .where(campaigns.c.name == name)
            .values(status="paused", updated_at=now)
        )
        conn.execute(
            messages.update()
            .where(messages.c.campaign == name, messages.c.status.in_(("queued", "deferred")))
            .values(status="paused")
        )
        return get(conn, name)


def resume(engine: Engine, clock: Clock, name: str) -> Row:
    now = clock.now()
    with engine.begin() as conn:
        found = get(conn, name, lock=True)
        if found.status != "paused":
            raise CampaignStateError(f"campaign {name!r} is {found.status}, not paused")
        conn.execute(
            campaigns.update()
            .where(campaigns.c.name == name)
            .values(status=resumed_status(found), updated_at=now)
        )
        conn.execute(
            messages.update()
            .where(messages.c.campaign == name, messages.c.status == "paused")
            .values(status="queued")
        )
        return get(conn, name)


def resumed_status(row: Row) -> str:
    """Where a paused campaign goes back to: its phase tells how far it was."""
    if row.phase is None:
        return "scheduled"
    if row.phase in ("frozen", "test_queued") and row.campaign().test is not None:
        return "testing"
    return "sending"


def cancel(engine: Engine, clock: Clock, name: str) -> tuple[Row, int]:
    """Cancel campaign `name`: its unsent messages are marked cancelled (how many, returned)."""
    now = clock.now()
    with engine.begin() as conn:
        found = get(conn, name, lock=True)
        if found.status in ("done", "cancelled"):
            raise CampaignStateError(f"campaign {name!r} is {found.status} already")
        conn.execute(
            campaigns.update()
            .where(campaigns.c.name == name)
            .values(status="cancelled", finished_at=now, updated_at=now, lease_until=None)
        )
        dropped = conn.execute(
            messages.update()
            .where(
                messages.c.campaign == name,
                messages.c.status.in_(("queued", "deferred", "paused")),
            )
            .values(status="cancelled", reason="campaign cancelled")
        ).rowcount
        return get(conn, name), int(dropped or 0)


# --- reading rows, leases ----------------------------------------------------------------


def _row(conn: Connection, name: str, lock: bool = False) -> Row | None:
    query = select(campaigns).where(campaigns.c.name == name)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).mappings().first()
    if found is None:
        return None
    return Row(
        name=found["name"],
        status=found["status"],
        phase=found["phase"],
        **{
            k: None if found[k] is None else as_utc(found[k])
            for k in ("start_at", "started_at", "frozen_at", "decide_at", "decided_at")
        },
        finished_at=None if found["finished_at"] is None else as_utc(found["finished_at"]),
        audience=found["audience"],
        excluded=found["excluded"],
        holdout=found["holdout"],
        winner=found["winner"],
        decision=found["decision"],
        definition=found["definition"],
        digest=found["digest"],
    )


def get(conn: Connection, name: str, lock: bool = False) -> Row:
    found = _row(conn, name, lock)
    if found is None:
        raise InputError(f"no campaign {name!r} has been created or scheduled")
    return found


def rows(engine: Engine) -> list[Row]:
    with engine.connect() as conn:
        names = conn.execute(select(campaigns.c.name).order_by(campaigns.c.name)).scalars().all()
        return [get(conn, n) for n in names]


def files(home: Home) -> list[str]:
    """The names of the campaign files in the home."""
    where = folder(home.path)
    if not where.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in where.glob(f"*{SUFFIX}"))


@contextmanager
def leased(engine: Engine, clock: Clock, name: str) -> Iterator[bool]:
    """Hold campaign `name`'s lease while its work is done (True), or False when another
    worker holds it; released at the end, kept to expire if this process dies."""
    now = clock.now()
    with engine.begin() as conn:
        taken = conn.execute(
            campaigns.update()
            .where(
                campaigns.c.name == name,
                or_(campaigns.c.lease_until.is_(None), campaigns.c.lease_until < now),
            )
            .values(lease_until=now + LEASE)
        ).rowcount
    try:
        yield bool(taken)
    finally:
        if taken:
            with engine.begin() as conn:
                conn.execute(
                    campaigns.update().where(campaigns.c.name == name).values(lease_until=None)
                )


def problem(name: str, message: str) -> CampaignError:
    return CampaignError([Problem(f"campaign {name}", None, "", message)])
