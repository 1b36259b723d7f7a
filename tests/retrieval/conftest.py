import threading

import pytest

from tests.chat_server import ChatServer


@pytest.fixture
def chat_server():
    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def index_texts():
    """Put texts straight into a bot's active chunks (real embeddings), one document each, page 1."""
    from django.core.files.base import ContentFile

    from documents.models import Chunk, Document, DocumentVersion
    from retrieval.services import embed_texts

    def index(bot, texts: dict[str, str]) -> dict[str, int]:
        chunk_ids = {}
        vectors = embed_texts(list(texts.values()))
        for (name, text), vector in zip(texts.items(), vectors, strict=True):
            document = Document.objects.create(bot=bot, filename=name, status="ready")
            version = DocumentVersion(document=document, number=1, content_hash="0" * 64, size_bytes=len(text))
            version.file.save(name, ContentFile(text.encode()), save=False)
            version.save()
            document.current_version = document.active_version = version
            document.chunk_count = 1
            document.save()
            chunk = Chunk.objects.create(
                bot=bot, document=document, version=version, index_version=bot.index_version, ordinal=0, page=1,
                text=text, token_count=len(text.split()), embedding=vector, dimensions=len(vector), is_active=True,
            )  # fmt: skip
            chunk_ids[name] = chunk.id
        return chunk_ids

    return index
