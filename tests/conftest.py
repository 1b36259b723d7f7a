"""Shared fixtures: three users (owner, member, outsider), API clients, and a real Celery worker.

The worker is a separate `celery worker` process on the embedded Redis, pointed at
the test database, exactly as `make run` starts it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import Client

FIXTURES = Path(__file__).parent / "fixtures"


def _shared_data() -> Path:
    """The shared corpus (BEIR sets, 268 real documents) that slow tests and benchmarks read.

    It is not part of the repository: $DOCENT_SHARED_DATA names it, or a `shared/data`
    folder beside the checkout. Tests that need it skip with a reason when it is absent.
    """
    if configured := os.environ.get("DOCENT_SHARED_DATA"):
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
ROOT = Path(__file__).resolve().parents[1]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The default hasher is slow on purpose; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_builder(user):
    """Give `user` the builder role: the permission to create bots."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="add_bot", content_type__app_label="bots"))
    return type(user).objects.get(pk=user.pk)  # fresh instance: permissions are cached per object


@pytest.fixture
def owner(django_user_model):
    return make_builder(django_user_model.objects.create_user("olivia", password="owner-pass-123"))


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("mike", password="member-pass-123")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("oscar", password="outsider-pass-123")


@pytest.fixture
def bot(owner):
    from bots import services

    return services.create_bot(owner, "Handbook", "Answers questions about the employee handbook.")


def api_client_for(user) -> Client:
    from bots.models import ApiToken

    _, key = ApiToken.issue(user)
    return Client(headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def owner_api(owner) -> Client:
    return api_client_for(owner)


@pytest.fixture
def outsider_api(outsider) -> Client:
    return api_client_for(outsider)


def database_url(settings_dict: dict) -> str:
    host = settings_dict.get("HOST") or ""
    if host.startswith("/"):
        host = quote(host, safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    return f"postgresql://{settings_dict['USER']}{password}@{host}{port}/{settings_dict['NAME']}"


class Worker:
    """A real `celery worker` process (with its beat, which runs the sweeper) for the test database."""

    def __init__(self, env: dict, log_dir: Path, name: str = "test", beat: bool = True):
        self.env = env
        self.log_dir = log_dir
        self.name = name  # in its Celery node name, so workers of one test run apart
        self.beat = beat  # one beat per installation: a second worker runs without
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.log_dir / f"worker-{self.starts}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--queues", "ingest,default", "--concurrency", "1",
            "--without-gossip", "--without-mingle", "--hostname", f"{self.name}-{os.getpid()}-{self.starts}@%h",
            "--loglevel", "INFO",
        ]  # fmt: skip
        if self.beat:
            command += ["--beat", "--schedule", str(self.log_dir / "beat-schedule")]
        if self.starts == 1:
            command.append("--purge")  # tasks left over from an earlier test run point at nothing
        with open(log_path, "wb") as log:
            # Its own session, so kill() reaches the pool children too.
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while " ready." not in log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"Celery worker did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log(self) -> str:
        """What the worker started last has logged so far."""
        return (self.log_dir / f"worker-{self.starts}.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes, as an out-of-memory kill would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def session_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker process for the session, started on first use (through celery_worker)."""
    from django.conf import settings
    from django.db import connection

    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DOCENT_DATA_DIR": str(settings.DATA_DIR),
        "DOCENT_LOG_LEVEL": "INFO",
        # Short enough that the sweeper rescues a killed worker's document within a test.
        "DOCENT_STALE_SECONDS": "8",
        "DOCENT_SWEEP_SECONDS": "2",
        # A turn per stage or embedding batch, so tests of fair turns need no huge files.
        "DOCENT_INGEST_SLICE_SECONDS": "0",
        # Beat's background fill of sentence vectors would spend the suite's CPU on every test's
        # chunks; the test that needs it sends the task itself.
        "DOCENT_SENTENCE_FILL_SECONDS": "3600",
    }
    worker = Worker(env, tmp_path_factory.mktemp("worker"))
    yield worker
    worker.stop()


@contextlib.contextmanager
def worker_instead(session_worker: Worker, env: dict, log_dir: Path, **options):
    """A worker of the test's own, with `env` on top of the session worker's, running in its place.

    The next test that needs the session's worker starts it again (celery_worker)."""
    worker = Worker({**session_worker.env, **env}, log_dir, **options)
    session_worker.stop()
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def celery_worker(session_worker):
    """The session's worker, running; tests may kill and restart it.

    A test may also leave it stopped (to keep messages waiting, or to make way for another
    worker): it is started again here, by the next test that needs it. Restarting it in the
    stopping test's own teardown raced that test's database flush: the new beat's first
    sweep and the flush's TRUNCATE could deadlock.
    """
    if not session_worker.running:
        session_worker.start()
    return session_worker


def wait_until_final(document_id: int, timeout: float = 120):
    """Poll the database until the document is ready or failed; returns it."""
    from documents.models import Document

    deadline = time.monotonic() + timeout
    while True:
        document = Document.objects.get(pk=document_id)
        if document.is_final:
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"{document.filename} still {document.status} after {timeout}s")
        time.sleep(0.25)


def index_texts_into(bot, texts: dict[str, str]) -> dict[str, int]:
    """Put texts straight into a bot's active chunks (real embeddings), one document each, page 1.

    Content without a Celery worker, for tests of search and answers; returns name → chunk id.
    """
    from django.core.files.base import ContentFile

    from documents.models import Chunk, Document, DocumentVersion
    from retrieval.services import embed_texts

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


@pytest.fixture
def index_texts():
    return index_texts_into


@pytest.fixture
def chat_server():
    """A local server speaking the OpenAI chat-completions protocol (tests/chat_server.py)."""
    import threading

    from tests.chat_server import ChatServer

    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def answer_with_chat_server(bot, chat_server):
    """Make `bot` answer with a language model: the local chat server as its OpenAI-compatible provider."""
    from retrieval.models import LLMProvider
    from tests.chat_server import API_KEY, MODEL

    provider = LLMProvider(name="local", base_url=chat_server.base_url, model_names=[MODEL])
    provider.set_api_key(API_KEY)
    provider.save()
    bot.provider, bot.llm_model = provider, MODEL
    bot.save()
    return bot


def finished_evaluation(bot):
    """A test set of `bot` with one finished run, and a failed fine-tune: objects the evaluation URLs name."""
    from evaluation import services as evaluation

    test_set = evaluation.create_test_set(bot, "Basics", [{"question": "When?", "expected_documents": ["canteen.txt"]}])
    run = evaluation.start_run(test_set)
    run.start(1)
    run.finish({})
    fine_tune = evaluation.start_fine_tune(bot)
    fine_tune.fail("Stopped.")
    return test_set, run, fine_tune
