"""The pool of database connections a web process borrows from (psycopg-pool through Django's "pool" option).

A new connection costs ~10 ms and a fresh Postgres server process; a pooled one ~3 ms.
Web processes of `serve` use it (DOCENT_DATABASE_POOL, or `use_pool` for the one web
process that serves inside the command). Not Celery workers: their pool processes are
forked, and a pool's connections and threads do not survive a fork.
"""


def _release_advisory_locks(connection) -> None:
    # A question's answer lock is a session advisory lock (bots.services._answering): never lend one on.
    connection.execute("SELECT pg_advisory_unlock_all()")


POOL = {
    "min_size": 1,
    "max_size": 4,  # a web process runs its views one at a time; streams and health checks need a few more
    "timeout": 10,  # seconds a request waits for a free connection before it fails
    "reset": _release_advisory_locks,
}


def use_pool(database: dict) -> None:
    """Make `database` (an entry of DATABASES) borrow its connections from a pool; changes it in place.

    In place, so a process whose settings are already loaded (Django's connections hold
    this same dict) connects through the pool from its next connection on.
    """
    database["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django's own persistence must be off
    # Checked when lent: after Postgres restarts, the next request reconnects instead of failing.
    database["CONN_HEALTH_CHECKS"] = True
    database["OPTIONS"] = database.get("OPTIONS", {}) | {"pool": POOL}
