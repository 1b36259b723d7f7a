"""The pool of database connections web processes use (config.database; `serve` gives one to every web process)."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT, database_url

PROBE = """
import json, django
django.setup()
from django.db import connection

def request(sql):  # one statement, then what Django does at the end of every request
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    connection.close()
    return row[0]

backends = {request("SELECT pg_backend_pid()") for _ in range(6)}
request("SELECT pg_advisory_lock(6582115, 42)")  # as a question being answered holds one, if unlocking failed
held = request("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted")
print(json.dumps({"pool": connection.pool is not None, "backends": len(backends), "held": held}))
"""


@pytest.mark.django_db
@pytest.mark.parametrize("pool", [True, False])
def test_pooled_connections_are_reused_across_requests_without_the_last_ones_locks(pool):
    """Six requests in a row: a new server process each without the pool, a few with it; no lock outlives one."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "DOCENT_DATABASE_POOL": "1" if pool else "",
    }
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["pool"] == pool
    assert found["backends"] <= 2 if pool else found["backends"] == 6
    assert found["held"] == 0
