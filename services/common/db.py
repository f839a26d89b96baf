"""Database plumbing shared by the services that own data (exporter, trainer).

One engine per store, one session scope, and Alembic migrations run as a start-up step. SQLite files get
WAL and foreign keys; any other SQLAlchemy URL (PostgreSQL) works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.common.errors import AlreadyExists


def make_engine(url: str) -> Engine:
    """Creates the engine for ``url``, making the folder of a SQLite file if needed."""
    parsed = make_url(url)
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def migrate(url: str, migrations_dir: Path) -> None:
    """Upgrades the database at ``url`` to the newest revision of ``migrations_dir`` (an Alembic folder)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


class Database:
    """An engine and its session factory: ``with db.session() as s: ...`` commits or rolls back as one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, what: str = "record") -> Iterator[Session]:
        s = self._factory()
        try:
            yield s
            s.commit()
        except IntegrityError as exc:
            s.rollback()
            raise AlreadyExists(f"{what} already exists") from exc
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
