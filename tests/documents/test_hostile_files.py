"""Small uploads built to cost a worker gigabytes, and limits that must be named in plain words."""

from __future__ import annotations

import contextlib
import re
import struct
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import parsers
from tests.conftest import FIXTURES, wait_until_final

MB = 1024 * 1024
GIB = 1024 * MB
PNG_RELATIONSHIP = (
    '<Relationship Id="rId99" Target="media/image1.png" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"/></Relationships>'
)


def write_docx(path: Path, *, media_bytes: int = 0, media: bytes = b"", extra_parts: int = 0) -> Path:
    """tests/fixtures/handbook.docx plus a picture part word/media/image1.png that the document links to.

    The picture is `media` or, when `media_bytes` is given, that many zero bytes written
    through the compressor a MiB at a time, so building a 1 GiB part costs the test a MiB of memory.
    """
    with (
        zipfile.ZipFile(FIXTURES / "handbook.docx") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/_rels/document.xml.rels":
                data = data.replace(b"</Relationships>", PNG_RELATIONSHIP.encode())
            if info.filename == "[Content_Types].xml" and b'Extension="png"' not in data:
                data = data.replace(b"<Default ", b'<Default Extension="png" ContentType="image/png"/><Default ', 1)
            target.writestr(info.filename, data)
        with target.open("word/media/image1.png", "w", force_zip64=media_bytes >= 2 * 1024 * MB) as stream:
            stream.write(media)
            zeros = bytes(MB)
            for _ in range(media_bytes // MB):
                stream.write(zeros)
        for number in range(extra_parts):
            target.writestr(f"customXml/extra{number}.xml", "<x/>")
    return path


@pytest.fixture(scope="session")
def docx_bomb(tmp_path_factory) -> Path:
    """A valid handbook whose picture inflates to 1 GiB from about 1 MB."""
    return write_docx(tmp_path_factory.mktemp("bomb") / "handbook.docx", media_bytes=GIB)


class PeakMemory:
    """Samples the resident memory of a process and all its children until stopped.

    `growth` is the largest rise of any one process over what it used when sampling began
    (processes that appear later count from zero), so a pool child inflating a part shows up
    however the worker spreads its work.
    """

    def __init__(self, pid: int, interval: float = 0.02):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.start: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[int, int]:
        sizes = {}
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):  # a pool child replaced between the two calls
                sizes[process.pid] = process.memory_info().rss
        return sizes

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, rss in self._sample().items():
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return max(peak - self.start.get(pid, 0) for pid, peak in self.peak.items())

    @property
    def total_peak(self) -> int:
        return sum(self.peak.values())


# --- ZIP packages ----------------------------------------------------------------------


def refusal(path: Path, limits: parsers.ZipLimits | None = None) -> str:
    with pytest.raises(parsers.ParseError) as error:
        list(parsers.parse(path, path.name, zip_limits=limits))
    return str(error.value)


def test_the_bomb_is_small_on_disk_and_huge_inside(docx_bomb: Path):
    assert docx_bomb.stat().st_size < 2 * MB
    with zipfile.ZipFile(docx_bomb) as package:
        assert package.getinfo("word/media/image1.png").file_size == GIB


def test_a_word_document_that_unpacks_to_a_gigabyte_is_refused_before_anything_is_inflated(docx_bomb: Path):
    started = time.monotonic()
    message = refusal(docx_bomb)
    assert time.monotonic() - started < 2  # inflating 1 GiB takes several seconds
    assert message == (
        "This Word document unpacks to 1,024 MB, more than the 200 MB Docent accepts. "
        "Remove large pictures or split the document, and upload it again."
    )


def test_a_part_packed_far_tighter_than_real_documents_is_refused(tmp_path: Path):
    # 20 MB of zeros pack about 1,000 to 1, under the size limit; text and pictures pack less than 20 to 1.
    path = write_docx(tmp_path / "tight.docx", media_bytes=20 * MB)
    message = refusal(path)
    assert re.fullmatch(
        r"This Word document is packed unusually tightly: word/media/image1\.png unpacks to 1,0\d\d times its stored "
        r"size, and Docent accepts at most 100\. Files made to exhaust servers look like this; if yours is genuine, "
        r"save it again from Word and upload it again\.",
        message,
    ), message
    # The limit is a setting: raised, the same file is read (its picture still never inflated).
    (page,) = list(parsers.parse(path, path.name, zip_limits=parsers.ZipLimits(max_ratio=2000)))
    assert page.text.startswith("# Northwind Employee Handbook")


def test_a_word_document_with_too_many_parts_is_refused(tmp_path: Path):
    path = write_docx(tmp_path / "many.docx", extra_parts=40)
    limits = parsers.ZipLimits(max_parts=50)
    assert refusal(path, limits) == (
        "This Word document holds more than 50 files inside it, the most Docent accepts. "
        "Split it into smaller documents and upload them."
    )


def test_the_zip_limits_come_from_settings(settings):
    settings.DOCENT_MAX_UNZIPPED_MB, settings.DOCENT_MAX_ZIP_PARTS, settings.DOCENT_MAX_ZIP_RATIO = 5, 60, 30
    assert parsers.ZipLimits.from_settings(settings) == parsers.ZipLimits(
        max_unzipped_bytes=5 * MB, max_parts=60, max_ratio=30
    )


def zip_listing(path: Path, entries: int, declared: int) -> Path:
    """A ZIP whose table of contents lists `entries` empty parts and whose end record claims `declared`.

    Written byte by byte, since zipfile takes seconds to write 200,000 entries.
    """
    name = b"word/document.xml"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0)
    directory = (entry + name) * entries
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, len(directory), len(local), 0)
    path.write_bytes(local + directory + end)
    return path


@pytest.mark.parametrize("declared", [0xFFFF, 1], ids=["counted", "understated"])
def test_a_table_of_contents_too_long_is_refused_before_it_is_read(tmp_path: Path, declared: int):
    # zipfile holds ~500 bytes per entry in memory while it reads the table: 100 MB and seconds here.
    path = zip_listing(tmp_path / "entries.docx", 200_000, declared)
    started = time.monotonic()
    tracemalloc.start()
    try:
        message = refusal(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message.startswith("This Word document holds more than 10,000 files inside it")
    assert peak < 5 * MB
    assert time.monotonic() - started < 1


def test_pictures_and_other_parts_not_needed_for_text_are_never_inflated(tmp_path: Path):
    path = write_docx(tmp_path / "picture.docx", media=(FIXTURES / "pixel.png").read_bytes() * 40)
    # Break the picture's checksum: reading it would raise, so a clean parse proves it was skipped.
    data = bytearray(path.read_bytes())
    central = data.rindex(b"word/media/image1.png") - 46  # its table-of-contents entry; the name follows 46 bytes
    data[central + 16 : central + 20] = b"\x00\x00\x00\x00"  # the checksum zipfile verifies
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as package, pytest.raises(zipfile.BadZipFile):
        package.read("word/media/image1.png")
    (page,) = list(parsers.parse(path, path.name))
    assert page.text.startswith("# Northwind Employee Handbook\n\nThis handbook explains")
    assert "\n## Parental leave\n\nParental leave is 16 weeks" in page.text  # styles are still read


def test_a_normal_word_document_with_a_picture_parses_as_before(tmp_path: Path):
    path = write_docx(tmp_path / "picture.docx", media=(FIXTURES / "pixel.png").read_bytes())
    (page,) = list(parsers.parse(path, path.name))
    (expected,) = list(parsers.parse(FIXTURES / "handbook.docx", "handbook.docx"))
    assert page.text == expected.text


def test_a_part_that_understates_its_size_is_not_inflated_past_it(tmp_path: Path):
    # The table of contents says word/document.xml is 4 kB; its data inflates to 100 MB.
    path = tmp_path / "liar.docx"
    with (
        zipfile.ZipFile(FIXTURES / "handbook.docx") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target,
    ):
        for info in source.infolist():
            if info.filename != "word/document.xml":
                target.writestr(info.filename, source.read(info))
        with target.open("word/document.xml", "w") as stream:
            stream.write(b"<w:document>")
            for _ in range(100):
                stream.write(b" " * MB)
    data = bytearray(path.read_bytes())
    central = data.rindex(b"word/document.xml") - 46
    data[central + 24 : central + 28] = (4000).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        message = refusal(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message == parsers.DAMAGED_DOCX
    assert peak < 20 * MB


# --- CSV ------------------------------------------------------------------------------


def test_a_csv_cell_over_the_size_limit_is_named_as_such(tmp_path: Path):
    path = tmp_path / "big-cell.csv"
    path.write_bytes(b"name,note\nAda," + b"x" * (2 * MB) + b"\nGrace,short\n")
    assert refusal(path) == (
        "A single cell in this CSV file, on line 2, is longer than 131,072 characters, the most Docent reads "
        "in one cell. Shorten it, or save that text as a document of its own."
    )


def test_a_quote_that_is_never_closed_is_still_named_as_such(tmp_path: Path):
    path = tmp_path / "broken.csv"
    # Unclosed, the quote swallows the rest of the file into one cell, which outgrows the cell limit.
    path.write_bytes(b'name,note\nAda,"never closed\n' + b"x" * (2 * MB) + b"\nGrace,short\n")
    assert refusal(path) == (
        "This CSV file has a quote that is never closed, in the row that starts on line 2. Fix it and upload it again."
    )


def test_a_wide_csv_that_grows_fifty_times_when_labelled_is_refused_early(tmp_path: Path):
    # 2,000 columns with 100-character names, one-letter values: 1.2 MB that would make 60 million characters.
    names = ",".join(f"{'how satisfied are you with ' * 4}item {number:04}" for number in range(2000))
    path = tmp_path / "survey.csv"
    path.write_text(names + "\n" + "\n".join([",".join("x" * 2000)] * 280) + "\n")
    assert path.stat().st_size < 2 * MB
    assert refusal(path) == (
        "With each value labelled by its column name, this CSV file makes more than 50 million characters of text, "
        "more than Docent indexes from one file. Split it into smaller files (fewer rows or columns) and upload them."
    )


# --- Web pages ------------------------------------------------------------------------


def test_a_web_page_of_many_tiny_elements_is_read_whole_and_quickly(tmp_path: Path):
    # Boilerplate detection merges adjacent <i> tags in quadratic time and memory: 15 s and 900 MB for this page.
    path = tmp_path / "italics.html"
    path.write_text("<!doctype html><html><body><p>" + "<i>a</i>" * 40_000 + "</p></body></html>")
    started = time.monotonic()
    (page,) = list(parsers.parse(path, path.name))
    assert time.monotonic() - started < 5
    assert page.text == "a" * 40_000


# --- The real pipeline ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_docx_bomb_fails_plainly_without_growing_the_worker(celery_worker, owner_api, bot, docx_bomb: Path):
    with PeakMemory(celery_worker.process.pid) as memory:
        response = owner_api.post(
            f"/api/v1/bots/{bot.id}/documents", {"file": SimpleUploadedFile("handbook.docx", docx_bomb.read_bytes())}
        )
        (created,) = response.json()
        document = wait_until_final(created["id"])
    print(f"worker peak growth {memory.growth / MB:.0f} MB, tree peak {memory.total_peak / MB:.0f} MB")
    assert document.status == "failed"
    assert document.error.startswith("This Word document unpacks to 1,024 MB, more than the 200 MB Docent accepts.")
    assert memory.growth < 150 * MB
