"""Uploaded files live wherever STORAGES["default"] says: a local folder, or an S3-compatible bucket.

The bucket is moto's standalone S3 server, run here on a local port; the web side (the test
client) and a real Celery worker both reach it only through django-storages.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from django.conf import settings as django_settings
from moto.server import ThreadedMotoServer

from documents.models import Chunk, Document, Page
from tests.conftest import fixture_bytes, wait_until_final, worker_instead
from tests.documents.test_pipeline import upload

BUCKET = "docent-uploads"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "docent-test", "AWS_SECRET_ACCESS_KEY": "docent-test-secret"}


@pytest.fixture
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, settings, monkeypatch):
    """An empty bucket on the S3 server, and Docent's uploads stored in it (settings as DOCENT_S3_* make them)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": s3_server, "file_overwrite": False},
        },
    }
    return client


def stored_keys(client) -> list[str]:
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.fixture
def s3_worker(celery_worker, s3_server, tmp_path):
    """The session's worker makes way for one configured for the bucket, as DOCENT_S3_* configure it."""
    env = {**CREDENTIALS, "DOCENT_S3_BUCKET": BUCKET, "DOCENT_S3_ENDPOINT_URL": s3_server}
    with worker_instead(celery_worker, env, tmp_path) as worker:
        yield worker


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uploads_stored_in_a_bucket_are_ingested_by_a_worker_and_deleted_with_their_document(
    bucket, s3_worker, owner_api, bot
):
    (created,) = upload(owner_api, bot.id, "handbook.pdf", fixture_bytes("handbook.pdf")).json()

    document = Document.objects.get(pk=created["id"])
    key = document.current_version.file.name
    assert stored_keys(bucket) == [key]
    assert key.startswith(f"documents/bot-{bot.id}/doc-{document.id}/")
    assert not (Path(django_settings.MEDIA_ROOT) / key).exists()  # in the bucket, not on disk

    document = wait_until_final(created["id"], timeout=180)
    assert document.status == "ready", document.error
    assert Page.objects.filter(version=document.current_version).count() == 4  # it parsed the PDF from the bucket
    assert Chunk.objects.filter(document=document, is_active=True).count() == document.chunk_count > 0
    found = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "EXP-4471"}, "application/json").json()
    assert found["results"][0]["page"] == 3

    assert owner_api.delete(f"/api/v1/documents/{created['id']}").status_code == 204
    assert stored_keys(bucket) == []


def test_a_local_copy_is_read_through_the_storage_and_removed_afterwards(bucket, tmp_path, settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.models.fields.files import FieldFile

    from documents.models import DocumentVersion
    from documents.storage import local_copy

    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    name = default_storage.save("documents/bot-1/doc-1/v1-menu.md", ContentFile(b"# Menu\n\nSoup on Tuesdays."))
    stored = FieldFile(None, DocumentVersion._meta.get_field("file"), name)

    with local_copy(stored) as path:
        assert path.parent == tmp_path and path.suffix == ".md"
        assert path.read_bytes() == b"# Menu\n\nSoup on Tuesdays."
    assert not path.exists()


def test_deleting_a_local_file_removes_the_folders_it_leaves_empty(tmp_path, settings):
    from django.core.files.base import ContentFile

    from documents.storage import LocalStorage

    storage = LocalStorage(location=tmp_path)
    first = storage.save("documents/bot-1/doc-1/v1-a.txt", ContentFile(b"a"))
    second = storage.save("documents/bot-1/doc-2/v1-b.txt", ContentFile(b"b"))

    storage.delete(first)
    assert not (tmp_path / "documents/bot-1/doc-1").exists()
    assert (tmp_path / "documents/bot-1/doc-2/v1-b.txt").exists()
    storage.delete(second)
    assert not (tmp_path / "documents/bot-1").exists()
    assert (tmp_path / "documents").is_dir()  # the top folder stays


def test_a_file_the_bucket_lost_reads_as_gone_and_an_unreachable_bucket_as_a_connection_error(
    bucket, s3_server, tmp_path, settings
):
    from botocore.config import Config
    from django.db.models.fields.files import FieldFile

    from documents.models import DocumentVersion
    from documents.storage import local_copy
    from tests.test_serve_lifecycle import free_port

    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    field = DocumentVersion._meta.get_field("file")
    with pytest.raises(FileNotFoundError), local_copy(FieldFile(None, field, "documents/bot-1/doc-1/v1-gone.txt")):
        pass  # what ingestion meets when the document was deleted meanwhile: it stops quietly

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
                "client_config": Config(retries={"total_max_attempts": 1}, connect_timeout=2),
            },
        },
    }
    field = DocumentVersion._meta.get_field("file")
    with pytest.raises(ConnectionError), local_copy(FieldFile(None, field, "documents/bot-1/doc-1/v1-a.txt")):
        pass  # a transient error: the ingest task is retried with backoff (documents.services.TRANSIENT_ERRORS)
    assert list(tmp_path.iterdir()) == []
