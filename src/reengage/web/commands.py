"""`reengage serve`: the web app."""

from __future__ import annotations

import signal
import socket
from types import FrameType
from typing import Annotated

import typer

from reengage.cli import app, handles_errors, opened_state, out, state
from reengage.errors import InputError


def _check_can_listen(host: str, port: int) -> None:
    """A clear one-line error for a busy port or an unknown host, before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            raise InputError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None


@app.command()
@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8420,
) -> None:
    """Serve the links in messages (click, open, unsubscribe, preferences) and /healthz.

    Put it behind the HTTPS address set as public_url. Stops cleanly on SIGTERM or Ctrl-C.
    """
    import uvicorn

    from reengage.web.app import create_app

    _check_can_listen(host, port)
    with opened_state() as (home, engine):
        application = create_app(home.settings, engine, state.clock)
        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            # the access log would write every token (a key to someone's preferences)
            access_log=False,
            log_level="warning",
            lifespan="auto",
            server_header=False,
        )
        server = uvicorn.Server(config)

        def stop(_signum: int, _frame: FrameType | None) -> None:
            # uvicorn answers the signal itself while it runs, then raises it again for the
            # handler it found: this one, so a requested stop ends with exit code 0
            server.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            out.print(
                f"reengage serving on http://{host}:{port} "
                f"(links in messages point at {home.settings.public_url}); SIGTERM or Ctrl-C stops"
            )
            server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    out.print("reengage stopped")
