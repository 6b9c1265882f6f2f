"""Campaigns end to end on SQLite and PostgreSQL state: scheduling, the frozen audience and its
exclusions, the holdout, pause/resume/cancel, the subject test and its winner rule (with and
without a significant difference), the contact policy at send time, and the commands.

Messages go to the default mail sink (a maildir in the home); clicks are written to the facts
as the click handler writes them.
"""

from __future__ import annotations

import json
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, func, insert, select
from typer.testing import CliRunner

from reengage.audience.segments import refresh_segments
from reengage.campaigns import lifecycle
from reengage.campaigns.runner import tick
from reengage.cli import app
from reengage.clock import FixedClock, as_utc
from reengage.config import Home
from reengage.errors import InputError
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.messages.dispatch import deliver_due
from reengage.state.schema import campaign_recipients, consents, contacts, messages

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday, outside quiet hours in Europe
H = timedelta(hours=1)


@dataclass
class Shop:
    home: Home
    engine: Engine
    clock: FixedClock = field(default_factory=lambda: FixedClock(T0))
    ids: dict[str, int] = field(default_factory=dict)

    def contact(
        self,
        customer: str,
        *,
        country: str = "IT",
        vip: bool = False,
        marketing: bool = True,
        timezone: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(
                insert(contacts).values(
                    customer_id=customer,
                    email=f"{customer.lower()}@example.com",
                    country=country,
                    timezone=timezone,
                    created_at=T0 - 100 * 24 * H,
                    updated_at=T0 - 100 * 24 * H,
                    origin="customers",
                    attributes={"vip": vip},
                )
            ).inserted_primary_key
            assert key is not None
            contact_id = int(key[0])
            if marketing:
                conn.execute(
                    insert(consents).values(
                        contact_id=contact_id,
                        channel="email",
                        purpose="marketing",
                        granted=True,
                        source="test",
                        recorded_at=T0 - 100 * 24 * H,
                    )
                )
        self.ids[customer] = contact_id
        return contact_id

    def segment(self, name: str, rule: str) -> None:
        folder = self.home.path / "segments"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.yaml").write_text(f"rule: '{rule}'\n", encoding="utf-8")
        refresh_segments(self.home, self.engine, self.clock, [name])

    def write(self, name: str, text: str) -> None:
        lifecycle.write(self.home, self.engine, self.clock, name, text)

    def schedule(self, name: str, at: datetime | None = None) -> lifecycle.Row:
        return lifecycle.schedule(self.home, self.engine, self.clock, name, at)

    def tick(self) -> Any:
        return tick(self.home, self.engine, self.clock)

    def deliver(self, name: str | None = None) -> Any:
        return deliver_due(self.home, self.engine, self.clock, campaign=name)

    def row(self, name: str) -> lifecycle.Row:
        with self.engine.connect() as conn:
            return lifecycle.get(conn, name)

    def recipients(self, name: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(campaign_recipients)
                .where(campaign_recipients.c.campaign == name)
                .order_by(campaign_recipients.c.contact_id)
            )
            return [dict(r._mapping) for r in found]

    def messages(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        query = select(messages).where(messages.c.campaign == name).order_by(messages.c.id)
        if status is not None:
            query = query.where(messages.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mailbox(self) -> list[Any]:
        path = self.home.settings.mail_path
        if not path.exists():
            return []
        return list(mailbox.Maildir(str(path), create=False))

    def click(self, message: dict[str, Any], at: datetime, machine: bool = False) -> None:
        row = {
            "event_id": f"c-{message['id']}-{machine}",
            "message_id": str(message["id"]),
            "customer_id": self.customer(message["contact_id"]),
            "channel": "email",
            "type": "click",
            "occurred_at": at,
            "properties": json.dumps({"machine": machine, "url": "https://shop.example/"}),
        }
        schema = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])
        append(
            self.home.settings.facts_path,
            MESSAGE_EVENTS,
            pa.Table.from_pylist([row], schema=schema),
            ingested_at=at,
        )

    def customer(self, contact_id: int) -> str:
        return {v: k for k, v in self.ids.items()}[contact_id]


@pytest.fixture
def shop(home: Home, engine: Engine) -> Iterator[Shop]:
    yield Shop(home, engine)


def subjects(shop: Shop) -> list[str]:
    return [str(make_header(decode_header(m["Subject"]))) for m in shop.mailbox()]


SIMPLE = """
description: A note to Italian customers
audience:
  segments: [italy]
  exclude: [vips]
message:
  intent: winback_reminder
holdout: 0
"""


def test_a_scheduled_campaign_starts_at_its_time_with_the_audience_frozen(shop: Shop) -> None:
    for i in range(6):
        shop.contact(f"C{i}", vip=i < 2)
    shop.contact("FR1", country="FR")
    shop.segment("italy", 'country = "IT"')
    shop.segment("vips", "attributes.vip")
    shop.write("note", SIMPLE)
    shop.schedule("note", T0 + H)

    shop.tick()
    assert shop.row("note").status == "scheduled"
    assert shop.recipients("note") == []

    shop.clock.advance(H)
    started = shop.tick()
    assert started.started == ["note"]
    row = shop.row("note")
    assert (row.status, row.audience, row.excluded, row.holdout) == ("sending", 4, 2, 0)
    frozen = shop.recipients("note")
    assert [r["contact_id"] for r in frozen] == [shop.ids[f"C{i}"] for i in range(2, 6)]
    assert {r["segment"] for r in frozen} == {"italy"}  # why they are in
    assert all(r["entered_at"] is not None for r in frozen)
    queued = shop.messages("note", "queued")
    assert len(queued) == 4
    assert {as_utc(m["due_at"]) for m in queued} == {T0 + H}

    # who joins the segment after the start gets nothing: the audience is frozen
    shop.contact("LATE")
    shop.segment("italy", 'country = "IT"')
    shop.tick()
    assert len(shop.recipients("note")) == 4

    delivered = shop.deliver("note")
    assert delivered.sent == 4
    assert len(shop.mailbox()) == 4
    shop.tick()
    assert shop.row("note").status == "done"


def test_the_policy_still_applies_and_the_holdout_gets_nothing(shop: Shop) -> None:
    for i in range(300):
        shop.contact(f"C{i}", marketing=i % 10 != 0)  # every tenth has not opted in
    shop.segment("italy", 'country = "IT"')
    shop.write(
        "held",
        "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\nholdout: 20%\n",
    )
    shop.schedule("held")
    shop.tick()
    frozen = shop.recipients("held")
    held = {r["contact_id"] for r in frozen if r["grp"] == "holdout"}
    assert 35 <= len(held) <= 85  # 20% of 300, drawn by hash
    assert shop.row("held").holdout == len(held)
    queued = shop.messages("held")
    assert not held & {m["contact_id"] for m in queued}
    assert len(queued) == 300 - len(held)

    shop.deliver("held")
    refused = {shop.ids[f"C{i}"] for i in range(0, 300, 10)}
    blocked = shop.messages("held", "blocked")
    assert {m["contact_id"] for m in blocked} == refused - held
    assert len(shop.mailbox()) == 300 - len(held) - len(refused - held)


@pytest.fixture
def global_env(env: dict[str, str]) -> dict[str, str]:
    env["REENGAGE_GLOBAL_HOLDOUT"] = "0.3"
    return env


def test_the_global_holdout_joins_the_campaigns_holdout(
    global_env: dict[str, str], shop: Shop
) -> None:
    from reengage.measure.holdout import global_holdout

    for i in range(200):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    shop.write("g", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("g")
    shop.tick()
    frozen = shop.recipients("g")
    ids = [r["contact_id"] for r in frozen]
    expected = {c for c, held in zip(ids, global_holdout(ids, 0.3), strict=True) if held}
    assert 30 <= len(expected) <= 90  # 30% of 200, drawn by hash
    assert {r["contact_id"] for r in frozen if r["grp"] == "holdout"} == expected
    assert not expected & {m["contact_id"] for m in shop.messages("g")}


def test_pause_resume_and_cancel(shop: Shop) -> None:
    for i in range(5):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    shop.write("p", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("p")
    shop.tick()
    assert len(shop.messages("p", "queued")) == 5

    paused = lifecycle.pause(shop.engine, shop.clock, "p")
    assert paused.status == "paused"
    assert len(shop.messages("p", "paused")) == 5
    assert shop.deliver().sent == 0  # paused rows are never claimed
    shop.tick()
    assert shop.row("p").status == "paused"

    resumed = lifecycle.resume(shop.engine, shop.clock, "p")
    assert resumed.status == "sending"
    assert shop.deliver().sent == 5
    with pytest.raises(lifecycle.CampaignStateError):
        lifecycle.resume(shop.engine, shop.clock, "p")


def test_cancel_drops_what_has_not_gone(shop: Shop) -> None:
    for i in range(4):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    shop.write("c", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("c")
    shop.tick()
    lifecycle.pause(shop.engine, shop.clock, "c")
    row, dropped = lifecycle.cancel(shop.engine, shop.clock, "c")
    assert (row.status, dropped) == ("cancelled", 4)
    assert shop.deliver().sent == 0
    assert len(shop.messages("c", "cancelled")) == 4
    with pytest.raises(lifecycle.CampaignStateError):
        lifecycle.cancel(shop.engine, shop.clock, "c")
    with pytest.raises(lifecycle.CampaignStateError):
        lifecycle.pause(shop.engine, shop.clock, "c")


def test_a_campaign_paused_before_its_start_waits(shop: Shop) -> None:
    shop.contact("C1")
    shop.segment("italy", 'country = "IT"')
    shop.write("w", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("w", T0 + H)
    lifecycle.pause(shop.engine, shop.clock, "w")
    shop.clock.advance(2 * H)
    shop.tick()
    assert shop.recipients("w") == []
    assert lifecycle.resume(shop.engine, shop.clock, "w").status == "scheduled"
    shop.tick()
    assert len(shop.messages("w")) == 1


def test_the_file_as_scheduled_is_what_runs(shop: Shop) -> None:
    shop.contact("C1")
    shop.segment("italy", 'country = "IT"')
    shop.write("f", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("f", T0 + H)
    path = shop.home.path / "campaigns" / "f.yaml"
    path.write_text(
        "audience: {segments: [italy]}\nmessage: {intent: vip_thanks}\n", encoding="utf-8"
    )
    shop.clock.advance(H)
    shop.tick()
    assert [m["intent"] for m in shop.messages("f")] == ["winback_reminder"]
    with pytest.raises(lifecycle.CampaignStateError):
        shop.write("f", path.read_text())  # under way: its definition is fixed


TESTED = """
audience: {segments: [italy]}
message: {intent: winback_reminder}
test:
  share: 50%
  window: 4h
  metric: clicks
  variants:
    - name: a
      copy: {subject: "Plain subject A"}
    - name: b
      copy: {subject: "Bold subject B"}
"""


def _tested_shop(shop: Shop, people: int = 200) -> None:
    for i in range(people):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    shop.write("t", TESTED)
    shop.schedule("t")
    shop.tick()


def test_a_subject_test_sends_the_significant_winner_to_the_rest(shop: Shop) -> None:
    _tested_shop(shop)
    row = shop.row("t")
    assert (row.status, row.phase) == ("testing", "test_queued")
    test_rows = shop.messages("t")
    tested = {r["contact_id"] for r in shop.recipients("t") if r["grp"] == "test"}
    assert {m["contact_id"] for m in test_rows} == tested
    assert {m["step"] for m in test_rows} == {"a", "b"}
    assert shop.deliver().sent == len(tested)
    assert set(subjects(shop)) == {"Plain subject A", "Bold subject B"}

    # half of b's recipients click, one in twenty of a's; machine clicks do not count
    for m in shop.messages("t", "sent"):
        if (m["step"] == "b" and m["id"] % 2 == 0) or (m["step"] == "a" and m["id"] % 20 == 0):
            shop.click(m, T0 + H)
        elif m["step"] == "a":
            shop.click(m, T0 + H, machine=True)

    shop.clock.advance(3 * H)
    shop.tick()
    assert shop.row("t").phase == "test_queued"  # the window is not over
    shop.clock.advance(H)
    ticked = shop.tick()
    assert ticked.decided == ["t"]
    row = shop.row("t")
    assert row.winner == "b"
    assert row.decision is not None and row.decision["significant"] is True
    rest = [m for m in shop.messages("t") if m["contact_id"] not in tested]
    assert rest and {m["step"] for m in rest} == {"b"}
    assert {m["payload"]["copy"]["subject"] for m in rest} == {"Bold subject B"}
    before = len(shop.mailbox())
    shop.deliver()
    assert subjects(shop).count("Bold subject B") == len(rest) + sum(
        1 for m in test_rows if m["step"] == "b"
    )
    assert len(shop.mailbox()) == before + len(rest)


def test_without_a_significant_difference_the_default_goes(shop: Shop) -> None:
    _tested_shop(shop)
    shop.deliver()
    for m in shop.messages("t", "sent"):
        if m["id"] % 5 == 0:  # the same rate on both arms
            shop.click(m, T0 + H)
    shop.clock.advance(4 * H)
    shop.tick()
    row = shop.row("t")
    assert row.winner == "a"
    assert row.decision is not None
    assert row.decision["significant"] is False
    assert "no significant" in row.decision["reason"]
    rest = [m for m in shop.messages("t") if m["step"] == "a" and as_utc(m["created_at"]) > T0]
    assert rest


def test_campaign_files_report_every_mistake_with_its_line(shop: Shop) -> None:
    shop.segment("italy", 'country = "IT"')
    bad = """audience:
  segments: [italy, nowhere]
message:
  intent: winback_reminder
  chanel: email
test:
  share: 20%
  variants:
    - name: a
"""
    with pytest.raises(InputError) as caught:
        shop.write("bad", bad)
    text = str(caught.value)
    assert "campaigns/bad.yaml line 2 (audience.segments): no segment 'nowhere'" in text
    assert "line 5 (message.chanel): unknown key 'chanel' (did you mean 'channel'?)" in text
    assert "(test.variants): a test needs at least two variants" in text
    assert not (shop.home.path / "campaigns" / "bad.yaml").exists()


def test_the_commands(shop: Shop, cli: CliRunner) -> None:
    for i in range(3):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    now = ["--now", T0.isoformat()]
    made = cli.invoke(
        app,
        [
            *now,
            "campaigns",
            "create",
            "cli",
            "--segment",
            "italy",
            "--intent",
            "winback_reminder",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["status"] == "draft"
    listed = cli.invoke(app, [*now, "campaigns", "list", "--json"])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["cli"]
    scheduled = cli.invoke(app, [*now, "campaigns", "schedule", "cli", "--json"])
    assert json.loads(scheduled.stdout)["status"] == "scheduled"
    delivered = cli.invoke(app, [*now, "campaigns", "deliver", "cli", "--json"])
    assert delivered.exit_code == 0, delivered.output
    assert json.loads(delivered.stdout)["delivered"]["sent"] == 3
    shown = json.loads(cli.invoke(app, [*now, "campaigns", "show", "cli", "--json"]).stdout)
    assert shown["status"] == "done"
    assert shown["messages"]["sent"] == 3
    assert shown["engagement"]["sent"] == 3
    paused = cli.invoke(app, [*now, "campaigns", "pause", "cli"])
    assert paused.exit_code == 2
    assert "done: it cannot be paused" in paused.output
    unknown = cli.invoke(app, [*now, "campaigns", "show", "nope"])
    assert unknown.exit_code == 2


def test_no_message_is_queued_twice_when_a_group_is_queued_again(shop: Shop) -> None:
    from reengage.campaigns.queueing import queue_group

    for i in range(5):
        shop.contact(f"C{i}")
    shop.segment("italy", 'country = "IT"')
    shop.write("q", "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\n")
    shop.schedule("q")
    shop.tick()
    campaign = shop.row("q").campaign()
    again = queue_group(shop.engine, shop.home.settings, campaign, "rest", shop.clock.now())
    assert again == 0
    with shop.engine.connect() as conn:
        total = conn.execute(select(func.count()).where(messages.c.campaign == "q")).scalar_one()
    assert total == 5


def test_send_test_mails_a_proof_of_each_variant_and_records_nothing(
    shop: Shop, cli: CliRunner
) -> None:
    shop.contact("C0")
    shop.segment("italy", 'country = "IT"')
    shop.write("t", TESTED.replace('"Bold subject B"', '"Ciao {{ first_name or \\"amico\\" }}"'))
    now = ["--now", T0.isoformat()]
    sent = cli.invoke(
        app,
        [*now, "campaigns", "send-test", "t", "--to", "me@shop.example", "--lang", "it", "--json"],
    )
    assert sent.exit_code == 0, sent.output
    assert [p["variant"] for p in json.loads(sent.stdout)["sent"]] == ["a", "b"]
    mails = shop.mailbox()
    assert {m["To"] for m in mails} == {"me@shop.example"}
    # the sample contact's first name fills the variant's template
    assert sorted(subjects(shop)) == ["[proof] (a) Plain subject A", "[proof] (b) Ciao Giulia"]
    assert all(m["X-Reengage-Proof"] == "t" for m in mails)
    assert shop.messages("t") == []  # no outbox row, no policy, no contact touched
    assert shop.row("t").status == "draft"

    one = cli.invoke(
        app, [*now, "campaigns", "send-test", "t", "--to", "me@shop.example", "--variant", "z"]
    )
    assert one.exit_code == 2
    assert "has no variant 'z' (its variants: a, b)" in one.output


def _clicks(shop: Shop, customer: str, zone: str, weekday: int, hour: int) -> None:
    """Three weeks of human clicks at weekday hour:30 on the customer's wall clock (the
    weeks before T0 cross the end of summer time in Europe and in the US)."""
    from zoneinfo import ZoneInfo

    wall = T0.astimezone(ZoneInfo(zone)).date()
    wall -= timedelta(days=(wall.weekday() - weekday) % 7 or 7)
    for week in range(3):
        day = wall - timedelta(days=7 * week)
        at = datetime(day.year, day.month, day.day, hour, 30, tzinfo=ZoneInfo(zone))
        shop.click(
            {"id": f"{customer}-{week}", "contact_id": shop.ids[customer]}, at.astimezone(UTC)
        )


def test_each_contact_gets_their_best_hour_in_their_own_zone_and_quiet_hours_hold(
    shop: Shop,
) -> None:
    zones = {"ROME": "Europe/Rome", "NY": "America/New_York", "TOKYO": "Asia/Tokyo"}
    for customer, zone in zones.items():
        shop.contact(customer, timezone=zone)
        _clicks(shop, customer, zone, weekday=2, hour=19)  # Wednesdays, 19:30
    shop.contact("LATE", timezone="Europe/Rome")
    _clicks(shop, "LATE", "Europe/Rome", weekday=3, hour=23)  # Thursdays, 23:30: quiet hours
    shop.contact("NEW")  # no history, no zone: the shop's hour on the shop's clock (UTC)
    shop.segment("italy", 'country = "IT"')
    shop.write(
        "weekly",
        "audience: {segments: [italy]}\nmessage: {intent: newsletter}\nschedule: {best_time: 7d}\n",
    )
    shop.schedule("weekly")  # starts now, Monday 2 November 10:00 UTC
    shop.tick()
    due = {shop.customer(m["contact_id"]): as_utc(m["due_at"]) for m in shop.messages("weekly")}
    wednesday = datetime(2026, 11, 4, tzinfo=UTC)
    assert due == {
        "ROME": wednesday + 18 * H,  # 19:00 CET
        "NY": wednesday + 24 * H,  # 19:00 EST, past midnight in UTC
        "TOKYO": wednesday + 10 * H,  # 19:00 JST
        "LATE": wednesday + 46 * H,  # Thursday 23:00 CET
        "NEW": wednesday + 19 * H,  # the shop-wide favourite hour, Wednesday 19h
    }

    def to(at: datetime) -> None:
        shop.clock.advance(at - shop.clock.now())

    def sent() -> set[str]:
        return {shop.customer(m["contact_id"]) for m in shop.messages("weekly", "sent")}

    # the worker delivers what is due, a few minutes after each hour
    for hours, expected in [
        (10, {"TOKYO"}),
        (18, {"TOKYO", "ROME"}),
        (19, {"TOKYO", "ROME", "NEW"}),
        (24, {"TOKYO", "ROME", "NEW", "NY"}),
        (46, {"TOKYO", "ROME", "NEW", "NY"}),
    ]:
        to(wednesday + hours * H + 5 * timedelta(minutes=1))
        shop.deliver()
        assert sent() == expected, hours
    late = next(m for m in shop.messages("weekly") if shop.customer(m["contact_id"]) == "LATE")
    # 23:05 in Rome: held back by the quiet hours, until 09:00
    assert (late["status"], late["reason"]) == ("queued", "quiet_hours")
    assert as_utc(late["due_at"]) == wednesday + 24 * H + 32 * H  # Friday 09:00 CET
    to(wednesday + 56 * H)
    shop.deliver()
    assert "LATE" in sent()
