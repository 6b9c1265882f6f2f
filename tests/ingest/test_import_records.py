"""Importing customers, products and events."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import Home
from reengage.facts import reader
from reengage.state.contacts import current_consent
from reengage.state.schema import consents, contacts, products


def invoke(cli: CliRunner, *args: str) -> tuple[int, dict]:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


CUSTOMERS = """customer_id;email;first_name;language;birthday;created_at;email_marketing;sms_marketing;consent_source
C1;Anna@Example.com;Anna;it;1990-04-01;2025-01-10;sì;no;checkout
C2;bob@example.com;Bob;en;;2025-02-11T10:00:00Z;yes;;newsletter_form
C3;not-an-email;Chloé;fr;;;;;
C4;anna@example.com;Imposter;it;;;;;
C5;eve@example.com;Eve;fr;1991-02-30;;;;
"""


def test_customers_with_consents(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS, encoding="utf-8")
    code, summary = invoke(cli, "import", "customers", str(path))
    assert code == 3
    assert summary == summary | {"read": 5, "imported": 2, "duplicates": 0, "rejected": 3}
    reasons = Path(summary["rejects_file"]).read_text(encoding="utf-8")
    assert "4,email: not an email address" in reasons
    assert "5,email: already belongs to another customer" in reasons
    assert "6,birthday: not a date" in reasons
    with engine.connect() as conn:
        anna = conn.execute(select(contacts).where(contacts.c.customer_id == "C1")).one()
        assert anna.email == "anna@example.com"
        assert str(anna.birthday) == "1990-04-01"
        assert current_consent(conn, anna.id, "email", "marketing") is True
        assert current_consent(conn, anna.id, "sms", "marketing") is False
        assert current_consent(conn, anna.id, "push", "marketing") is None
        source = conn.execute(
            select(consents.c.source).where(
                consents.c.contact_id == anna.id, consents.c.channel == "email"
            )
        ).scalar_one()
        assert source == "checkout"


def test_customers_again_updates_changes_and_keeps_consent_history(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS, encoding="utf-8")
    invoke(cli, "import", "customers", str(path))
    _, again = invoke(cli, "import", "customers", str(path))
    assert (again["imported"], again["duplicates"]) == (0, 2)

    path.write_text(
        "customer_id,email,first_name,email_marketing,consent_at\n"
        "C1,anna@example.com,Annalisa,no,2026-05-01T08:00:00Z\n"
        "C2,bob@example.com,Bob,,\n"
    )
    _, changed = invoke(cli, "import", "customers", str(path))
    assert (changed["imported"], changed["duplicates"]) == (1, 1)
    with engine.connect() as conn:
        anna = conn.execute(select(contacts).where(contacts.c.customer_id == "C1")).one()
        assert anna.first_name == "Annalisa"
        assert anna.language == "it"  # an absent column leaves what was known
        assert current_consent(conn, anna.id, "email", "marketing") is False
        history = conn.execute(
            select(consents.c.granted)
            .where(consents.c.contact_id == anna.id, consents.c.channel == "email")
            .order_by(consents.c.recorded_at)
        ).scalars()
        assert list(history) == [True, False]


def test_products_insert_update_and_reject(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    path.write_text(
        "product_id,title,category,brand,price,currency,in_stock\n"
        "P1,Trail shoe,shoes,Alpina,89.90,EUR,yes\n"
        "P2,,shoes,Alpina,19.90,EUR,yes\n"
        "P3,Sock,clothing,Alpina,4.5,EUR,maybe\n"
        "P4,Bottle,sports,Hydra,12,,no\n"
    )
    code, summary = invoke(cli, "import", "products", str(path))
    assert code == 3
    assert (summary["imported"], summary["rejected"]) == (2, 2)
    path.write_text("product_id,title,price\nP1,Trail shoe,79.90\nP4,Bottle,12.00\n")
    _, again = invoke(cli, "import", "products", str(path))
    assert (again["imported"], again["duplicates"]) == (1, 1)
    with engine.connect() as conn:
        rows = {r.product_id: r for r in conn.execute(select(products))}
    assert float(rows["P1"].price) == 79.90
    assert rows["P1"].category == "shoes"
    assert rows["P4"].in_stock is False
    assert rows["P4"].currency == "EUR"  # the shop's currency when the file gives none


def test_events_with_vocabulary_and_identity_rules(
    cli: CliRunner, home: Home, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,customer_id,anonymous_id,type,occurred_at,product_id,session_id,source,"
        "device,duration_s,properties\n"
        'e1,C1,,product_view,2026-03-01T10:00:00Z,P1,s1,social,Mobile,12.5,"{""ref"": ""ig""}"\n'
        "e2,,a-77,add_to_cart,2026-03-01T10:01:00Z,P1,s1,,,,\n"
        "e3,,,page_view,2026-03-01T10:02:00Z,,s1,,,,\n"
        "e4,C1,,teleport,2026-03-01T10:03:00Z,,s1,,,,\n"
        'e5,C1,,search,2026-03-01T10:04:00Z,,s1,,,,"[1, 2]"\n'
        ",C2,,spec_view,2026-03-02T10:00:00Z,P1,s2,,,,\n"
        ",C2,,spec_view,2026-03-02T10:00:00Z,P1,s2,,,,\n"
    )
    code, summary = invoke(cli, "import", "events", str(path))
    assert code == 3
    assert summary == summary | {"imported": 3, "duplicates": 1, "rejected": 3}
    reasons = Path(summary["rejects_file"]).read_text()
    assert "4,customer_id or anonymous_id: one of them is required" in reasons
    assert "5,type: unknown event type" in reasons
    assert "6,properties: not a JSON object" in reasons
    assert summary["created_contacts"] == 2
    con = reader.connect(home.settings.facts_path)
    rows = con.sql(
        "SELECT event_id, device, properties FROM events ORDER BY occurred_at"
    ).fetchall()
    con.close()
    assert rows[0] == ("e1", "mobile", '{"ref": "ig"}')
    assert rows[2][0].startswith("h-")  # derived from the row when the source gives no id
    _, again = invoke(cli, "import", "events", str(path))
    assert again["imported"] == 0


def test_a_quoted_line_break_keeps_line_numbers_right(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    path.write_text(
        "product_id,title,price,description\n"
        'P1,Shoe,10,"Light.\nWaterproof."\n'
        "P2,Sock,abc,plain\n"
        "\n"
        "P3,Hat,5\n"
        "P4,Cap,6,ok\n"
    )
    code, summary = invoke(cli, "import", "products", str(path))
    assert code == 3
    lines = Path(summary["rejects_file"]).read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["4", "6"]
    with engine.connect() as conn:
        described = conn.execute(
            select(products.c.description).where(products.c.product_id == "P1")
        ).scalar_one()
    assert described == "Light.\nWaterproof."
