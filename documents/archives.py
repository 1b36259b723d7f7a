"""ZIP archives uploaded to be unpacked: each readable file inside becomes a document of its own.

An uploaded ZIP that is not an Office package (a .docx is a ZIP too) is opened at
upload time, so the person who dropped it learns at once what was added and what was
not. Its members keep their folders as a prefix of the document's name
("policies/leave.pdf"). The limits are the ones Word documents have (ZipLimits:
unpacked size, number of members, compression ratio), checked on the end record and
the table of contents before any member is inflated, because a 1 MB archive can
inflate to gigabytes. Archives inside the archive are not unpacked (that would
multiply the limits); they are listed with the other members that were left out.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

from documents import filenames, parsers
from documents.parsers.common import MB, SNIFF_BYTES

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# Names an Office package (OOXML or OpenDocument) always holds; a ZIP with one is a document, not an archive.
_PACKAGE_MARKERS = ("[Content_Types].xml", "mimetype")
# Other archive formats: not unpacked inside an archive either.
ARCHIVE_EXTENSIONS = {".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst"}
# What operating systems add to archives on their own: not the person's documents, so not listed either.
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
NESTED_ARCHIVE = "An archive inside the archive is not unpacked; unzip it and upload its files"
DAMAGED_ARCHIVE = "This ZIP archive is damaged and can't be unpacked. Zip the files again and upload the new archive."


class ArchiveRefused(Exception):
    """The archive as a whole can't be unpacked (damaged, or over the limits); the message says why."""


@dataclass(frozen=True)
class LeftOut:
    """A member of an archive that did not become a document, and why."""

    name: str
    reason: str


class ArchiveMember(TemporaryUploadedFile):
    """A member unpacked to a temporary file, named with its folders ("policies/leave.pdf").

    Django's UploadedFile keeps only the last part of a name; a member keeps the whole
    path, which becomes its document's name (documents.services.document_name).
    """

    def __init__(self, path: str, archive: str, size: int):
        _, extension = filenames.split_extension(path)
        super().__init__("member" + extension, "application/octet-stream", size, None)
        self._name = path
        self.archive = archive


def is_archive(upload: UploadedFile, head: bytes) -> bool:
    """True for a ZIP that is an archive of files rather than a Word (or other Office) document.

    Content decides, not the name: a .docx renamed .zip is still a document. A ZIP named
    .docx is always left to the Word reader, whose refusals name the problem. A ZIP named
    .zip is an archive even when damaged, so that the refusal says so.
    """
    extension = PurePosixPath(upload.name or "").suffix.lower()
    if not head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)) or extension == ".docx":
        return False
    try:
        names = _member_names(upload.file)
    except (ArchiveRefused, zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError):
        return extension == ".zip"
    finally:
        upload.seek(0)
    return not any(marker in names for marker in _PACKAGE_MARKERS) and "word/document.xml" not in names


def _member_names(handle: IO[bytes]) -> set[str]:
    with zipfile.ZipFile(handle) as package:
        return set(package.NameToInfo)


def unpack(
    upload: UploadedFile, limits: parsers.ZipLimits, max_member_bytes: int
) -> tuple[list[ArchiveMember], list[LeftOut]]:
    """The archive's readable members as temporary files, and the members left out with their reasons.

    Raises ArchiveRefused when the archive is damaged or over `limits`. The caller
    closes the members (which deletes their temporary files) once they are stored; on
    an exception, those unpacked so far are closed here.
    """
    members: list[ArchiveMember] = []
    left_out: list[LeftOut] = []
    handle = upload.file
    handle.seek(0)
    try:
        if parsers.declares_too_many_entries(handle, limits):
            raise ArchiveRefused(_too_many_members(limits))
        try:
            package = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
            raise ArchiveRefused(DAMAGED_ARCHIVE) from exc
        with package:
            infos = package.infolist()
            if over := parsers.zip_over_limit(infos, limits):
                raise ArchiveRefused(_refusal(over, limits))
            for info, path in _named_members(infos):
                outcome = _unpack_member(package, info, path, upload.name, max_member_bytes)
                (members if isinstance(outcome, ArchiveMember) else left_out).append(outcome)
    except BaseException:
        for member in members:
            with contextlib.suppress(OSError):
                member.close()
        raise
    finally:
        handle.seek(0)
    return members, left_out


def _named_members(infos: list[zipfile.ZipInfo]) -> Iterator[tuple[zipfile.ZipInfo, str]]:
    """Members that are files of the person's, with their cleaned paths; folders and system files are skipped."""
    for info in infos:
        if info.is_dir():
            continue
        path = member_path(info.filename)
        parts = path.split("/")
        if parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1].lower() in _SYSTEM_FILES:
            continue
        yield info, path


def member_path(raw: str) -> str:
    """A member's name as a document name: folders joined by "/", never absolute, no "..", no control characters."""
    parts = []
    for part in raw.replace("\\", "/").split("/"):
        part = "".join(char for char in part if char.isprintable()).strip()
        if part in ("", ".", ".."):
            continue
        if len(parts) == 0 and len(part) == 2 and part[1] == ":":
            continue  # a Windows drive letter
        parts.append(part)
    return "/".join(parts) or "untitled"


def _unpack_member(
    package: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, archive: str, max_member_bytes: int
) -> ArchiveMember | LeftOut:
    extension = PurePosixPath(path).suffix.lower()
    if extension in ARCHIVE_EXTENSIONS:
        return LeftOut(path, NESTED_ARCHIVE)
    if info.flag_bits & 0x1:
        return LeftOut(path, "It is password-protected; unzip it, remove the password and upload it on its own")
    if info.file_size > max_member_bytes:
        return LeftOut(path, f"It is {info.file_size / MB:.1f} MB; the limit is {max_member_bytes // MB} MB per file")
    member = ArchiveMember(path, archive, info.file_size)
    try:
        with package.open(info) as stream:
            while block := stream.read(MB):
                member.write(block)
        member.seek(0)
        head = member.read(SNIFF_BYTES)
        member.seek(0)
        reason = _unreadable_reason(member, head, path)
    except NotImplementedError:
        reason = "It is compressed with a method Docent can't unpack; zip it again with ordinary compression"
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, OSError):
        reason = "It is damaged inside the archive and can't be unpacked"
    if reason:
        member.close()
        return LeftOut(path, reason)
    return member


def _unreadable_reason(member: ArchiveMember, head: bytes, path: str) -> str:
    """Why Docent can't read this member, or "" when it can (or the parser will say more)."""
    if is_archive(member, head):
        return NESTED_ARCHIVE
    if not head.strip():
        return ""  # an empty file fails with its reason like any other upload
    try:
        parsers.sniff_kind(head, path)
    except parsers.ParseError as exc:
        return short_reason(str(exc))
    return ""


def short_reason(reason: str) -> str:
    """A refusal without the list of supported formats, which the archive's summary gives once."""
    return reason.split(" Supported: ")[0]


def _refusal(over: parsers.ZipOverLimit, limits: parsers.ZipLimits) -> str:
    if over.limit == "unpacked":
        return (
            f"This ZIP archive unpacks to {over.unpacked_bytes // MB:,} MB, more than the "
            f"{limits.max_unzipped_bytes // MB:,} MB Docent accepts. Split it into smaller archives."
        )
    if over.limit == "ratio" and over.entry is not None:
        return (
            f"This ZIP archive is packed unusually tightly: {over.entry.filename} unpacks to "
            f"{over.ratio:,} times its stored size, and Docent accepts at "
            f"most {limits.max_ratio:,}. Files made to exhaust servers look like this; if yours is genuine, "
            "upload the files inside it one by one."
        )
    return _too_many_members(limits)


def _too_many_members(limits: parsers.ZipLimits) -> str:
    return (
        f"This ZIP archive holds more than {limits.max_parts:,} files, the most Docent unpacks. "
        "Split it into smaller archives."
    )
