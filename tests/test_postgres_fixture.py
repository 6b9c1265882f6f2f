from sqlalchemy import create_engine, text

from postgres_server import Server


def test_server_answers_on_loopback(pg_server: Server) -> None:
    engine = create_engine(pg_server.url())
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1
        assert conn.execute(text("show listen_addresses")).scalar_one() == "127.0.0.1"
    engine.dispose()
