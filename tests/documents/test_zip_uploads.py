"""Uploads of files Docent can't read are refused at once, and ZIP archives are unpacked into documents."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from documents import services
from documents.models import Document, DocumentVersion
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def own_storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "incoming"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()


def archive(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as package:
        for name, data in members.items():
            package.writestr(name, data)
    return buffer.getvalue()


def upload(client, bot, *files: tuple[str, bytes]):
    payload = {"file": [SimpleUploadedFile(name, data) for name, data in files]}
    return client.post(f"/api/v1/bots/{bot.id}/documents", payload)


HR_ARCHIVE = {
    "policies/": b"",
    "policies/leave.md": b"# Leave\n\nEveryone gets 16 weeks of parental leave.",
    "policies/handbook.pdf": fixture_bytes("handbook.pdf"),
    "people.csv": fixture_bytes("people.csv"),
    "images/logo.png": fixture_bytes("pixel.png"),
    "old/archive.zip": archive({"inner.txt": b"Never unpacked."}),
    "__MACOSX/policies/._leave.md": b"\x00\x05\x16\x07 resource fork",
    "policies/.DS_Store": b"\x00\x00\x00\x01Bud1",
}


def test_a_zip_archive_becomes_one_document_per_readable_file_named_with_its_folders(owner_api, bot):
    response = upload(owner_api, bot, ("hr.zip", archive(HR_ARCHIVE)))

    assert response.status_code == 202
    entries = response.json()
    summary, *added = entries
    assert summary["status"] == "unpacked"
    assert summary["id"] is None
    assert summary["filename"] == "hr.zip"
    assert {(item["filename"], item["archive"], item["status"]) for item in added} == {
        ("policies/leave.md", "hr.zip", "queued"),
        ("policies/handbook.pdf", "hr.zip", "queued"),
        ("people.csv", "hr.zip", "queued"),
    }
    # Operating-system litter is skipped silently; what the person put in and can't be read is named.
    assert [member["filename"] for member in summary["left_out"]] == ["images/logo.png", "old/archive.zip"]
    assert "can't read" in summary["left_out"][0]["reason"]
    assert "archive inside the archive is not unpacked" in summary["left_out"][1]["reason"]
    assert summary["message"].startswith("hr.zip was unpacked into 3 documents. Left out (2 files): images/logo.png")
    assert set(Document.objects.filter(bot=bot).values_list("filename", flat=True)) == {
        "policies/leave.md",
        "policies/handbook.pdf",
        "people.csv",
    }
    leave = Document.objects.get(bot=bot, filename="policies/leave.md")
    with leave.current_version.file.open("rb") as stored:
        assert stored.read() == HR_ARCHIVE["policies/leave.md"]


def test_the_upload_view_shows_one_summary_for_the_archive(client, owner, bot):
    client.force_login(owner)
    response = client.post(
        reverse("bots:upload", args=[bot.slug]),
        {"file": [SimpleUploadedFile("hr.zip", archive(HR_ARCHIVE))]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("hr.zip was unpacked into 3 documents.") == 1
    assert "images/logo.png" in html
    assert "policies/leave.md" in html  # the table, with the new document


@pytest.mark.parametrize(
    ("limit", "members", "reason"),
    [
        ({"DOCENT_MAX_ZIP_PARTS": 3}, {f"note-{n}.txt": b"A note." for n in range(5)}, "holds more than 3 files"),
        ({"DOCENT_MAX_UNZIPPED_MB": 1}, {"big.txt": b"All work and no play. " * 60_000}, "unpacks to 1 MB, more than"),
        ({}, {"bomb.txt": b"\x00" * (3 * MB)}, "packed unusually tightly: bomb.txt unpacks to"),
    ],
    ids=["members", "unpacked size", "compression ratio"],
)
def test_an_archive_over_the_zip_limits_is_refused_whole(owner_api, bot, settings, limit, members, reason):
    for name, value in limit.items():
        setattr(settings, name, value)

    response = upload(owner_api, bot, ("bomb.zip", archive(members)))

    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert not Document.objects.filter(bot=bot).exists()


def test_an_archive_of_only_unreadable_files_is_refused_with_415_and_its_summary(owner_api, bot):
    response = upload(owner_api, bot, ("pictures.zip", archive({"a.png": fixture_bytes("pixel.png")})))

    assert response.status_code == 415
    detail = response.json()["detail"]
    assert detail.startswith("pictures.zip was not stored: It holds no file Docent can read. Left out (1 file): a.png")
    assert not Document.objects.filter(bot=bot).exists()


def test_a_single_unsupported_file_is_refused_with_415_and_never_becomes_a_document(owner_api, bot):
    for _ in range(2):  # uploading it again makes no "v2" of anything either
        response = upload(owner_api, bot, ("pixel.png", fixture_bytes("pixel.png")))
        assert response.status_code == 415
        assert response.json()["detail"].startswith("pixel.png was not stored: Docent can't read this kind of file")
    assert not Document.objects.filter(bot=bot).exists()
    assert not DocumentVersion.objects.exists()


def test_a_mixed_upload_lists_each_refused_file_with_its_reason_and_stores_the_rest(owner_api, bot):
    response = upload(
        owner_api,
        bot,
        ("pixel.png", fixture_bytes("pixel.png")),
        ("canteen.txt", fixture_bytes("canteen.txt")),
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"),
    )

    assert response.status_code == 202
    png, canteen, exe = response.json()
    assert (png["status"], png["id"]) == ("refused", None)
    assert "can't read this kind of file (.png)" in png["error"]
    assert canteen["status"] == "queued"
    assert canteen["archive"] is None
    assert (exe["status"], exe["id"]) == ("refused", None)
    assert "(.exe)" in exe["error"]
    assert list(Document.objects.filter(bot=bot).values_list("filename", flat=True)) == ["canteen.txt"]


def test_a_word_document_is_not_taken_for_an_archive_and_a_damaged_zip_says_so(owner_api, bot):
    response = upload(owner_api, bot, ("handbook.docx", fixture_bytes("handbook.docx")))
    assert response.status_code == 202
    assert response.json()[0]["status"] == "queued"

    damaged = upload(owner_api, bot, ("broken.zip", archive({"a.txt": b"text"})[:-30]))
    assert damaged.status_code == 422
    assert "This ZIP archive is damaged" in damaged.json()["detail"]


def test_add_document_refuses_unsupported_files_and_archives_too(bot):
    with pytest.raises(services.UnsupportedFiles, match="can't read this kind of file"):
        services.add_document(bot, SimpleUploadedFile("pixel.png", fixture_bytes("pixel.png")), enqueue=False)
    with pytest.raises(services.UnsupportedFiles, match="unzip it and add its files"):
        services.add_document(bot, SimpleUploadedFile("hr.zip", archive({"a.txt": b"Text."})), enqueue=False)
    assert not Document.objects.filter(bot=bot).exists()
