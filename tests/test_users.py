"""Dashboard users: only an argon2id hash of the password is kept, the password comes from a
prompt or stdin (never an argument), and a disabled user cannot log in."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage import users as users_module
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.errors import InputError
from reengage.state.schema import users
from reengage.users import authenticate, create_user, disable_user, get_user, list_users

PASSWORD = "correct horse battery staple"


def stored(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(users))]


def test_only_an_argon2id_hash_is_stored(home: Home, engine: Engine, clock: FixedClock) -> None:
    user = create_user(engine, " Ada@Example.COM ", PASSWORD, clock.now())
    assert user.email == "ada@example.com"
    [row] = stored(engine)
    assert str(row["password_hash"]).startswith("$argon2id$")
    assert all(PASSWORD not in str(value) for value in row.values())
    assert PasswordHasher().verify(str(row["password_hash"]), PASSWORD)


def test_authenticate(home: Home, engine: Engine, clock: FixedClock) -> None:
    create_user(engine, "ada@example.com", PASSWORD, clock.now())
    assert authenticate(engine, "ada@example.com", "wrong password!!", clock.now()) is None
    assert authenticate(engine, "nobody@example.com", PASSWORD, clock.now()) is None
    assert authenticate(engine, "not an address", PASSWORD, clock.now()) is None
    clock.advance(timedelta(hours=1))
    found = authenticate(engine, "ADA@example.com", PASSWORD, clock.now())
    assert found is not None and found.email == "ada@example.com"
    assert found.last_login_at == clock.now()
    [listed] = list_users(engine)
    assert listed.last_login_at == clock.now()
    assert get_user(engine, found.id) is not None

    disable_user(engine, "ada@example.com", clock.now())
    assert authenticate(engine, "ada@example.com", PASSWORD, clock.now()) is None
    assert get_user(engine, found.id) is None


def test_bad_input_is_refused(home: Home, engine: Engine, clock: FixedClock) -> None:
    with pytest.raises(InputError, match="at least"):
        create_user(engine, "ada@example.com", "short", clock.now())
    with pytest.raises(InputError, match="not an email"):
        create_user(engine, "ada", PASSWORD, clock.now())
    create_user(engine, "ada@example.com", PASSWORD, clock.now())
    with pytest.raises(InputError, match="already"):
        create_user(engine, "ADA@example.com", PASSWORD, clock.now())
    with pytest.raises(InputError, match="no user"):
        disable_user(engine, "bob@example.com", clock.now())


def test_a_weaker_hash_is_replaced_at_login(
    home: Home, engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    monkeypatch.setattr(users_module, "_hasher", weak)
    create_user(engine, "ada@example.com", PASSWORD, clock.now())
    [before] = stored(engine)
    monkeypatch.undo()
    assert authenticate(engine, "ada@example.com", PASSWORD, clock.now()) is not None
    [after] = stored(engine)
    assert after["password_hash"] != before["password_hash"]
    assert not PasswordHasher().check_needs_rehash(str(after["password_hash"]))
    assert authenticate(engine, "ada@example.com", PASSWORD, clock.now()) is not None


def test_the_cli_reads_the_password_from_stdin(
    cli: CliRunner, home: Home, engine: Engine, env: dict[str, str], clock: FixedClock
) -> None:
    made = cli.invoke(app, ["users", "create", "ada@example.com", "--json"], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["email"] == "ada@example.com"
    assert PASSWORD not in made.output
    piped = cli.invoke(
        app, ["users", "create", "bob@example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert piped.exit_code == 0, piped.output
    assert "bob@example.com" in piped.stdout
    assert authenticate(engine, "bob@example.com", PASSWORD, clock.now()) is not None

    again = cli.invoke(app, ["users", "create", "ada@example.com"], input=PASSWORD + "\n")
    assert again.exit_code == 2 and "already" in again.output
    short = cli.invoke(app, ["users", "create", "eve@example.com"], input="short\n")
    assert short.exit_code == 2 and "at least" in short.output
    empty = cli.invoke(app, ["users", "create", "eve@example.com"], input="")
    assert empty.exit_code == 2 and "no password" in empty.output
    # there is no way to give the password as an argument
    argument = cli.invoke(app, ["users", "create", "eve@example.com", PASSWORD])
    assert argument.exit_code != 0

    listed = cli.invoke(app, ["users", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [u["email"] for u in json.loads(listed.stdout)] == ["ada@example.com", "bob@example.com"]
    assert "argon2" not in listed.stdout

    off = cli.invoke(app, ["users", "disable", "bob@example.com"])
    assert off.exit_code == 0, off.output
    table = cli.invoke(app, ["users", "list"])
    assert table.exit_code == 0 and "bob@example.com" in table.stdout
    [bob] = [u for u in list_users(engine) if u.email == "bob@example.com"]
    assert bob.disabled_at is not None
    assert sorted(str(r["email"]) for r in stored(engine)) == ["ada@example.com", "bob@example.com"]
