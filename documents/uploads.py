"""Receiving uploaded files: to temporary files on disk, at most DOCENT_MAX_FILES_PER_UPLOAD.

Installed as the only FILE_UPLOAD_HANDLERS entry, so a request with a thousand files
(people drop whole folders) holds a thousand temporary files, not a thousand files in
memory. A request with more files than allowed, or whose files the temporary directory
can't hold, is not read further; the reason is left on the request as
`request.upload_refusal` for documents.services.uploaded_files to raise, so the view
answers it like any refused upload (JSON on the API, a message in the drop zone) rather
than with Django's HTML "Bad Request".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from documents import filenames, services

logger = logging.getLogger(__name__)

# Descriptors the process needs besides the upload's temporary files (database, broker, sockets).
SPARE_FILE_DESCRIPTORS = 256


class ReceivedFile(TemporaryUploadedFile):
    """A temporary upload that keeps the client's whole file name.

    Django's UploadedFile cuts names at 255 characters; Docent keeps the name for
    display and shortens only the stored file's name (documents.filenames). The
    temporary file itself is named after the extension alone, which always fits.
    """

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        _, extension = filenames.split_extension(name)
        super().__init__("upload" + extension, content_type, size, charset, content_type_extra)
        # The multipart parser already reduced the name to its last part without control characters.
        self._name = os.path.basename(name)


class UploadHandler(FileUploadHandler):
    """Stream each uploaded file to a temporary file; stop at the file limit or a disk error."""

    def __init__(self, request=None):
        super().__init__(request)
        self.files_started = 0
        _allow_open_files(settings.DOCENT_MAX_FILES_PER_UPLOAD + SPARE_FILE_DESCRIPTORS)

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.files_started += 1
        if self.files_started > settings.DOCENT_MAX_FILES_PER_UPLOAD:
            self._refuse(services.TooManyFiles(services.too_many_files_reason()))
        try:
            self.file = ReceivedFile(self.file_name, self.content_type, 0, self.charset, self.content_type_extra)
        except OSError as exc:
            self._refuse_for(exc)

    def receive_data_chunk(self, raw_data, start):
        try:
            self.file.write(raw_data)
        except OSError as exc:
            self._refuse_for(exc)

    def file_complete(self, file_size):
        try:
            self.file.seek(0)  # flushes the last buffered block, which may not fit either
        except OSError as exc:
            self._refuse_for(exc)
        self.file.size = file_size
        return self.file

    def upload_interrupted(self):
        if file := getattr(self, "file", None):
            with contextlib.suppress(OSError):
                file.close()  # deletes the temporary file

    def _refuse_for(self, exc: OSError) -> None:
        logger.warning("Could not receive an upload into %s: %r", settings.FILE_UPLOAD_TEMP_DIR, exc)
        self._refuse(
            services.UploadNotReceived(
                "The server has no room to receive these files right now. "
                "Try again later, or ask an administrator to free some space."
            )
        )

    def _refuse(self, refusal: services.UploadRefused) -> None:
        if self.request is not None:
            self.request.upload_refusal = refusal
        # Read (and drop) the rest of the body so that the answer reaches the client.
        raise StopUpload(connection_reset=False)


@functools.cache
def _allow_open_files(needed: int) -> None:
    """Raise this process's open-file limit so `needed` descriptors fit, as far as the hard limit allows.

    Each received file stays open until the request ends, and a common default soft
    limit (1,024) is barely the default DOCENT_MAX_FILES_PER_UPLOAD.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
