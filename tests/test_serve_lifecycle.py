"""`manage.py serve` stops all it started on SIGTERM, SIGHUP and Ctrl-C, and recovers from a crash.

Each test runs the real commands as subprocesses on a fresh data directory, with DATABASE_URL
and CELERY_BROKER_URL unset, so they start their own embedded Postgres and Redis there (apart
from the test session's own). Processes are found the way an operator would: by their command
line, working directory and open files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from config.embedded import _redis_socket_path
from config.management.commands.serve import WORKER_NICENESS

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("worker", "children", "postgres", "redis")


def environment(data_dir: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    return env | {
        "DOCENT_DATA_DIR": str(data_dir),
        "DOCENT_WORKER_CONCURRENCY": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_of(data_dir: Path) -> dict[str, list[psutil.Process]]:
    """The Celery workers (and their children), Postgres and Redis servers of a data directory."""
    data_dir = data_dir.resolve()
    found: dict[str, list[psutil.Process]] = {kind: [] for kind in KINDS}
    celery = []
    for process in psutil.process_iter(["name", "cmdline", "ppid"]):
        try:
            if not alive(process):
                continue
            command = " ".join(process.info["cmdline"] or [])
            if process.info["name"] == "postgres" and f"-D {data_dir}/postgres" in command:
                found["postgres"].append(process)  # the postmaster; its backends don't name the directory
            elif process.info["name"] == "redis-server" and Path(process.cwd()) == data_dir:
                found["redis"].append(process)
            elif "celery" in command and "worker" in process.info["cmdline"] and str(data_dir) in command:
                celery.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = {process.pid for process in celery}
    # A worker's pool processes and embedded beat are its children, with the worker's command line.
    found["worker"] = [process for process in celery if process.info["ppid"] not in pids]
    found["children"] = [process for process in celery if process.info["ppid"] in pids]
    return found


def counts(found: dict[str, list[psutil.Process]]) -> dict[str, int]:
    """How many workers, beats, Postgres and Redis servers run.

    serve's worker has one pool process (DOCENT_WORKER_CONCURRENCY=1 below), so any other child
    of a worker is its beat: counted so, a beat is found whether or not it took a lock.
    """
    return {
        "workers": len(found["worker"]),
        "beats": len(found["children"]) - len(found["worker"]),
        "postgres": len(found["postgres"]),
        "redis": len(found["redis"]),
    }


ONE_OF_EACH = {"workers": 1, "beats": 1, "postgres": 1, "redis": 1}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)
    return result


class Serve:
    """A `manage.py serve` subprocess in its own session, as a terminal, Docker or systemd runs it."""

    def __init__(self, data_dir: Path, log_dir: Path, *arguments: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_dir / f"serve-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(self.port), *arguments],
                cwd=ROOT,
                env=environment(data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def answers_http(self) -> bool:
        assert self.process.poll() is None, f"serve exited with {self.process.returncode}:\n{self.log}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2)
        except urllib.error.HTTPError:
            pass  # any answer means it is up
        except OSError:
            return False
        return True

    def wait_until_up(self) -> dict[str, list[psutil.Process]]:
        """Wait until the site answers and the worker, beat, Postgres and Redis all run."""
        wait_for(self.answers_http, 90, f"serve to answer on port {self.port}")

        def everything_runs():
            running = processes_of(self.data_dir)
            return running if all(count >= 1 for count in counts(running).values()) else None

        return wait_for(everything_runs, 60, "the worker, beat, Postgres and Redis")


@pytest.fixture
def data_dir():
    """A fresh data directory of the test's own.

    Not under tmp_path: Postgres runs as another user when we are root, and every pytest session
    that starts resets its base temporary directory (pytest-of-<user>) to mode 700, locking a running Postgres out.
    """
    directory = Path(tempfile.mkdtemp(prefix="docent-serve-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_serve(data_dir, tmp_path):
    """Start serve on the test's fresh data directory; whatever still runs at the end is killed."""
    started: list[Serve] = []

    def start(*arguments: str) -> Serve:
        started.append(Serve(data_dir, tmp_path, "--no-warm-up", *arguments))
        return started[-1]

    yield start
    for serve in started:
        if serve.process.poll() is None:
            os.killpg(serve.process.pid, signal.SIGKILL)
            serve.process.wait()
    left = processes_of(data_dir)
    for worker in left["worker"]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # its pool and beat are in its process group
    for process in left["postgres"]:
        process.send_signal(signal.SIGQUIT)  # Postgres's immediate shutdown, backends included
    for process in left["redis"]:
        process.kill()
    psutil.wait_procs(left["postgres"], timeout=10)


def assert_all_stop(processes: dict[str, list[psutil.Process]], data_dir: Path, timeout: float = 30):
    everything = [process for kind in KINDS for process in processes[kind]]
    wait_for(lambda: not any(alive(process) for process in everything), timeout, "everything to stop")
    assert processes_of(data_dir) == {kind: [] for kind in KINDS}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_to_serve_stops_its_worker_beat_postgres_and_redis(start_serve, data_dir, signum):
    serve = start_serve()
    running = serve.wait_until_up()
    assert counts(running) == ONE_OF_EACH
    # The worker and its pool run below the web server's CPU priority.
    web = psutil.Process(serve.process.pid).nice()
    workers = {process.nice() for process in running["worker"] + running["children"]}
    assert workers == {min(19, web + WORKER_NICENESS)}

    serve.process.send_signal(signum)

    returncode = serve.process.wait(timeout=45)
    assert_all_stop(running, data_dir)
    assert "Docent stopped." in serve.log
    if signum != signal.SIGINT:  # Ctrl-C ends with KeyboardInterrupt's status, as it always has
        assert returncode == 0, serve.log


def test_serve_after_a_crash_stops_the_worker_left_behind_and_runs_one_worker_and_one_beat(start_serve, data_dir):
    crashed = start_serve()
    before = crashed.wait_until_up()
    crashed.process.kill()  # SIGKILL: no handler runs, so the worker and the servers stay behind
    crashed.process.wait()
    orphans = before["worker"] + before["children"]
    assert all(alive(process) for process in orphans)

    serve = start_serve()
    after = serve.wait_until_up()

    assert not any(alive(process) for process in orphans)
    assert "left running by a serve that did not exit" in serve.log
    time.sleep(3)  # a second beat or worker would have had time to start by now
    running = processes_of(data_dir)
    assert counts(running) == ONE_OF_EACH
    assert running["worker"] == after["worker"]
    # The embedded Postgres and Redis of the crashed serve were reused, not started twice.
    assert running["postgres"] == before["postgres"]
    assert running["redis"] == before["redis"]

    # The crashed serve never unregistered from the embedded servers: they must stop all the same.
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=45) == 0, serve.log
    assert_all_stop(running, data_dir)


def test_a_second_serve_or_beat_of_the_same_installation_refuses_to_start(start_serve, data_dir, tmp_path):
    first = start_serve()
    running = first.wait_until_up()

    second = start_serve()
    assert second.process.wait(timeout=60) != 0
    assert "Docent is already running from" in second.log
    assert processes_of(data_dir)["worker"] == running["worker"]

    # A celery beat started by hand on the same directory, as for a scaled-out installation.
    beat = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--schedule", str(tmp_path / "second-schedule")],
        cwd=ROOT,
        env=environment(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert beat.returncode != 0
    assert "Refusing to start celery beat: another beat" in beat.stdout + beat.stderr
    assert processes_of(data_dir)["children"] == running["children"]  # the first beat still runs

    # A beat on another machine: its own data directory, the installation's database and broker.
    elsewhere = environment(tmp_path / "another-machine") | {
        "DATABASE_URL": f"postgresql://postgres@{quote(str(data_dir / 'postgres'), safe='')}/docent",
        "CELERY_BROKER_URL": "redis+socket://" + _redis_socket_path(data_dir),
    }
    beat = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--schedule", str(tmp_path / "third-schedule")],
        cwd=ROOT,
        env=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert beat.returncode != 0, beat.stdout + beat.stderr
    assert "Refusing to start celery beat: another beat (docent beat, pid" in beat.stdout + beat.stderr
    assert processes_of(data_dir)["children"] == running["children"]

    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=45) == 0, first.log
    assert_all_stop(running, data_dir)


def test_the_one_web_process_borrows_database_connections_from_a_pool(start_serve, data_dir):
    """serve's own web process reuses pooled connections instead of opening one per request."""
    import psycopg

    serve = start_serve("--no-worker")
    wait_for(serve.answers_http, 90, f"serve to answer on port {serve.port}")

    def pooled_backends() -> set[int]:
        for _ in range(6):  # each probe queries the database (and answers 503: no worker, no broker)
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{serve.port}/readyz", timeout=10).read()
        with psycopg.connect(host=str(data_dir / "postgres"), user="postgres", dbname="docent") as database:
            # A connection back in the pool last ran the pool's reset (config.database).
            rows = database.execute(
                "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_advisory_unlock_all()'"
                " AND state = 'idle' AND pid <> pg_backend_pid()"
            ).fetchall()
        return {pid for (pid,) in rows}

    first, second = pooled_backends(), pooled_backends()
    assert 1 <= len(first) <= 4 and first & second  # kept, and lent again
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=45) == 0, serve.log
