"""The embedded Postgres server's own settings (config/embedded.py)."""

import pytest
from django.db import connection

from config import embedded

GB = 2**30


def test_shared_buffers_are_a_quarter_of_memory_within_bounds(monkeypatch):
    monkeypatch.delenv("DOCENT_POSTGRES_SHARED_BUFFERS", raising=False)
    assert embedded.server_settings(16 * GB) == {"shared_buffers": "4096MB", "effective_cache_size": "8192MB"}
    assert embedded.server_settings(256 * GB)["shared_buffers"] == "8192MB"
    assert embedded.server_settings(GB // 4)["shared_buffers"] == "128MB"


def test_shared_buffers_can_be_set(monkeypatch):
    monkeypatch.setenv("DOCENT_POSTGRES_SHARED_BUFFERS", "512MB")
    assert embedded.server_settings(16 * GB)["shared_buffers"] == "512MB"


def test_settings_file_is_included_once_and_rewritten_only_on_change(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("max_connections = 100\n")
    embedded.write_server_settings(tmp_path, {"shared_buffers": "1024MB"})
    embedded.write_server_settings(tmp_path, {"shared_buffers": "2048MB"})
    assert conf.read_text().count("include_if_exists = 'docent.conf'") == 1
    assert (tmp_path / "docent.conf").read_text() == "shared_buffers = '2048MB'\n"
    written = (tmp_path / "docent.conf").stat().st_mtime_ns
    embedded.write_server_settings(tmp_path, {"shared_buffers": "2048MB"})
    assert (tmp_path / "docent.conf").stat().st_mtime_ns == written


@pytest.mark.django_db
def test_the_running_embedded_server_uses_them():
    """The test database is the embedded server this session started, so it read the settings file."""
    if not connection.settings_dict["HOST"].startswith("/"):
        pytest.skip("the tests use an external Postgres (DATABASE_URL), not the embedded one")
    with connection.cursor() as cursor:
        cursor.execute("SELECT setting::bigint * 8192 / 1048576 FROM pg_settings WHERE name = 'shared_buffers'")
        shared_mb = cursor.fetchone()[0]
        cursor.execute("SELECT sourcefile FROM pg_settings WHERE name = 'shared_buffers'")
        source = cursor.fetchone()[0]
    assert source.endswith("docent.conf")
    assert f"{shared_mb}MB" == embedded.server_settings()["shared_buffers"]
