"""The dashboard's users: an email and an argon2id hash of their password (never the password).

`reengage users create EMAIL` makes one; the dashboard's login calls `authenticate`, which
rehashes a password whose hash was made with weaker parameters than today's.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from reengage.clock import as_utc
from reengage.errors import InputError
from reengage.state.schema import users

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte of "password" is a mistake
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# a hash to check a wrong email against, so an unknown address costs as long as a known one
_DUMMY = _hasher.hash("not anybody's password")


@dataclass(frozen=True)
class User:
    id: int
    email: str
    created_at: datetime
    last_login_at: datetime | None
    disabled_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "created_at": self.created_at.isoformat(),
            "last_login_at": None if self.last_login_at is None else self.last_login_at.isoformat(),
            "disabled_at": None if self.disabled_at is None else self.disabled_at.isoformat(),
        }


def normalise_email(email: str) -> str:
    found = email.strip().lower()
    if not _EMAIL.fullmatch(found) or len(found) > 320:
        raise InputError(f"{email!r} is not an email address")
    return found


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"the password must have at most {MAX_PASSWORD} characters")


def _user(row: Any) -> User:
    return User(
        id=int(row.id),
        email=row.email,
        created_at=as_utc(row.created_at),
        last_login_at=None if row.last_login_at is None else as_utc(row.last_login_at),
        disabled_at=None if row.disabled_at is None else as_utc(row.disabled_at),
    )


def create_user(engine: Engine, email: str, password: str, now: datetime) -> User:
    """A new user; InputError when the address is taken or the password too short."""
    address = normalise_email(email)
    check_password(password)
    hashed = _hasher.hash(password)
    try:
        with engine.begin() as conn:
            key = conn.execute(
                users.insert().values(email=address, password_hash=hashed, created_at=now)
            ).inserted_primary_key
    except IntegrityError:
        raise InputError(f"there already is a user {address}") from None
    assert key is not None
    return User(int(key[0]), address, now, None, None)


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.email)).all()
    return [_user(r) for r in rows]


def get_user(engine: Engine, user_id: int) -> User | None:
    """The user with this id, None when there is none or they are disabled."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None or row.disabled_at is not None:
        return None
    return _user(row)


def disable_user(engine: Engine, email: str, now: datetime) -> User:
    """Disable a user: they can no longer log in, and their open sessions end."""
    address = normalise_email(email)
    with engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.email == address)).first()
        if row is None:
            raise InputError(f"no user {address}")
        if row.disabled_at is None:
            conn.execute(update(users).where(users.c.id == row.id).values(disabled_at=now))
        row = conn.execute(select(users).where(users.c.id == row.id)).one()
    return _user(row)


def authenticate(engine: Engine, email: str, password: str, now: datetime) -> User | None:
    """The user when the password is theirs (and they are not disabled); None otherwise.

    A successful login records its time and, when the stored hash was made with older
    parameters, replaces it."""
    try:
        address = normalise_email(email)
    except InputError:
        address = ""
    with engine.connect() as conn:
        row = (
            conn.execute(select(users).where(users.c.email == address)).first() if address else None
        )
    if row is None or len(password) > MAX_PASSWORD:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY, password[:MAX_PASSWORD])
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row.disabled_at is not None:
        return None
    values: dict[str, Any] = {"last_login_at": now}
    if _hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = _hasher.hash(password)
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
    return User(int(row.id), row.email, as_utc(row.created_at), now, None)
