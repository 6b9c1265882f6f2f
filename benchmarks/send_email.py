"""Email throughput: reengage's SmtpChannel against a bare smtplib loop, into the same local
SMTP server.

The server is aiosmtpd in a child process whose handler only counts what it accepts, so it
does not compete for this process's GIL. aiosmtpd is pure Python and is the slower end of the
conversation: both rates are bounded by it, which is why the sender's own CPU time per message
is reported too.

- baseline: one smtplib connection sending one fixed, pre-built message `--count` times;
- reengage: `SmtpChannel` sending `--count` distinct messages, each built by `MailBuilder`
  (personal subject, text and HTML, its own Message-ID, unsubscribe token and headers), from
  `--threads` threads through a pool of `--pool` connections.

    python -m benchmarks.send_email [--count 100000] [--threads 4] [--pool 4] [--dkim]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import smtplib
import socket
import threading
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.common import report, scratch, timed
from reengage.channels.delivery import Outgoing
from reengage.channels.mail import MailBuilder
from reengage.channels.smtp import SmtpChannel, parse_smtp_url
from reengage.clock import FixedClock
from reengage.config import Settings


def _serve(port: int, control: Connection) -> None:
    """The counting server (runs in the child process): answers "count" with the number of
    messages accepted so far and "stop" by stopping."""
    from aiosmtpd.controller import Controller

    class Counter:
        accepted = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.accepted += len(envelope.rcpt_tos)
            return "250 2.0.0 Ok"

    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    control.send("ready")
    while (command := control.recv()) != "stop":
        if command == "count":
            control.send(counter.accepted)
    controller.stop()


class CountingServer:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._control, child = mp.Pipe()
        self._process = mp.get_context("spawn").Process(
            target=_serve, args=(self.port, child), daemon=True
        )
        self._process.start()
        if self._control.recv() != "ready":
            raise RuntimeError("the SMTP server did not start")

    def accepted(self) -> int:
        self._control.send("count")
        return int(self._control.recv())

    def stop(self) -> None:
        self._control.send("stop")
        self._process.join(timeout=30)


def settings_for(port: int, pool: int, dkim_key: Path | None) -> Settings:
    return Settings(
        home=scratch("send_email"),
        secret_key="benchmark-secret-" + "x" * 32,
        public_url="https://shop.example.com",
        mail_from="Bottega <news@shop.example.com>",
        smtp_url=f"smtp://127.0.0.1:{port}?pool={pool}",
        dkim_selector="rg" if dkim_key else None,
        dkim_private_key_file=dkim_key,
    )


def personal(n: int) -> Outgoing:
    name = f"Cliente{n}"
    return Outgoing(
        message_id=n,
        channel="email",
        to=f"person{n}@example.org",
        subject=f"{name}, il tuo carrello ti aspetta",
        text=(
            f"Ciao {name},\n\nhai lasciato 3 articoli nel carrello (ordine n. {n}).\n"
            f"Li trovi qui: https://shop.example.com/cart?c={n}\n\nA presto,\nBottega\n"
        ),
        html=(
            f"<html><body><h1>Ciao {name}</h1><p>Hai lasciato <b>3 articoli</b> nel "
            f"carrello (ordine n. {n}).</p><p><a href='https://shop.example.com/cart?c={n}'>"
            f"Torna al carrello</a></p><p>A presto,<br>Bottega</p></body></html>"
        ),
        data={"contact_id": n},
    )


def bare(port: int, count: int, message: bytes) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds."""
    cpu = time.process_time()
    with timed() as elapsed:
        conn = smtplib.SMTP("127.0.0.1", port, "bench.example.com")
        for _ in range(count):
            conn.sendmail("news@shop.example.com", ["person@example.org"], message)
        conn.quit()
    return elapsed(), time.process_time() - cpu


def ours(settings: Settings, count: int, threads: int) -> tuple[float, float]:
    assert settings.smtp_url is not None
    channel = SmtpChannel(
        parse_smtp_url(settings.smtp_url),
        MailBuilder(settings),
        FixedClock(datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
    )
    failures: list[BaseException] = []

    def work(first: int) -> None:
        try:
            for n in range(first, count, threads):
                channel.send(personal(n))
        except BaseException as exc:
            failures.append(exc)

    cpu = time.process_time()
    with timed() as elapsed:
        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        channel.close()
    if failures:
        raise failures[0]
    return elapsed(), time.process_time() - cpu


def make_dkim_key() -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = scratch("send_email") / "dkim.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--dkim", action="store_true", help="sign every message (RSA 2048)")
    args = parser.parse_args()
    server = CountingServer()
    try:
        settings = settings_for(server.port, args.pool, make_dkim_key() if args.dkim else None)
        fixed = MailBuilder(settings).render(personal(0), at=datetime(2026, 11, 1, tzinfo=UTC))
        bare_seconds, bare_cpu = bare(server.port, args.count, fixed)
        after_bare = server.accepted()
        ours_seconds, ours_cpu = ours(settings, args.count, args.threads)
        after_ours = server.accepted() - after_bare
    finally:
        server.stop()
    if (after_bare, after_ours) != (args.count, args.count):
        raise SystemExit(f"server accepted {after_bare} and {after_ours}, expected {args.count}")
    bare_rate, ours_rate = args.count / bare_seconds, args.count / ours_seconds
    report(
        "send_email",
        {
            "messages": args.count,
            "threads": args.threads,
            "pool": args.pool,
            "dkim": args.dkim,
            "bare_seconds": round(bare_seconds, 2),
            "bare_per_second": round(bare_rate),
            "reengage_seconds": round(ours_seconds, 2),
            "reengage_per_second": round(ours_rate),
            "ratio": round(ours_rate / bare_rate, 3),
            # the sender's own CPU per message (the server runs in another process)
            "bare_cpu_us_per_message": round(bare_cpu / args.count * 1e6),
            "reengage_cpu_us_per_message": round(ours_cpu / args.count * 1e6),
            "goal": ">= 0.333",
        },
    )


if __name__ == "__main__":
    main()
