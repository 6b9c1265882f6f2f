"""The `smtp_url` setting: where the SMTP server is and how to talk to it.

    smtp://host                          plain, port 25 (a relay on the local network)
    smtp://user:pass@host:587?starttls=1 submission with STARTTLS and AUTH
    smtps://user:pass@host:465           TLS from the first byte ("implicit TLS")

Options: `starttls=1`, `timeout=` (seconds, default 30), `pool=` (connections, default 2),
`verify=0` (accept any certificate: a test server or a self-signed relay only), `helo=` (the
name given in EHLO, default this machine's). User and password are URL-encoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from reengage.errors import ConfigError

OPTIONS = ("starttls", "timeout", "pool", "verify", "helo")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server; parsed from `smtp_url` by `parse_smtp_url`."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    pool: int = 2
    verify: bool = True
    helo: str | None = None

    @property
    def tls(self) -> bool:
        return self.implicit_tls or self.starttls

    def describe(self) -> str:
        """The server and its security, for messages: never the user or the password."""
        how = "smtps" if self.implicit_tls else "smtp+starttls" if self.starttls else "smtp"
        return f"{how}://{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpConfig:
    """An `SmtpConfig` from `smtp_url`; ConfigError naming what is wrong (never the password)."""

    def bad(what: str) -> ConfigError:
        return ConfigError(f"smtp_url: {what}")

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise bad("the port must be a number from 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise bad("must start with smtp:// or smtps:// (e.g. smtp://user:pass@host:587?starttls=1)")
    if not parts.hostname:
        raise bad("no server name (e.g. smtp://smtp.example.com:587?starttls=1)")
    if parts.path not in ("", "/") or parts.fragment:
        raise bad("has a path or #fragment; only ?options follow the server")
    if port == 0:
        raise bad("the port must be a number from 1 to 65535")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in OPTIONS:
            raise bad(f"unknown option {key!r} (known: {', '.join(OPTIONS)})")
        options[key] = value

    def flag(name: str, default: bool) -> bool:
        value = options.get(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise bad(f"{name} must be 1 or 0, not {value!r}")

    starttls = flag("starttls", False)
    if starttls and scheme == "smtps":
        raise bad("starttls=1 is for smtp://; smtps:// is TLS from the start")
    try:
        timeout = float(options.get("timeout", "30"))
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 3600:
        raise bad("timeout must be a number of seconds between 0 and 3600")
    pool_text = options.get("pool", "2")
    if not pool_text.isdigit() or not 1 <= int(pool_text) <= 100:
        raise bad("pool must be a number of connections from 1 to 100")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username and not password:
        raise bad("has a user but no password (smtp://user:password@host)")
    if password and not username:
        raise bad("has a password but no user")
    helo = options.get("helo") or None
    if helo is not None and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", helo):
        raise bad("helo must be a host name")
    default_port = 465 if scheme == "smtps" else 587 if starttls else 25
    return SmtpConfig(
        host=parts.hostname,
        port=port or default_port,
        implicit_tls=scheme == "smtps",
        starttls=starttls,
        username=username,
        password=password,
        timeout=timeout,
        pool=int(pool_text),
        verify=flag("verify", True),
        helo=helo,
    )
