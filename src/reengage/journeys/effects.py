"""The effects of `update` and `webhook` steps on the world outside the enrollment.

- `update` sets custom attributes on the contact (`contacts.attributes`) and, with
  `suppress: sunset`, suppresses each of the contact's addresses (email, phone) with that
  reason: nothing more is sent to them, on any channel, by anything.
- `webhook` POSTs a signed event to the settings' `webhook_url` (the same signature as the
  webhook channel, docs/webhooks.md) with a stable `Webhook-Id` (`j-<enrollment>-<step>`):
  it is the one effect that cannot share the batch's transaction, so a receiver may see a
  repeat after a crash, and can recognise it by that id.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx
from sqlalchemy import Connection, func, select, update

from reengage.channels.webhook import signature_header
from reengage.config import Settings
from reengage.journeys.steps import Update, Webhook
from reengage.state.schema import contacts, enrollment_steps
from reengage.suppressions import suppress

WEBHOOK_TRY = "webhook_try"  # the step log's kind for a failed call, to be tried again


def update_contact(
    conn: Connection, contact_id: int, journey: str, step: Update, at: datetime
) -> str:
    """Apply an update step to a contact; what it did, for the step log."""
    done = []
    if step.attributes:
        row = conn.execute(select(contacts.c.attributes).where(contacts.c.id == contact_id)).first()
        attributes = dict(row.attributes or {}) if row is not None else {}
        attributes.update(dict(step.attributes))
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id)
            .values(attributes=attributes, updated_at=at)
        )
        done.append("set " + ", ".join(name for name, _ in step.attributes))
    if step.suppress is not None:
        row = conn.execute(
            select(contacts.c.email, contacts.c.phone).where(contacts.c.id == contact_id)
        ).first()
        addresses = (("email", row.email), ("sms", row.phone)) if row is not None else ()
        count = 0
        for channel, address in addresses:
            if address:
                count += suppress(
                    conn,
                    channel,
                    address,
                    step.suppress,
                    source=f"journey {journey}",
                    at=at,
                    contact_id=contact_id,
                )
        done.append(f"suppressed {count} address(es): {step.suppress}")
    return "; ".join(done)


def call_webhook(
    settings: Settings,
    http: httpx.Client | None,
    enrollment_id: int,
    journey: str,
    contact_id: int,
    step: Webhook,
    now: datetime,
) -> tuple[str, str | None]:
    """Call the webhook: (what happened, None) when done or skipped, ("", why) when it
    failed and is worth trying again."""
    if not settings.webhook_url or not settings.webhook_secret:
        return "skipped: no webhook_url and webhook_secret in the settings", None
    event_id = f"j-{enrollment_id}-{step.id}"
    created = int(now.timestamp())
    body = json.dumps(
        {
            "id": event_id,
            "type": "journey.step",
            "created": created,
            "endpoint": step.endpoint,
            "journey": journey,
            "step": step.id,
            "contact_id": contact_id,
            "enrollment_id": enrollment_id,
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Webhook-Id": event_id,
        "Webhook-Signature": signature_header(str(settings.webhook_secret), created, body),
    }
    client = http or httpx.Client(timeout=15.0)
    try:
        answer = client.post(str(settings.webhook_url), content=body, headers=headers)
    except httpx.HTTPError as exc:
        return "", type(exc).__name__
    finally:
        if http is None:
            client.close()
    if answer.status_code >= 300:
        return "", f"HTTP {answer.status_code}"
    return f"called: HTTP {answer.status_code}", None


def past_attempts(conn: Connection, enrollment_id: int, step_id: str) -> int:
    """How many times this webhook step failed before."""
    return int(
        conn.execute(
            select(func.count()).where(
                enrollment_steps.c.enrollment_id == enrollment_id,
                enrollment_steps.c.step == step_id,
                enrollment_steps.c.kind == WEBHOOK_TRY,
            )
        ).scalar_one()
    )
