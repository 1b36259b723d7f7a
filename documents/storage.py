"""Where uploaded files are kept: Django's storage API, so any backend configured in STORAGES works.

Docent reads, writes and deletes stored files only through the storage (`open`, `save`,
`delete`), never by path, so the default local folder (MEDIA_ROOT) and an S3-compatible
bucket (django-storages, settings DOCENT_S3_*) behave alike. The parsers need a real file
they can seek around in; `local_copy` gives them one.
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
        with stored.open("rb") as source:
            shutil.copyfileobj(source, copy, length=1024 * 1024)
        copy.flush()
        yield Path(copy.name)
