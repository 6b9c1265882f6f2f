"""The home folder: `init` makes it, every other command opens it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from reengage.config import CONFIG_FILE, Home, Settings, open_home
from reengage.errors import HomeError, StoreError
from reengage.facts import reader
from reengage.facts.kinds import KINDS
from reengage.facts.layout import all_part_files
from reengage.state.db import current_revision, engine_for, head_revision, migrate, redact
from reengage.state.schema import consents, contacts, identities, imports, products

CONFIG_TEMPLATE = """\
# reengage home. Settings here apply to this home; REENGAGE_* environment variables win.
# Every setting is described in docs/configuration.md.

# database_url = "postgresql://reengage@localhost/reengage"   # default: SQLite in this folder
# facts_url = "/srv/reengage/facts"                           # default: ./facts in this folder
# timezone = "Europe/Rome"   # the shop's zone: times written without an offset are read in it
# currency = "EUR"           # when a file does not say
# language = "en"            # messages to contacts whose language is unknown: en, it or fr
# shop_name = "Our shop"
# public_url = "https://reengage.example.com"   # where links in messages point
# mail_from = "Our shop <news@example.com>"
# smtp_url = "smtp://user:pass@smtp.example.com:587?starttls=1"   # default: ./mail maildir

# signs every link that acts on a person (unsubscribe, click): keep it secret and stable
secret_key = "{secret}"
"""


@dataclass(frozen=True)
class InitResult:
    home: Home
    created: bool
    revision: str


def init_home(settings: Settings) -> InitResult:
    """Make the home (or bring an existing one's schema up to date); safe to run again."""
    root = settings.home
    created = not (root / CONFIG_FILE).is_file()
    root.mkdir(parents=True, exist_ok=True)
    settings.facts_path.mkdir(parents=True, exist_ok=True)
    settings.rejects_path.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.state_url)
    try:
        revision = migrate(engine)
    finally:
        engine.dispose()
    if created:
        # written last: a home counts as made only once its state store is ready
        secret = secrets.token_urlsafe(32)
        (root / CONFIG_FILE).write_text(CONFIG_TEMPLATE.format(secret=secret), encoding="utf-8")
        if settings.secret_key is None:  # the settings in force now include it
            settings = settings.model_copy(update={"secret_key": secret})
    return InitResult(Home(settings), created, revision)


def open_state(settings: Settings) -> tuple[Home, Engine]:
    """The home and its state engine, migrated to this version's schema."""
    home = open_home(settings)
    engine = engine_for(settings.state_url)
    try:
        revision = current_revision(engine)
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot reach the state store {redact(settings.state_url)}: {exc.orig}"
        ) from None
    if revision is None:
        engine.dispose()
        raise HomeError(
            f"the state store {redact(settings.state_url)} has no reengage tables: "
            f"run `reengage init` with these settings"
        )
    if revision != head_revision():
        migrate(engine)  # an upgraded reengage brings its store along
    return home, engine


def status(home: Home, engine: Engine) -> dict[str, object]:
    settings = home.settings
    out: dict[str, object] = {
        "home": str(settings.home.resolve()),
        "database": redact(settings.state_url),
        "facts": str(settings.facts_path),
        "schema": current_revision(engine),
    }
    with engine.connect() as conn:
        for name, table in (
            ("contacts", contacts),
            ("identities", identities),
            ("consents", consents),
            ("products", products),
        ):
            out[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
        out["imports"] = conn.execute(select(func.count()).select_from(imports)).scalar_one()
    out.update(reader.counts(settings.facts_path))
    out["facts_files"] = sum(len(all_part_files(settings.facts_path, k)) for k in KINDS.values())
    return out


def import_history(engine: Engine, limit: int = 50) -> list[dict[str, object]]:
    """The latest import runs, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(imports).order_by(imports.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]
