"""Settings for the chat site: one file, read from the environment, with dev-safe defaults.

Every knob an operator may turn is an environment variable documented in README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from chat.providers import catalog

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
# The dev key only works with DEBUG on; production must set DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or ("dev-insecure-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (DJANGO_DEBUG=0): a long random "
        "string (50+ characters), e.g. from "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "chat",
]

# Every middleware here is async-capable, so requests never hop onto the database thread
# (static files are served by chatsite/static_asgi.py, outside this chain).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page's language: the one chosen with the switch (the django_language cookie set by
    # set_language), else the browser's Accept-Language, else English (see LANGUAGES below).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = "chatsite.wsgi.application"

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
                "django.template.context_processors.csp",  # {% csp_nonce_attr %}, csp_nonce
                "django.template.context_processors.i18n",  # LANGUAGE_CODE, LANGUAGES
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite tuned for a concurrent web app (tests/test_sqlite.py reads the pragmas back):
    # write-ahead logging, so readers never wait for the writer and a commit is an append, not a
    # rewrite behind two fsyncs; synchronous=NORMAL, so a commit does not fsync at all (WAL stays
    # consistent; a power cut may lose the last commits, never corrupt the file); writers wait
    # for the lock (busy_timeout, and `timeout` for Python's own wait) instead of failing; and
    # IMMEDIATE transactions take the write lock when they begin, so two transactions that read
    # then write cannot deadlock and fail with "database is locked" half-way.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=20000;"
                "PRAGMA temp_store=MEMORY;"
                "PRAGMA cache_size=-20000"
            ),
        }
    )
    # One connection kept open per thread (the database calls of async code all run on one
    # thread): no connection and pragmas to set up for every call.
    DATABASES["default"]["CONN_MAX_AGE"] = 600
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool (psycopg_pool), not persistent connections: under ASGI each database
    # call may close its connection, and opening a PostgreSQL connection costs milliseconds
    # that a Stop request must not spend.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DATABASE_POOL_MIN", "2")),
        "max_size": int(os.environ.get("DATABASE_POOL_MAX", "10")),
        "timeout": 10,
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# Every UI string goes through Django's i18n; German ships beside English (locale/de, the compiled
# django.mo committed so no gettext is needed to run). The chat socket picks its language the same
# way (chat/ws/consumer.py).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Attachments (chat/files/): a private directory by default, never under a public URL (they are
# served only by chat/web/attachments.py, to their owner). With several servers, any
# S3-compatible store through django-storages (`pip install -e '.[s3]'`): set
# CHAT_ATTACHMENTS_S3_BUCKET (and CHAT_ATTACHMENTS_S3_ENDPOINT for a store other than AWS;
# credentials from the usual AWS_* variables).
CHAT_ATTACHMENTS_DIR = Path(
    os.environ.get("CHAT_ATTACHMENTS_DIR", BASE_DIR / "var" / "attachments")
)
CHAT_ATTACHMENTS_S3_BUCKET = os.environ.get("CHAT_ATTACHMENTS_S3_BUCKET", "")
ATTACHMENTS_STORAGE: dict[str, Any] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {
        "location": CHAT_ATTACHMENTS_DIR,
        "file_permissions_mode": 0o600,
        "directory_permissions_mode": 0o700,
    },
}


def s3_attachments_storage(bucket: str, endpoint: str | None) -> dict[str, Any]:
    """The attachments storage in an S3-compatible bucket: private objects, never overwritten."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint or None,
            "location": "attachments",
            "default_acl": "private",
            "file_overwrite": False,
        },
    }


if CHAT_ATTACHMENTS_S3_BUCKET:
    ATTACHMENTS_STORAGE = s3_attachments_storage(
        CHAT_ATTACHMENTS_S3_BUCKET, os.environ.get("CHAT_ATTACHMENTS_S3_ENDPOINT")
    )
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "attachments": ATTACHMENTS_STORAGE,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- Security headers and CSP ---------------------------------------------------------------
# `manage.py check --deploy` is clean with DJANGO_DEBUG=0 (tests/test_security_headers.py).
# TLS ends at the reverse proxy: name the header it sets to say so (DJANGO_SECURE_PROXY_SSL_HEADER=
# X-Forwarded-Proto, trusted when its value is "https"), or the HTTPS redirect below loops and
# HSTS is never sent. Only behind a proxy that overwrites that header (README's nginx does).
_PROXY_SSL_HEADER = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", not DEBUG)
# HSTS (sent on HTTPS responses only): a year in production, off in development.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS") or (0 if DEBUG else 31536000))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is a commitment for the whole registrable domain, so it is opt-in; check --deploy
# warns (security.W021) whenever HSTS is on without it, so that one warning is silenced while
# preload is off on purpose.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response of the middleware chain (static files, served by
# chatsite/static_asgi.py, carry none). No inline script, no eval (htmx runs with allowEval
# false), no inline style attribute; connect-src 'self' covers the same-origin ws:/wss: socket.
# The one exception: a per-response nonce in style-src for <style nonce> blocks, used by the
# reply-metrics admin page and by Django's own admin and CSRF-failure templates.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# --- The model provider -------------------------------------------------------------------
# With no API key the offline demo provider answers, so a fresh checkout works without network.
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
CHAT_PROVIDER = os.environ.get("CHAT_PROVIDER", "anthropic" if ANTHROPIC_API_KEY else "demo")
# The default is the newest Sonnet the installed SDK names (chat/providers/catalog.py).
CHAT_MODEL = os.environ.get("CHAT_MODEL", catalog.DEFAULT_MODEL)
# The models a conversation may choose (comma-separated); the default model is always offered.
_MODELS = env_list("CHAT_MODELS", ",".join(catalog.OFFERED))
CHAT_MODELS = list(dict.fromkeys([CHAT_MODEL, *_MODELS]))
# Extended thinking for new conversations: a token budget (at least 1024), 0 = off. Each
# conversation's settings change it; a model that thinks adaptively gets an effort instead.
CHAT_THINKING_BUDGET = int(os.environ.get("CHAT_THINKING_BUDGET", "0"))
# Ask Anthropic to cache each request's conversation prefix (top-level cache_control), so a long
# conversation's history is billed at the cache-read rate on the next turn.
CHAT_PROMPT_CACHING = env_bool("CHAT_PROMPT_CACHING", True)
CHAT_MAX_SYSTEM_PROMPT_CHARS = 20000
CHAT_MAX_TOKENS = int(os.environ.get("CHAT_MAX_TOKENS", "4096"))
# Tokens are coalesced into at most one frame per this many seconds per reply.
CHAT_BATCH_INTERVAL = float(os.environ.get("CHAT_BATCH_INTERVAL", "0.03"))
# A streaming reply's text is saved this often, so a crash loses at most this much.
CHAT_CHECKPOINT_INTERVAL = float(os.environ.get("CHAT_CHECKPOINT_INTERVAL", "2.0"))
# Delay between words of the offline demo provider (about 40 tokens a second).
CHAT_DEMO_TOKEN_DELAY = float(os.environ.get("CHAT_DEMO_TOKEN_DELAY", "0.025"))
# A reply whose last page went away (closed, reloaded, network dropped) goes on this many seconds
# for a page to come back to it; then it is stopped (interrupted / disconnect). 0: at once.
CHAT_DISCONNECT_GRACE = float(os.environ.get("CHAT_DISCONNECT_GRACE", "10"))
# A page on another process renews its watch of a reply this often; a watch not renewed for
# three periods (its process died) no longer counts.
CHAT_WATCH_RENEW = float(os.environ.get("CHAT_WATCH_RENEW", "2"))
# How long a stop from elsewhere waits for the reply's owner to answer; silence means the
# owner's process is gone and the reply is closed from its last checkpoint.
CHAT_STOP_ANSWER_TIMEOUT = float(os.environ.get("CHAT_STOP_ANSWER_TIMEOUT", "2.0"))
# A streaming reply whose heartbeat is older than this is an orphan for the reaper.
CHAT_ORPHAN_AFTER = float(os.environ.get("CHAT_ORPHAN_AFTER", "10"))
# How often each server process runs the reaper.
CHAT_REAPER_INTERVAL = float(os.environ.get("CHAT_REAPER_INTERVAL", "30"))
# Each open socket re-joins its conversation's group this often, so a Redis that restarted
# (and forgot its groups) or a group entry that expired is repaired without a reconnect.
CHAT_GROUP_REFRESH = float(os.environ.get("CHAT_GROUP_REFRESH", "15"))
# A bearer token that may read /metrics (staff users may always read it); empty: staff only.
CHAT_METRICS_TOKEN = os.environ.get("CHAT_METRICS_TOKEN", "")
CHAT_MAX_MESSAGE_CHARS = int(os.environ.get("CHAT_MAX_MESSAGE_CHARS", "32000"))
# Attachments: bytes per file, files per message (chat/files/checks.py).
CHAT_MAX_ATTACHMENT_BYTES = int(os.environ.get("CHAT_MAX_ATTACHMENT_BYTES", str(10 * 1024 * 1024)))
CHAT_MAX_ATTACHMENTS = int(os.environ.get("CHAT_MAX_ATTACHMENTS", "5"))
# Files uploaded in the composer but never sent are deleted after this many seconds.
CHAT_UNSENT_ATTACHMENT_TTL = float(os.environ.get("CHAT_UNSENT_ATTACHMENT_TTL", str(24 * 3600)))
# Limits per user, checked when a reply starts (any process: they are counted in the database).
CHAT_MAX_CONCURRENT_REPLIES = int(os.environ.get("CHAT_MAX_CONCURRENT_REPLIES", "3"))
CHAT_MESSAGES_PER_MINUTE = int(os.environ.get("CHAT_MESSAGES_PER_MINUTE", "20"))
# Admission control (chat/replies/admission.py): a process streaming this many replies, or whose
# event loop runs this many seconds late (mean over the last second), refuses new turns with "busy,
# try again in a moment" (0: no such limit). Stops are never refused. The default is below the
# capacity the benchmark measured for one process on a 2-core machine (100-150 across runs;
# README, "Measured"):
# at the limit itself, stops get slower.
CHAT_MAX_REPLIES_PER_PROCESS = int(os.environ.get("CHAT_MAX_REPLIES_PER_PROCESS", "100"))
CHAT_MAX_LOOP_LAG = float(os.environ.get("CHAT_MAX_LOOP_LAG", "0.15"))
# Frames a socket may send: a burst, then this many a second (Stop frames are never limited).
CHAT_FRAME_BURST = int(os.environ.get("CHAT_FRAME_BURST", "30"))
CHAT_FRAMES_PER_SECOND = float(os.environ.get("CHAT_FRAMES_PER_SECOND", "10"))
# The model's context window in tokens: a longer history is trimmed oldest-first to fit it
# (with the reply's max_tokens and the system prompt), and the page says so.
CHAT_CONTEXT_TOKENS = int(os.environ.get("CHAT_CONTEXT_TOKENS", "200000"))
# Seconds without a byte from the provider before a reply fails as stalled.
CHAT_STALL_TIMEOUT = float(os.environ.get("CHAT_STALL_TIMEOUT", "60"))
# After a conversation's first exchange, ask the model for a short title (the demo provider
# keeps the first words), with this model and at most this many seconds.
CHAT_AUTO_TITLE = env_bool("CHAT_AUTO_TITLE", True)
CHAT_TITLE_MODEL = os.environ.get("CHAT_TITLE_MODEL", catalog.TITLE_MODEL)
CHAT_TITLE_TIMEOUT = float(os.environ.get("CHAT_TITLE_TIMEOUT", "10"))
# The SDK retries 408/409/429/5xx before the stream starts; never once it has started.
CHAT_MAX_RETRIES = int(os.environ.get("CHAT_MAX_RETRIES", "2"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "chat": {"level": os.environ.get("CHAT_LOG_LEVEL", "INFO"), "propagate": True},
    },
}

# Prices in USD per million tokens of the models in CHAT_MODELS: (input, output, cache write,
# cache read). Cache writes (5-minute TTL) cost 1.25x input, cache reads 0.1x. The usage and cost
# shown on a conversation (chat/data/pricing.py) are computed from this. A local table, fetched
# from nowhere: keep it up to date with Anthropic's price list. The 5-series figures are their
# line's published 4.6 prices (Sonnet, Opus, Haiku), assumed unchanged: check them. A model
# missing here makes its replies' cost "unknown" rather than guessed.
CHAT_PRICES: dict[str, tuple[float, float, float, float]] = {
    "claude-sonnet-5-5": (3, 15, 3.75, 0.30),
    "claude-sonnet-5": (3, 15, 3.75, 0.30),
    "claude-sonnet-4-6": (3, 15, 3.75, 0.30),
    "claude-sonnet-4-5": (3, 15, 3.75, 0.30),
    "claude-opus-5-5": (5, 25, 6.25, 0.50),
    "claude-opus-5": (5, 25, 6.25, 0.50),
    "claude-opus-4-8": (5, 25, 6.25, 0.50),
    "claude-opus-4-7": (5, 25, 6.25, 0.50),
    "claude-opus-4-6": (5, 25, 6.25, 0.50),
    "claude-opus-4-5": (5, 25, 6.25, 0.50),
    "claude-haiku-5-5": (1, 5, 1.25, 0.10),
    "claude-haiku-4-5": (1, 5, 1.25, 0.10),
    "demo": (0, 0, 0, 0),  # the offline demo model (replies made without an API key)
}
