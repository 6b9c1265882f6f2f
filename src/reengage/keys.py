"""API keys: made once, kept as a hash, sent as `Authorization: Bearer KEY`.

A key reads `rk_<prefix>_<secret>`: the prefix (8 hex digits) names the key in listings, in
`reengage keys revoke` and in the erasure log; the secret is 32 random bytes. Only the
SHA-256 of the whole key is stored: a fast hash is right for a key of this much entropy (a
password would need a slow one), and the stored hash is compared in constant time.

Scopes are ordered: `read` < `write` < `admin`; a key may do what its scope and every lower
scope allow. `last_used_at` is written at most once a minute per key, so a busy client does
not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from reengage.clock import Clock, as_utc
from reengage.errors import InputError
from reengage.state.schema import API_SCOPES, api_keys

KEY_PREFIX = "rk_"
TOUCH_EVERY = timedelta(minutes=1)
NOTE_LENGTH = 200
_HEX8 = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, never stored
    prefix: str
    scope: str


@dataclass(frozen=True)
class KeyHolder:
    """Who a request's key says it is."""

    id: int
    prefix: str
    scope: str

    def allows(self, needed: str) -> bool:
        return scope_rank(self.scope) >= scope_rank(needed)


def scope_rank(scope: str) -> int:
    return API_SCOPES.index(scope)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_scope(scope: str) -> None:
    if scope not in API_SCOPES:
        raise InputError(f"--scope {scope!r}: use one of {', '.join(API_SCOPES)}")


def create_key(engine: Engine, clock: Clock, scope: str, note: str | None = None) -> NewKey:
    """Make a key of this scope and store its hash; the key itself is in the answer only."""
    _check_scope(scope)
    if note is not None and len(note) > NOTE_LENGTH:
        raise InputError(f"--note: at most {NOTE_LENGTH} characters")
    with engine.begin() as conn:
        while True:
            prefix = secrets.token_hex(4)
            taken = conn.execute(select(api_keys.c.id).where(api_keys.c.prefix == prefix)).first()
            if taken is None:
                break
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        conn.execute(
            api_keys.insert().values(
                prefix=prefix,
                key_hash=hash_key(key),
                scope=scope,
                note=note,
                created_at=clock.now(),
            )
        )
    return NewKey(key=key, prefix=prefix, scope=scope)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Every key, oldest first, without the key or its hash."""
    k = api_keys
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                k.c.prefix, k.c.scope, k.c.note, k.c.created_at, k.c.last_used_at, k.c.revoked_at
            ).order_by(k.c.id)
        ).all()
    return [
        {
            "prefix": r.prefix,
            "scope": r.scope,
            "note": r.note,
            "created_at": _iso(r.created_at),
            "last_used_at": _iso(r.last_used_at),
            "revoked_at": _iso(r.revoked_at),
        }
        for r in rows
    ]


def revoke_key(engine: Engine, clock: Clock, prefix: str) -> bool:
    """Revoke the key with this prefix (a whole key is accepted too); False when it was
    revoked already. An unknown prefix is an InputError."""
    if prefix.startswith(KEY_PREFIX):
        prefix = prefix.removeprefix(KEY_PREFIX).split("_", 1)[0]
    with engine.begin() as conn:
        row = conn.execute(
            select(api_keys.c.id, api_keys.c.revoked_at).where(api_keys.c.prefix == prefix)
        ).first()
        if row is None:
            raise InputError(f"no API key with prefix {prefix!r} (see `reengage keys list`)")
        if row.revoked_at is not None:
            return False
        conn.execute(
            api_keys.update().where(api_keys.c.id == row.id).values(revoked_at=clock.now())
        )
    return True


def _prefix_of(key: str) -> str | None:
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key.removeprefix(KEY_PREFIX).partition("_")
    if not sep or not secret or not _HEX8.fullmatch(prefix):
        return None
    return prefix


def authenticate(engine: Engine, clock: Clock, key: str) -> KeyHolder | None:
    """The holder of a key that is known and not revoked; None for any other text."""
    prefix = _prefix_of(key)
    if prefix is None:
        return None
    k = api_keys
    with engine.connect() as conn:
        row = conn.execute(
            select(k.c.id, k.c.key_hash, k.c.scope, k.c.revoked_at, k.c.last_used_at).where(
                k.c.prefix == prefix
            )
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    if row.revoked_at is not None:
        return None
    now = clock.now()
    if row.last_used_at is None or as_utc(row.last_used_at) <= now - TOUCH_EVERY:
        with engine.begin() as conn:
            conn.execute(k.update().where(k.c.id == row.id).values(last_used_at=now))
    return KeyHolder(id=int(row.id), prefix=prefix, scope=str(row.scope))
