"""Where uploaded files are kept: Django's storage API, so any backend configured in STORAGES works.

Docent reads, writes and deletes stored files only through the storage (`open`, `save`,
`delete`), never by path, so the default local folder (MEDIA_ROOT) and an S3-compatible
bucket (django-storages, settings DOCENT_S3_*) behave alike. The parsers need a real file
they can seek around in; `local_copy` gives them one, and says in OSError terms when the
stored file is gone or the storage unreachable.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class LocalStorage(FileSystemStorage):
    """The default: files under MEDIA_ROOT, and no folder left empty by a deletion.

    Documents are stored in a folder per bot and per document; on a filesystem those
    folders would pile up empty as documents come and go (object storage has no folders).
    """

    def delete(self, name: str) -> None:
        super().delete(name)
        # The parents inside a top-level folder (documents/bot-1/doc-2, then documents/bot-1);
        # rmdir removes only an empty one, so a folder a concurrent upload just filled stays.
        parents = PurePosixPath(name).parents
        for folder in list(parents)[:-2]:
            try:
                Path(self.path(str(folder))).rmdir()
            except OSError:
                return


@contextlib.contextmanager
def local_copy(stored) -> Iterator[Path]:
    """A temporary local copy of a stored file (a FieldFile), removed when the block ends.

    Read through the storage, so it works for object storage too; the copy keeps the
    stored name's extension and lives in FILE_UPLOAD_TEMP_DIR, on Docent's own disk.
    """
    suffix = PurePosixPath(stored.name).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=settings.FILE_UPLOAD_TEMP_DIR) as copy:
        try:
            with stored.open("rb") as source:
                shutil.copyfileobj(source, copy, length=1024 * 1024)
        except OSError:
            raise
        except Exception as exc:
            raise _read_error(exc) from exc
        copy.flush()
        yield Path(copy.name)


def _read_error(exc: Exception) -> Exception:
    """An object store's error in the terms ingestion acts on.

    FileNotFoundError: the object is gone (its document was deleted meanwhile). ConnectionError:
    the store can't be reached or failed on its side, so the task is retried later rather than
    the document failed. Anything else stays as it is.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
            return FileNotFoundError(f"The stored file is gone: {exc}")
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            return ConnectionError(f"The file storage failed: {exc}")
    if isinstance(exc, BotoCoreError):  # unreachable, timed out, no credentials
        return ConnectionError(f"The file storage can't be reached: {exc}")
    return exc
