"""SMS through Twilio: segments, the request Twilio's Messages API documents, its answers, and
the STOP / START replies coming back through the signed inbound webhook.

No Twilio here: a local HTTP server stands in for api.twilio.com, checks each request against
the documented format and answers with Twilio's documented bodies."""

from __future__ import annotations

import base64
import math
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from local_peer import Reply, Request, local_peer
from sqlalchemy import Engine, select

from reengage.channels.delivery import Outgoing, PermanentFailure, TemporaryFailure
from reengage.channels.sms import TwilioSMS, e164, status_callback_url
from reengage.channels.sms_replies import (
    EMPTY_TWIML,
    InvalidSignature,
    compute_signature,
    handle_inbound,
    parse_status_callback,
    valid_signature,
)
from reengage.channels.sms_text import (
    _GSM_BASIC,
    _GSM_EXTENSION,
    GSM7,
    OPT_OUT_LINES,
    UCS2,
    segments,
    split,
    units,
    with_opt_out,
)
from reengage.clock import FixedClock
from reengage.config import Settings
from reengage.errors import ConfigError
from reengage.state.schema import consents, contacts, suppressions

SID = "AC" + "a" * 32
TOKEN = "t" * 32
GSM_BASIC = st.sampled_from(_GSM_BASIC)
GSM_ANY = st.sampled_from(_GSM_BASIC + _GSM_EXTENSION)


# -- segments ---------------------------------------------------------------------------


@given(st.text(GSM_BASIC, max_size=800))
def test_plain_gsm_text_is_160_then_153_per_segment(text: str) -> None:
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    assert segments(text) == (GSM7, expected)


@given(st.text(GSM_ANY, max_size=600))
def test_gsm_parts_rebuild_the_text_and_fit_their_segments(text: str) -> None:
    enc, parts = split(text)
    assert enc == GSM7
    assert "".join(parts) == text
    limit = 160 if len(parts) == 1 else 153
    assert all(units(part) <= limit for part in parts)
    # extension characters count double, and an escape pair is never cut in two
    assert units(text) == len(text) + sum(ch in _GSM_EXTENSION for ch in text)
    if units(text) <= 160:
        assert len(parts) == 1
    else:
        assert len(parts) >= math.ceil(units(text) / 153)


# lone surrogates are not text a message can hold (no encoding has them): left out
@given(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
    st.characters(exclude_characters=_GSM_BASIC + _GSM_EXTENSION, exclude_categories=("Cs",)),
)
def test_one_character_outside_gsm_makes_the_text_ucs2(text: str, other: str) -> None:
    message = text + other
    enc, parts = split(message)
    assert enc == UCS2
    assert "".join(parts) == message
    utf16 = len(message.encode("utf-16-le")) // 2
    assert units(message) == utf16
    limit = 70 if len(parts) == 1 else 67
    assert all(len(p.encode("utf-16-le")) // 2 <= limit for p in parts)
    if utf16 <= 70:
        assert len(parts) == 1


@given(st.text(max_size=300), st.text(max_size=5))
def test_a_longer_text_never_takes_fewer_segments(text: str, more: str) -> None:
    assert segments(text + more)[1] >= segments(text)[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (GSM7, 1)),
        ("a" * 160, (GSM7, 1)),
        ("a" * 161, (GSM7, 2)),
        ("a" * 306, (GSM7, 2)),
        ("a" * 307, (GSM7, 3)),
        ("€" * 80, (GSM7, 1)),  # 160 septets
        ("€" * 81, (GSM7, 2)),  # 76 fit in 153 septets (one left over), then 5
        ("a" * 152 + "€" + "a" * 10, (GSM7, 2)),  # the € does not straddle segments
        ("é à ü Ñ Ç ß", (GSM7, 1)),
        ("ł" * 70, (UCS2, 1)),
        ("ł" * 71, (UCS2, 2)),
        ("😀" * 35, (UCS2, 1)),  # 70 UTF-16 units
        ("😀" * 36, (UCS2, 2)),
        ("ç", (UCS2, 1)),  # only the capital Ç is in the GSM alphabet
    ],
)
def test_segment_examples(text: str, expected: tuple[str, int]) -> None:
    assert segments(text) == expected


def test_the_opt_out_line_counts_and_is_added_once() -> None:
    text = "a" * 150
    assert segments(text) == (GSM7, 1)
    longer = with_opt_out(text, "en")
    assert longer.endswith("\nReply STOP to opt out")
    assert segments(longer) == (GSM7, 2)
    assert with_opt_out(longer, "en") == longer
    assert with_opt_out("Ciao", "it") == "Ciao\nRispondi STOP per disiscriverti"
    assert with_opt_out("Salut", "fr") == "Salut\nRépondez STOP pour vous désabonner"
    assert with_opt_out("Hallo", "de").endswith(OPT_OUT_LINES["en"])
    for line in OPT_OUT_LINES.values():  # every shipped line stays GSM-7
        assert segments(line)[0] == GSM7


def test_numbers_become_e164_in_the_contacts_country() -> None:
    assert e164("333 123 4567", "IT") == "+393331234567"
    assert e164("07911 123456", "gb") == "+447911123456"
    assert e164("+33 6 12 34 56 78") == "+33612345678"
    assert e164("0033612345678", "FR") == "+33612345678"
    assert e164("12", "IT") is None
    assert e164("not a number", "IT") is None


# -- sending ----------------------------------------------------------------------------


def twilio_created(request: Request) -> Reply:
    form = request.form()
    return Reply(
        201,
        {
            "account_sid": SID,
            "api_version": "2010-04-01",
            "body": form["Body"][0],
            "direction": "outbound-api",
            "error_code": None,
            "from": form.get("From", [None])[0],
            "num_segments": "1",
            "sid": "SM" + "0" * 32,
            "status": "queued",
            "to": form["To"][0],
        },
    )


def sms(peer_url: str, sender: str = "+15005550006") -> TwilioSMS:
    return TwilioSMS(
        account_sid=SID,
        auth_token=TOKEN,
        sender=sender,
        api_url=peer_url,
        status_base_url="https://shop.example.com",
        client=httpx.Client(trust_env=False),
    )


def outgoing(to: str = "333 123 4567", **data: Any) -> Outgoing:
    return Outgoing(
        message_id=42,
        channel="sms",
        to=to,
        text="Your cart is waiting",
        data={"country": "IT", "language": "it", **data},
    )


def test_a_message_is_the_documented_messages_request() -> None:
    with local_peer(twilio_created) as peer:
        channel = sms(peer.url)
        receipt = channel.send(outgoing())
        channel.close()
    assert receipt.provider_id == "SM" + "0" * 32
    request = peer.last
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{SID}:{TOKEN}".encode()
    ).decode("ascii")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = request.form()
    assert form == {
        "To": ["+393331234567"],
        "From": ["+15005550006"],
        "Body": ["Your cart is waiting\nRispondi STOP per disiscriverti"],
        "StatusCallback": ["https://shop.example.com/sms/status?message_id=42"],
    }


def test_a_messaging_service_sends_without_from_and_transactional_texts_have_no_stop_line() -> None:
    with local_peer(twilio_created) as peer:
        sms(peer.url, sender="MG" + "b" * 32).send(outgoing(purpose="transactional"))
    form = peer.last.form()
    assert "From" not in form
    assert form["MessagingServiceSid"] == ["MG" + "b" * 32]
    assert form["Body"] == ["Your cart is waiting"]


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


@pytest.mark.parametrize(
    ("reply", "kind", "suppress"),
    [
        (twilio_error(400, 21211, "The 'To' number +393331234567 is not valid."), "perm", False),
        (twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), "perm", True),
        (twilio_error(400, 21614, "'To' number +393331234567 is not a mobile"), "perm", True),
        (twilio_error(400, 21408, "Permission to send an SMS has not been enabled"), "perm", False),
        (twilio_error(429, 20429, "Too Many Requests"), "temp", None),
        (twilio_error(503, 20503, "Service Unavailable"), "temp", None),
        (Reply(500, "<html>oops</html>"), "temp", None),
        (twilio_error(401, 20003, "Authenticate"), "temp", None),
    ],
)
def test_twilio_answers_become_the_documented_failures(
    reply: Reply, kind: str, suppress: bool | None
) -> None:
    with (
        local_peer(lambda _r: reply) as peer,
        pytest.raises(PermanentFailure if kind == "perm" else TemporaryFailure) as raised,
    ):
        sms(peer.url).send(outgoing())
    if kind == "perm":
        assert isinstance(raised.value, PermanentFailure)
        assert raised.value.suppress is suppress
    assert "333" not in str(raised.value)  # no phone number in the error


def test_a_number_that_is_not_one_fails_without_a_request() -> None:
    with local_peer(twilio_created) as peer, pytest.raises(PermanentFailure) as raised:
        sms(peer.url).send(outgoing(to="12345"))
    assert peer.requests == []
    assert "12345" not in str(raised.value)


def test_twilio_out_of_reach_is_temporary() -> None:
    with local_peer(twilio_created) as peer:
        url = peer.url
    with pytest.raises(TemporaryFailure):
        sms(url).send(outgoing())


def test_from_settings_names_what_is_missing(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="sms_account_sid"):
        TwilioSMS.from_settings(settings)
    ready = settings.model_copy(
        update={"sms_account_sid": SID, "sms_auth_token": TOKEN, "sms_from": "+15005550006"}
    )
    channel = TwilioSMS.from_settings(ready)
    assert channel.url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
    channel.close()


# -- signatures and replies -------------------------------------------------------------


def test_signature_matches_twilios_documented_example() -> None:
    """The example of Twilio's webhook-security page: auth token 12345, this URL and these
    parameters sign to 0/KCTR6DLpKmkAf8muzZqo1nDgQ=."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert valid_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    # Twilio's validators accept the URL with or without the scheme's default port
    assert valid_signature(
        "12345",
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        params,
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
    )
    assert not valid_signature(
        "12345", url, {**params, "Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
    assert not valid_signature("12346", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not valid_signature("12345", url, params, "")
    assert not valid_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=é")


INBOUND_URL = "https://shop.example.com/sms/inbound"


def inbound(body: str, sender: str = "+393331234567") -> dict[str, str]:
    return {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": SID,
        "From": sender,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def add_contact(engine: Engine, clock: FixedClock, phone: str, country: str) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id=f"C-{phone}",
                phone=phone,
                country=country,
                created_at=clock.now(),
                updated_at=clock.now(),
                origin="customers",
                attributes={},
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def sms_consent(engine: Engine, contact_id: int) -> list[bool]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(consents.c.granted)
                .where(consents.c.contact_id == contact_id, consents.c.channel == "sms")
                .order_by(consents.c.recorded_at)
            ).scalars()
        )


def stop_rows(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    suppressions.c.channel,
                    suppressions.c.address,
                    suppressions.c.reason,
                    suppressions.c.contact_id,
                )
            )
        ]


def test_stop_then_start(settings: Settings, engine: Engine, clock: FixedClock) -> None:
    ready = settings.model_copy(update={"sms_auth_token": TOKEN})
    me = add_contact(engine, clock, "333 123 4567", "IT")  # stored as the shop typed it
    stranger = add_contact(engine, clock, "+44 7700 900123", "GB")
    form = inbound(" Stop ")
    signature = compute_signature(TOKEN, INBOUND_URL, form)
    with engine.begin() as conn:
        answer = handle_inbound(conn, form, INBOUND_URL, signature, ready, clock)
    assert answer == EMPTY_TWIML
    assert sms_consent(engine, me) == [False]
    assert sms_consent(engine, stranger) == []
    assert stop_rows(engine) == [("sms", "+393331234567", "stop", me)]

    clock.advance(timedelta(days=3))
    form = inbound("START")
    with engine.begin() as conn:
        handle_inbound(
            conn, form, INBOUND_URL, compute_signature(TOKEN, INBOUND_URL, form), ready, clock
        )
    assert sms_consent(engine, me) == [False, True]
    assert stop_rows(engine) == []


def test_start_without_a_stop_changes_nothing(
    settings: Settings, engine: Engine, clock: FixedClock
) -> None:
    """A YES answering some other question must not become marketing consent: START, YES
    and UNSTOP only undo a STOP."""
    ready = settings.model_copy(update={"sms_auth_token": TOKEN})
    me = add_contact(engine, clock, "+393331234567", "IT")
    form = inbound("yes")
    with engine.begin() as conn:
        handle_inbound(
            conn, form, INBOUND_URL, compute_signature(TOKEN, INBOUND_URL, form), ready, clock
        )
    assert sms_consent(engine, me) == []


def test_arret_and_unknown_numbers_still_suppress(
    settings: Settings, engine: Engine, clock: FixedClock
) -> None:
    ready = settings.model_copy(update={"sms_auth_token": TOKEN})
    form = inbound("Arrêt", sender="+33612345678")
    with engine.begin() as conn:
        handle_inbound(
            conn, form, INBOUND_URL, compute_signature(TOKEN, INBOUND_URL, form), ready, clock
        )
    assert stop_rows(engine) == [("sms", "+33612345678", "stop", None)]


def test_other_replies_and_forged_requests_change_nothing(
    settings: Settings, engine: Engine, clock: FixedClock
) -> None:
    ready = settings.model_copy(update={"sms_auth_token": TOKEN})
    me = add_contact(engine, clock, "+393331234567", "IT")
    chatty = inbound("stop sending me these please")
    with engine.begin() as conn:
        handle_inbound(
            conn, chatty, INBOUND_URL, compute_signature(TOKEN, INBOUND_URL, chatty), ready, clock
        )
    forged = inbound("STOP")
    with engine.begin() as conn, pytest.raises(InvalidSignature):
        handle_inbound(
            conn,
            forged,
            INBOUND_URL,
            compute_signature("x" * 32, INBOUND_URL, forged),
            ready,
            clock,
        )
    assert sms_consent(engine, me) == []
    assert stop_rows(engine) == []
    with engine.begin() as conn, pytest.raises(ConfigError):
        handle_inbound(conn, forged, INBOUND_URL, "sig", settings, clock)


def test_status_callbacks_name_their_outbox_row() -> None:
    url = status_callback_url("https://shop.example.com/", 42)
    form = {
        "MessageSid": "SM" + "0" * 32,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": SID,
    }
    update = parse_status_callback(TOKEN, url, form, compute_signature(TOKEN, url, form))
    assert (update.message_id, update.provider_id, update.status, update.error_code) == (
        42,
        "SM" + "0" * 32,
        "undelivered",
        30003,
    )
    with pytest.raises(InvalidSignature):
        parse_status_callback(TOKEN, url, form, "forged")
