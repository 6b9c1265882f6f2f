"""`reengage keys`: a key is printed once, stored hashed, listed without it, revoked."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.keys import authenticate, hash_key
from reengage.state.schema import api_keys


def test_create_list_revoke(cli: CliRunner, home: Home, engine: Engine, clock: FixedClock) -> None:
    made = cli.invoke(app, ["keys", "create", "--scope", "write", "--note", "shop", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["scope"] == "write" and key["key"].startswith(f"rk_{key['prefix']}_")
    with engine.connect() as conn:
        [row] = conn.execute(select(api_keys)).all()
    assert row.key_hash == hash_key(key["key"]) and key["key"] not in str(tuple(row))
    holder = authenticate(engine, clock, key["key"])
    assert holder is not None and holder.allows("read") and not holder.allows("admin")
    assert authenticate(engine, clock, key["key"] + "x") is None

    listed = cli.invoke(app, ["keys", "list", "--json"])
    [entry] = json.loads(listed.stdout)
    assert entry["prefix"] == key["prefix"] and entry["note"] == "shop"
    assert entry["last_used_at"] is not None  # authenticate above used it
    assert key["key"] not in listed.stdout and row.key_hash not in listed.stdout

    revoked = cli.invoke(app, ["keys", "revoke", key["prefix"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert authenticate(engine, clock, key["key"]) is None
    assert "already" in cli.invoke(app, ["keys", "revoke", key["prefix"]]).stdout
    unknown = cli.invoke(app, ["keys", "revoke", "ffffffff"])
    assert unknown.exit_code == 2


def test_a_bad_scope_is_refused(cli: CliRunner, home: Home) -> None:
    result = cli.invoke(app, ["keys", "create", "--scope", "root"])
    assert result.exit_code == 2


def test_plain_output_shows_the_key_once(cli: CliRunner, home: Home) -> None:
    result = cli.invoke(app, ["keys", "create", "--scope", "admin"])
    assert result.exit_code == 0 and result.stdout.startswith("rk_")
    assert "not shown again" in result.stdout
