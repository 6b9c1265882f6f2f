"""The shop's order webhooks: orders sent as they happen, through the same import path as a
CSV file (`importer.import_table`: the same validation, the same line ids, so the same
deduplication, the same `imports` history and rejects files). docs/web.md#webhooks-in.

- `POST /hooks/shopify/orders`: Shopify's order webhooks (`X-Shopify-Topic` one of
  `orders/create`, `orders/updated`, `orders/paid`, `orders/cancelled`, `orders/fulfilled`),
  signed as Shopify documents it: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw
  body keyed with the app's client secret (`shopify_webhook_secret`), compared in constant
  time. The order's JSON becomes the rows of Shopify's orders export (one per line item, the
  columns the `shopify` import format reads), so a webhook and an export of the same order
  give the same facts. 404 while the secret is unset, 401 for a bad signature, 400 for a body
  that is not an order; a signed order always answers 200 (Shopify retries anything else),
  listing the lines it rejected. Test orders (`"test": true`, as Shopify's "Send test
  notification" sends) are acknowledged and not imported.
- `POST /hooks/orders`: the generic signed webhook, `{"orders": [...]}` (or
  `{"customers": [...]}`) whose objects carry the generic format's columns, signed with
  `webhook_secret` in the `Reengage-Signature` scheme of `channels.webhook`. 404 while the
  secret is unset, 401 for a bad signature, 400 naming what is malformed.

Both answer `{"imported": N, "duplicates": N, "rejected": [{"line": i, "reason": "..."}]}`,
`line` the 1-based position of the line item (Shopify) or of the object in the list. A
delivery sent again stores nothing: its lines have the ids already stored. An order whose
status changed (refunded, cancelled) stores its lines again with the new status, and every
reader takes the most recently ingested status of an order (docs/formats.md). Neither the
answers nor the log lines carry an address, a name or a value from the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.channels.webhook import SIGNATURE_HEADER, verify_signature
from reengage.errors import InputError
from reengage.ingest.csvfile import RawTable, Rejected, columns_table
from reengage.ingest.formats import CANONICAL
from reengage.ingest.importer import ImportSummary, import_table
from reengage.web.app import WebContext, web_context
from reengage.web.bodies import read_limited

log = logging.getLogger(__name__)

SHOPIFY_PATH = "/hooks/shopify/orders"
ORDERS_PATH = "/hooks/orders"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
SHOPIFY_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
)
SHOPIFY_SOURCE = "webhook:shopify"
GENERIC_SOURCE = "webhook:generic"
GENERIC_KINDS = ("orders", "customers")
MAX_BODY = 5 * 1024 * 1024  # bytes: an order of a few thousand lines, or a batch of records
MAX_RECORDS = 1000  # objects in one generic webhook
NO_STORE = {"Cache-Control": "no-store"}

# The columns of Shopify's orders export that the `shopify` import format reads (as its
# reader names them: lower case), in the export's order.
SHOPIFY_COLUMNS = [
    "name",
    "email",
    "financial status",
    "accepts marketing",
    "currency",
    "discount code",
    "created at",
    "lineitem quantity",
    "lineitem name",
    "lineitem price",
    "lineitem sku",
    "lineitem discount",
    "cancelled at",
]
# email_marketing_consent.state: what the export's Accepts Marketing says for it
CONSENT_STATES = {
    "subscribed": "yes",
    "not_subscribed": "no",
    "unsubscribed": "no",
    "pending": "no",  # a double opt-in not confirmed yet is no consent
}


# ---- helpers ---------------------------------------------------------------------------


def _error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=NO_STORE)


def _empty(status_code: int) -> Response:
    return Response(status_code=status_code, headers=NO_STORE)


def _json_object(body: bytes, what: str) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{what}: the body is not JSON") from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: the body must be a JSON object")
    return data


def _text(value: object) -> str:
    """A JSON scalar as the text a CSV cell would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def records_table(
    header: Sequence[str],
    records: Sequence[object],
    json_columns: frozenset[str] = frozenset(),
) -> RawTable:
    """JSON objects as the string columns a file with this header would give, `__line` the
    1-based position in records. An item that is not an object, or a value that is an object
    or a list where a column wants one value, is a rejected record (as a CSV row with the
    wrong number of fields is). Keys outside header are ignored, as extra columns are."""
    lines: list[int] = []
    rows: list[list[str]] = []
    rejected: list[Rejected] = []
    for line, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            rejected.append(Rejected(line, "not a JSON object", []))
            continue
        fields: list[str] = []
        problem: str | None = None
        for name in header:
            value = record.get(name)
            if isinstance(value, dict | list):
                if name not in json_columns and problem is None:
                    problem = f"{name}: not a single value"
                fields.append(json.dumps(value, ensure_ascii=False))
            else:
                fields.append(_text(value))
        if problem is None:
            lines.append(line)
            rows.append(fields)
        else:
            rejected.append(Rejected(line, problem, fields))
    return RawTable(list(header), columns_table(list(header), rows, lines), rejected)


def answer(summary: ImportSummary) -> dict[str, Any]:
    return {
        "imported": summary.imported,
        "duplicates": summary.duplicates,
        "rejected": [{"line": line, "reason": reason} for line, reason in summary.reasons],
    }


def _safe(value: str, limit: int = 64) -> str:
    """A header value fit for a log line: printable ASCII, bounded."""
    return "".join(c for c in value if 32 < ord(c) < 127)[:limit] or "-"


# ---- Shopify ---------------------------------------------------------------------------


def shopify_hmac(secret: str | bytes, body: bytes) -> str:
    """What Shopify sends in X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256(secret, raw body)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def valid_shopify_hmac(secret: str | bytes, header: str, body: bytes) -> bool:
    """Whether header is Shopify's HMAC of body, compared in constant time."""
    if not header:
        return False
    expected = shopify_hmac(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def _amounts(values: Sequence[object]) -> object:
    """The sum of amounts written as JSON strings or numbers; the text itself when one of
    them is no number (validation then rejects the line, naming the column)."""
    if len(values) == 1:
        return values[0]
    total = Decimal(0)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return value
        try:
            total += Decimal(str(value))
        except InvalidOperation:
            return value
    return str(total)


def _line_discount(item: Mapping[str, Any]) -> object:
    """The export's Lineitem discount: what the order's discounts allocate to the line."""
    allocations = item.get("discount_allocations")
    if isinstance(allocations, list) and allocations:
        return _amounts([a.get("amount") if isinstance(a, Mapping) else a for a in allocations])
    return item.get("total_discount")


def _accepts_marketing(order: Mapping[str, Any]) -> str:
    """The export's Accepts Marketing: the customer's email marketing consent."""
    customer = order.get("customer")
    if isinstance(customer, Mapping):
        consent = customer.get("email_marketing_consent")
        if isinstance(consent, Mapping) and isinstance(consent.get("state"), str):
            return CONSENT_STATES.get(consent["state"].lower(), "")
        if isinstance(customer.get("accepts_marketing"), bool):
            return _text(customer["accepts_marketing"])
    if isinstance(order.get("buyer_accepts_marketing"), bool):
        return _text(order["buyer_accepts_marketing"])
    return ""


def _email(order: Mapping[str, Any]) -> object:
    for found in (order.get("email"), order.get("contact_email")):
        if found:
            return found
    customer = order.get("customer")
    return customer.get("email") if isinstance(customer, Mapping) else None


def shopify_rows(order: Mapping[str, Any]) -> RawTable:
    """A Shopify order (the JSON of its webhooks and of the Admin REST API) as the rows of
    Shopify's orders export: one per line item, every row carrying the order's columns."""
    items = order.get("line_items")
    if not isinstance(items, list):
        raise InputError("shopify: 'line_items' must be a list")
    codes = order.get("discount_codes")
    code = ", ".join(
        str(c["code"])
        for c in (codes if isinstance(codes, list) else [])
        if isinstance(c, Mapping) and c.get("code")
    )
    common: dict[str, object] = {
        "name": order.get("name"),
        "email": _email(order),
        "financial status": order.get("financial_status"),
        "accepts marketing": _accepts_marketing(order),
        "currency": order.get("currency"),
        "discount code": code,
        "created at": order.get("created_at") or order.get("processed_at"),
        "cancelled at": order.get("cancelled_at"),
    }
    records: list[object] = []
    for item in items:
        if not isinstance(item, Mapping):
            records.append(item)
            continue
        records.append(
            common
            | {
                "lineitem quantity": item.get("quantity"),
                "lineitem name": item.get("name") or item.get("title"),
                "lineitem price": item.get("price"),
                "lineitem sku": item.get("sku"),
                "lineitem discount": _line_discount(item),
            }
        )
    return records_table(SHOPIFY_COLUMNS, records)


def _import_shopify(ctx: WebContext, order: Mapping[str, Any]) -> ImportSummary:
    return import_table(
        ctx.settings,
        ctx.engine,
        "orders",
        shopify_rows(order),
        clock=ctx.clock,
        format="shopify",
        source_name=SHOPIFY_SOURCE,
    )


async def shopify_orders(request: Request) -> Response:
    """Shopify's order webhooks, signed with the app's client secret."""
    ctx = web_context(request)
    secret = ctx.settings.shopify_webhook_secret
    if not secret:
        return _empty(404)
    try:
        body = await read_limited(request, MAX_BODY)
    except ClientDisconnect:
        return _empty(400)
    if body is None:
        return _error(f"the body is longer than {MAX_BODY} bytes", 413)
    if not valid_shopify_hmac(secret, request.headers.get(HMAC_HEADER, ""), body):
        log.warning("refused a Shopify webhook: %s does not match", HMAC_HEADER)
        return _error(f"{HMAC_HEADER} does not match", 401)
    topic = request.headers.get(TOPIC_HEADER, "")
    if topic not in SHOPIFY_TOPICS:
        return _error(f"{TOPIC_HEADER}: not an order topic ({', '.join(SHOPIFY_TOPICS)})", 400)
    delivery = _safe(request.headers.get(WEBHOOK_ID_HEADER, ""))
    try:
        order = _json_object(body, "shopify")
        if order.get("test") is True:
            log.info("Shopify %s webhook %s: a test order, not imported", topic, delivery)
            return JSONResponse(
                {"imported": 0, "duplicates": 0, "rejected": [], "test": True}, headers=NO_STORE
            )
        summary = await run_in_threadpool(_import_shopify, ctx, order)
    except InputError as exc:
        return _error(str(exc), 400)
    log.info(
        "Shopify %s webhook %s: imported %d, duplicates %d, rejected %d",
        topic,
        delivery,
        summary.imported,
        summary.duplicates,
        summary.rejected,
    )
    return JSONResponse(answer(summary), headers=NO_STORE)


# ---- the generic signed webhook --------------------------------------------------------


def generic_records(data: Mapping[str, Any]) -> tuple[str, list[object]]:
    """(kind, its objects) of a generic webhook's body; InputError names what is wrong."""
    present = [k for k in GENERIC_KINDS if k in data]
    if len(present) != 1:
        raise InputError(
            "webhook: the body needs exactly one of " + ", ".join(repr(k) for k in GENERIC_KINDS)
        )
    kind = present[0]
    records = data[kind]
    if not isinstance(records, list):
        raise InputError(f"webhook: {kind!r} must be a list of objects")
    if len(records) > MAX_RECORDS:
        raise InputError(f"webhook: more than {MAX_RECORDS} {kind} in one request")
    return kind, records


def _import_generic(ctx: WebContext, kind: str, records: list[object]) -> ImportSummary:
    fields = CANONICAL[kind]
    raw = records_table(
        [f.name for f in fields], records, frozenset(f.name for f in fields if f.type == "json")
    )
    return import_table(
        ctx.settings, ctx.engine, kind, raw, clock=ctx.clock, source_name=GENERIC_SOURCE
    )


async def generic_orders(request: Request) -> Response:
    """Orders (or customers) in the generic format's columns, signed with webhook_secret."""
    ctx = web_context(request)
    secret = ctx.settings.webhook_secret
    if not secret:
        return _empty(404)
    try:
        body = await read_limited(request, MAX_BODY)
    except ClientDisconnect:
        return _empty(400)
    if body is None:
        return _error(f"the body is longer than {MAX_BODY} bytes", 413)
    if not verify_signature(
        secret, request.headers.get(SIGNATURE_HEADER, ""), body, ctx.clock.now()
    ):
        log.warning("refused an order webhook: %s does not match", SIGNATURE_HEADER)
        return _error(f"{SIGNATURE_HEADER} does not match", 401)
    try:
        kind, records = generic_records(_json_object(body, "webhook"))
        summary = await run_in_threadpool(_import_generic, ctx, kind, records)
    except InputError as exc:
        return _error(str(exc), 400)
    log.info(
        "order webhook (%s): imported %d, duplicates %d, rejected %d",
        kind,
        summary.imported,
        summary.duplicates,
        summary.rejected,
    )
    return JSONResponse(answer(summary), headers=NO_STORE)


def routes() -> list[BaseRoute]:
    return [
        Route(SHOPIFY_PATH, shopify_orders, methods=["POST"]),
        Route(ORDERS_PATH, generic_orders, methods=["POST"]),
    ]
