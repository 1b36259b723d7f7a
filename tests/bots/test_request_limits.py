"""Oversized request bodies are refused on their headers, before the server reads them.

The ASGI tests run the real application under uvicorn (as `manage.py serve` does) and
talk to it over a raw socket, so they see what a client sees: the 413 arrives while
the claimed gigabytes have not been sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from django.core.files.uploadedfile import SimpleUploadedFile

from documents.models import Document

GIB = 1024 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """config.asgi.application under uvicorn in a thread, on a free loopback port."""
    from config.asgi import application

    port = _free_port()
    config = uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield ("127.0.0.1", port)
    running.should_exit = True
    thread.join(timeout=10)


def _read_response(connection: socket.socket, timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the first response on `connection` (the body up to Content-Length)."""
    connection.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", len(body)))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def _claim_and_read(address, request_line: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes, float]:
    """Send headers claiming a huge body and a few bytes of it, then read the answer (with its delay)."""
    with socket.create_connection(address) as connection:
        head = request_line + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        started = time.monotonic()
        connection.sendall(head.encode() + b"username=ada&password=")
        status, response_headers, body = _read_response(connection)
        return status, response_headers, body, time.monotonic() - started


def test_a_login_claiming_2_gib_gets_413_at_once_without_sending_the_body(server):
    status, headers, body, seconds = _claim_and_read(
        server,
        "POST /accounts/login/ HTTP/1.1",
        {"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(2 * GIB)},
    )
    assert status == 413
    assert seconds < 2
    assert headers["content-type"].startswith("text/html")
    assert b"too large" in body


def test_an_api_upload_claiming_2_gib_gets_a_json_413_at_once(server):
    status, headers, body, seconds = _claim_and_read(
        server,
        "POST /api/v1/bots/1/documents HTTP/1.1",
        {
            "Host": "localhost",
            "Authorization": "Bearer whatever",
            "Content-Type": "multipart/form-data; boundary=xyz",
            "Content-Length": str(2 * GIB),
        },
    )
    assert status == 413
    assert seconds < 2
    assert "1024 MB" in json.loads(body)["detail"]


def test_a_page_upload_claiming_2_gib_gets_413_at_once(server):
    status, _, body, seconds = _claim_and_read(
        server,
        "POST /bots/handbook/documents/ HTTP/1.1",
        {"Host": "localhost", "Content-Type": "multipart/form-data; boundary=xyz", "Content-Length": str(2 * GIB)},
    )
    assert status == 413
    assert seconds < 2
    assert b"upload is too large" in body


def test_the_openai_endpoint_answers_413_in_openai_shape(server):
    status, _, body, _ = _claim_and_read(
        server,
        "POST /v1/chat/completions HTTP/1.1",
        {"Host": "localhost", "Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
    )
    assert status == 413
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(server, settings):
    """No Content-Length to refuse on: the bytes are counted as they arrive, and the answer comes at the limit."""
    with socket.create_connection(server) as connection:
        connection.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 65536
        sent = 0
        # Past the limit, but the closing zero-length chunk is never sent: only the count can answer.
        while sent <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE + len(chunk):
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        status, _, body = _read_response(connection)
    assert status == 413
    assert b"too large" in body


def test_a_small_login_still_reaches_django(server):
    with socket.create_connection(server) as connection:
        connection.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status, _, body = _read_response(connection)
    assert status == 200
    assert b"Log in" in body


# The WSGI path (and Django's test client) has the same limits, from the middleware.


def test_the_middleware_refuses_a_large_form_post_with_413(client):
    response = client.post("/accounts/login/", {"username": "ada", "password": "x" * 3_000_000})
    assert response.status_code == 413


@pytest.mark.django_db
def test_the_middleware_refuses_a_large_api_body_with_json_413(owner_api):
    response = owner_api.post("/api/v1/bots", json.dumps({"name": "x" * 3_000_000}), "application/json")
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


@pytest.mark.django_db
def test_an_upload_larger_than_the_small_limit_is_accepted(owner_api, bot):
    """Uploads have their own, larger limit: 3 MB passes where other requests stop at 2.5 MB."""
    big = SimpleUploadedFile("big.txt", b"word " * 600_000)
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": [big]})
    assert response.status_code == 202
    assert Document.objects.filter(bot=bot).count() == 1


@pytest.mark.django_db
def test_an_upload_over_the_request_limit_says_so_in_the_drop_zone(client, owner, bot, settings):
    settings.DOCENT_MAX_UPLOAD_REQUEST_MB = 1
    client.force_login(owner)
    big = SimpleUploadedFile("big.txt", b"word " * 300_000)
    response = client.post(f"/bots/{bot.slug}/documents/", {"file": [big]}, headers={"HX-Request": "true"})
    assert response.status_code == 413
    assert response["HX-Retarget"] == "#upload-message"
    assert "at most 1 MB can be sent at once" in response.content.decode()
    assert not Document.objects.exists()
