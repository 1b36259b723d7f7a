"""Uploads that stress names and numbers: very long and multi-byte names, a thousand files
at once, more than allowed, and a disk that refuses one file of several."""

from __future__ import annotations

import contextlib
import io
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from documents import filenames, services
from documents.models import Document, DocumentVersion

pytestmark = pytest.mark.django_db

LONG_ASCII = "Quarterly report on the canteen opening hours " * 7  # 322 characters
LONG_CJK = "員工手冊與食堂開放時間說明" * 16  # 208 characters, 624 bytes in UTF-8


@pytest.fixture(autouse=True)
def own_storage(settings, tmp_path):
    """Stored and temporary files of each test in folders of its own, so leftovers can be seen."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "incoming"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()


def named(name: str, content: bytes) -> io.BytesIO:
    """A file for the test client that keeps its whole name (SimpleUploadedFile cuts at 255)."""
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def bot_folder(bot) -> Path:
    return Path(django_settings.MEDIA_ROOT) / "documents" / f"bot-{bot.pk}"


def stored_path(document: Document) -> Path:
    return Path(document.current_version.file.path)


@contextlib.contextmanager
def file_size_limit(max_bytes: int):
    """Let this process write files of at most `max_bytes`, as a full disk or a quota would.

    Writes past the limit fail with EFBIG (Python ignores the SIGXFSZ signal); root is
    not exempt, unlike from file permissions.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def assert_no_empty_folders(folder: Path) -> None:
    if folder.exists():
        empty = [path for path in folder.rglob("*") if path.is_dir() and not any(path.iterdir())]
        assert not empty, f"empty folders left behind: {empty}"


# --- Names -------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", [LONG_ASCII, LONG_CJK], ids=["300-ascii", "200-cjk"])
def test_a_very_long_name_is_stored_and_queued_and_shown_whole(owner_api, bot, stem):
    name = stem + ".txt"
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": [named(name, b"Lunch from 11:30.")]})

    assert response.status_code == 202, response.content
    [entry] = response.json()
    assert entry["filename"] == name
    assert entry["status"] == "queued"
    document = Document.objects.get(pk=entry["id"])
    assert document.filename == name
    stored = stored_path(document)
    assert stored.read_bytes() == b"Lunch from 11:30."
    assert len(stored.name.encode()) <= 255
    assert stored.suffix == ".txt"


def test_three_files_with_one_long_name_are_all_stored(owner_api, bot):
    files = [
        named("a.txt", b"first"),
        named(LONG_ASCII + ".md", b"# second"),
        named("c.txt", b"third"),
    ]
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": files})

    assert response.status_code == 202, response.content
    assert [entry["status"] for entry in response.json()] == ["queued"] * 3
    assert sorted(Document.objects.filter(bot=bot).values_list("filename", flat=True)) == sorted(
        ["a.txt", LONG_ASCII + ".md", "c.txt"]
    )


def test_a_name_longer_than_the_column_is_cut_keeping_its_extension():
    name = "x" * 700 + ".pdf"
    shown = services.clean_filename(name)
    assert len(shown) == Document._meta.get_field("filename").max_length
    assert shown.endswith("x.pdf")


def test_the_stored_name_is_cut_in_bytes_without_splitting_a_character():
    cut = filenames.fit_bytes("v1-" + LONG_CJK + ".docx", 200)
    assert len(cut.encode()) <= 200
    assert cut.endswith("冊.docx") or cut.endswith(".docx")
    assert cut.encode().decode() == cut  # no broken character at the cut
    assert filenames.fit_bytes("short.txt", 200) == "short.txt"


def test_folders_and_control_characters_never_reach_the_name():
    assert services.clean_filename("C:\\Users\\ana\\budget.xlsx") == "budget.xlsx"
    assert services.clean_filename("../../etc/passwd") == "passwd"
    assert services.clean_filename("tab\there\x00.txt") == "tabhere.txt"
    assert services.clean_filename("..") == "untitled"


# --- A file the disk refuses ---------------------------------------------------------------


def test_a_file_the_disk_refuses_mid_write_is_reported_and_leaves_nothing_behind(bot):
    small_before = SimpleUploadedFile("before.txt", b"fits")
    too_big = SimpleUploadedFile("big.txt", b"x" * 300_000)
    small_after = SimpleUploadedFile("after.txt", b"fits too")

    with file_size_limit(100_000):
        results = services.add_documents(bot, [small_before, too_big, small_after], enqueue=False)

    stored, refused, stored_after = results
    assert isinstance(refused, services.Refused)
    assert refused.filename == "big.txt"
    assert "no room" in refused.reason
    assert stored.document.filename == "before.txt" and stored_after.document.filename == "after.txt"
    assert not Document.objects.filter(bot=bot, filename="big.txt").exists()
    on_disk = sorted(path.name for path in bot_folder(bot).rglob("*") if path.is_file())
    assert on_disk == ["v1-after.txt", "v1-before.txt"]  # no partial big.txt
    assert_no_empty_folders(bot_folder(bot))


def test_when_no_file_can_be_stored_the_upload_is_refused_and_no_folder_remains(bot):
    with file_size_limit(10_000), pytest.raises(services.NothingStored) as refusal:
        services.add_documents(bot, [SimpleUploadedFile("big.txt", b"x" * 50_000)], enqueue=False)

    assert "big.txt was not stored" in str(refusal.value)
    assert not Document.objects.filter(bot=bot).exists()
    assert not DocumentVersion.objects.filter(document__bot=bot).exists()
    assert not bot_folder(bot).exists() or not any(bot_folder(bot).iterdir())


def test_the_api_reports_per_file_which_files_were_refused_and_why(owner_api, bot):
    blocked = services.add_document(bot, SimpleUploadedFile("blocked.txt", b"v1"), enqueue=False).document
    # Something else sits where the document's folder should be: writing a new version fails.
    folder = stored_path(blocked).parent
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    try:
        files = [named("a.txt", b"first"), named("blocked.txt", b"v2"), named("c.txt", b"third")]
        response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": files})

        assert response.status_code == 202, response.content
        first, refused, third = response.json()
        assert first["status"] == third["status"] == "queued"
        assert refused["filename"] == "blocked.txt"
        assert refused["status"] == "refused"
        assert refused["id"] is None
        assert "could not write it" in refused["error"]
        assert str(django_settings.MEDIA_ROOT) not in refused["error"]
        blocked.refresh_from_db()
        assert blocked.versions.count() == 1 and blocked.current_version.number == 1

        alone = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": [named("blocked.txt", b"v3")]})
        assert alone.status_code == 422
        assert "blocked.txt was not stored" in alone.json()["detail"]
    finally:
        folder.unlink()
    assert_no_empty_folders(bot_folder(bot))


def test_a_file_the_server_cannot_receive_is_a_507_with_a_reason_not_a_crash(owner_api, bot):
    with file_size_limit(100_000):
        response = owner_api.post(
            f"/api/v1/bots/{bot.id}/documents", {"file": [named("a.txt", b"fine"), named("big.txt", b"x" * 300_000)]}
        )

    assert response.status_code == 507
    assert "no room to receive" in response.json()["detail"]
    assert not Document.objects.filter(bot=bot).exists()
    assert not any(Path(django_settings.FILE_UPLOAD_TEMP_DIR).iterdir())


@pytest.fixture
def full_volume(settings, tmp_path):
    """MEDIA_ROOT on a 64 KB tmpfs of its own, as uploads on a volume that fills up.

    Files are received on the main disk (FILE_UPLOAD_TEMP_DIR) and copied onto the volume,
    where the write runs out of space for real (ENOSPC). Mounting needs root.
    """
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(volume)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"Can't mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    settings.MEDIA_ROOT = volume
    try:
        yield volume
    finally:
        subprocess.run(["umount", "--lazy", str(volume)], check=True)


def files_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_an_upload_onto_a_full_volume_is_refused_with_a_reason_and_leaves_nothing(owner_api, bot, full_volume):
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": [named("big.txt", b"x" * 200_000)]})

    assert response.status_code == 422, response.content
    assert response.json() == {
        "detail": "big.txt was not stored: the server has no room left to store it. "
        "Ask an administrator to free some space."
    }
    assert not Document.objects.filter(bot=bot).exists()
    assert not DocumentVersion.objects.filter(document__bot=bot).exists()
    assert files_in(full_volume) == []  # no half-written copy
    assert_no_empty_folders(full_volume / "documents")
    assert not any(Path(django_settings.FILE_UPLOAD_TEMP_DIR).iterdir())


def test_the_knowledge_tab_names_the_file_a_full_volume_refused_and_stores_the_rest(client, owner, bot, full_volume):
    client.force_login(owner)
    files = [named("menu.txt", b"Soup on Tuesdays."), named("big.txt", b"x" * 200_000)]
    response = client.post(reverse("bots:upload", args=[bot.slug]), {"file": files}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "<strong>big.txt</strong>: the server has no room left to store it" in page
    assert list(Document.objects.filter(bot=bot).values_list("filename", flat=True)) == ["menu.txt"]
    menu = Document.objects.get(bot=bot)
    assert files_in(full_volume) == [menu.current_version.file.name]
    assert_no_empty_folders(full_volume / "documents")


# --- Many files ----------------------------------------------------------------------------


def test_a_thousand_files_in_one_request_become_a_thousand_documents(owner_api, bot):
    files = [named(f"note-{number:04}.txt", f"Note {number}".encode()) for number in range(1000)]
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": files})

    assert response.status_code == 202, response.content[:500]
    assert len(response.json()) == 1000
    assert Document.objects.filter(bot=bot, status="queued").count() == 1000
    assert not any(Path(django_settings.FILE_UPLOAD_TEMP_DIR).iterdir())  # temporary files gone


def test_more_files_than_allowed_is_a_json_413_and_nothing_is_stored(owner_api, bot):
    files = [named(f"note-{number:04}.txt", b"x") for number in range(1001)]
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": files})

    assert response.status_code == 413
    assert response.json() == {"detail": "At most 1000 files can be uploaded at once. Upload the rest separately."}
    assert not Document.objects.filter(bot=bot).exists()


def test_too_many_files_on_the_knowledge_tab_answer_a_message_for_the_drop_zone(client, owner, bot, settings):
    settings.DOCENT_MAX_FILES_PER_UPLOAD = 3
    client.force_login(owner)
    files = [named(f"note-{number}.txt", b"x") for number in range(4)]
    response = client.post(reverse("bots:upload", args=[bot.slug]), {"file": files}, headers={"HX-Request": "true"})

    assert response.status_code == 413
    assert response.headers["HX-Retarget"] == "#upload-message"
    assert response.headers["HX-Reswap"] == "innerHTML"
    assert "At most 3 files can be uploaded at once" in response.content.decode()
    assert not Document.objects.filter(bot=bot).exists()


def test_the_ingest_command_path_reports_a_file_it_cannot_store(bot):
    with file_size_limit(10_000), pytest.raises(services.FileNotStored):
        services.add_document(bot, File(io.BytesIO(b"x" * 50_000), name="big.txt"), enqueue=False)
    assert not Document.objects.filter(bot=bot).exists()


def test_the_same_name_twice_in_one_upload_becomes_two_versions_of_one_document(bot):
    first, second = services.add_documents(
        bot, [SimpleUploadedFile("menu.txt", b"Monday: soup"), SimpleUploadedFile("menu.txt", b"Tuesday: fish")], False
    )
    assert first.document.pk == second.document.pk
    document = Document.objects.get(pk=first.document.pk)
    assert document.current_version.number == 2
    assert stored_path(document).read_bytes() == b"Tuesday: fish"
