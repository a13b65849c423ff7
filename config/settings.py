"""Tollgate settings: every value comes from the environment.

With nothing set you get the embedded default (SQLite in WAL mode, in-memory
cache and channel layer, eager Celery, console email). Setting DATABASE_URL
and REDIS_URL switches to PostgreSQL and Redis; nothing else changes.
"""

from __future__ import annotations

import json
import secrets
import sys
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_decimal, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TOLLGATE_VAR_DIR", str(BASE_DIR / "var")))

TESTING = "pytest" in sys.modules or env_bool("TOLLGATE_TESTING")
DEBUG = env_bool("DEBUG", False)


def _dev_secret() -> str:
    """A per-checkout secret for the embedded default, so `make run` needs no setup."""
    if TESTING:
        return "tollgate-test-secret-key-not-for-production-0123456789abcdef"
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or _dev_secret()
# HMAC key for API-key lookup hashes; rotating SECRET_KEY must not invalidate every API key.
API_KEY_HASH_SECRET = env_str("API_KEY_HASH_SECRET") or SECRET_KEY
# Encrypts provider credentials at rest (Fernet, derived with HKDF when not a Fernet key itself).
FIELD_ENCRYPTION_KEY = env_str("FIELD_ENCRYPTION_KEY") or SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# The product name people see: page titles, emails (subjects and signatures), the admin, the TOTP issuer.
SITE_NAME = env_str("SITE_NAME", "Tollgate").strip() or "Tollgate"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "accounts",
    "webhooks",
    "billing",
    "gateway",
    "dashboard",
    "allauth",
    "allauth.account",
    "allauth.mfa",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
                "dashboard.context_processors.nav",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 600),
            conn_health_checks=True,
        )
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                # Writers queue on the busy timeout instead of failing with "database is locked",
                # and BEGIN IMMEDIATE takes the write lock up front so transactions never deadlock.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            },
        }
    }
# The gateway's hold and settlement statements run from the event loop on a small async psycopg pool
# per worker process (billing/backends/postgres.py); 0 sends them through worker threads like other ORM work.
DB_ASYNC_POOL_SIZE = env_int("DB_ASYNC_POOL_SIZE", 8)
DB_ASYNC_POOL_TIMEOUT_SECONDS = env_float("DB_ASYNC_POOL_TIMEOUT_SECONDS", 10.0)
# Whether those two statements wait for the WAL flush (billing/backends/postgres.py, "Commit durability").
HOT_PATH_SYNCHRONOUS_COMMIT = env_bool("HOT_PATH_SYNCHRONOUS_COMMIT", False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Holds (billing.leases): a request's hold lives as long as the process serving it renews its lease (every
# HOLD_LEASE_SECONDS / 3); the sweeper runs every HOLD_SWEEP_SECONDS, so a dead process's holds are released
# within HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS. A hold without a lease (an asynchronous job's) expires after
# HOLD_TTL_SECONDS.
HOLD_LEASE_SECONDS = env_int("HOLD_LEASE_SECONDS", 45)
HOLD_SWEEP_SECONDS = env_int("HOLD_SWEEP_SECONDS", 30)
HOLD_LEASE_RENEWAL = env_bool("HOLD_LEASE_RENEWAL", not TESTING)
UPSTREAM_TIMEOUT_SECONDS = env_int("UPSTREAM_TIMEOUT_SECONDS", 300)
# Image jobs (gateway.image_jobs): a job not picked up within IMAGE_JOB_TIMEOUT_SECONDS expires; a worker gives one
# generation at most IMAGE_JOB_RUN_SECONDS, and a job left "processing" past that (plus IMAGE_JOB_GRACE_SECONDS)
# belonged to a worker that died: it is retried (up to IMAGE_JOB_MAX_ATTEMPTS pick-ups) or failed. A job's hold
# has no lease: it expires after HOLD_TTL_SECONDS, which must outlive all of that (checked at start-up).
IMAGE_JOB_TIMEOUT_SECONDS = env_int("IMAGE_JOB_TIMEOUT_SECONDS", 600)
IMAGE_JOB_RUN_SECONDS = env_int("IMAGE_JOB_RUN_SECONDS", UPSTREAM_TIMEOUT_SECONDS)
IMAGE_JOB_GRACE_SECONDS = env_int("IMAGE_JOB_GRACE_SECONDS", 60)
IMAGE_JOB_MAX_ATTEMPTS = env_int("IMAGE_JOB_MAX_ATTEMPTS", 2)
IMAGE_JOB_SWEEP_SECONDS = env_int("IMAGE_JOB_SWEEP_SECONDS", 30)
IMAGE_OUTPUT_TTL_DAYS = env_int("IMAGE_OUTPUT_TTL_DAYS", 7)
HOLD_TTL_SECONDS = env_int(
    "HOLD_TTL_SECONDS",
    max(
        UPSTREAM_TIMEOUT_SECONDS * 2 + 60,
        IMAGE_JOB_TIMEOUT_SECONDS
        + IMAGE_JOB_MAX_ATTEMPTS * (IMAGE_JOB_RUN_SECONDS + IMAGE_JOB_GRACE_SECONDS + IMAGE_JOB_SWEEP_SECONDS)
        + 120,
    ),
)

# --- Cache, channel layer, Celery -------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tollgate",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "tollgate"},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tollgate"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
# Who runs background tasks (config.background): the Celery worker with a broker, else a worker thread of
# the server process; the test suite runs them inline.
BACKGROUND_RUNNER = env_str("BACKGROUND_RUNNER", "inline" if TESTING else ("celery" if REDIS_URL else "thread"))
if BACKGROUND_RUNNER not in ("celery", "thread", "inline"):
    raise ImproperlyConfigured(f"BACKGROUND_RUNNER must be celery, thread or inline, got {BACKGROUND_RUNNER!r}")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE = {
    "release-abandoned-holds": {"task": "billing.tasks.release_abandoned_holds", "schedule": HOLD_SWEEP_SECONDS},
    "purge-idempotency-records": {"task": "gateway.tasks.purge_idempotency_records", "schedule": 3600.0},
    "requeue-stalled-webhook-deliveries": {"task": "webhooks.tasks.requeue_stalled_deliveries", "schedule": 60.0},
    "sweep-image-jobs": {"task": "gateway.tasks.sweep_image_jobs", "schedule": IMAGE_JOB_SWEEP_SECONDS},
    "purge-image-outputs": {"task": "gateway.tasks.purge_image_outputs", "schedule": 3600.0},
}

# --- Auth ----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Sign-up, log-in, password reset, email verification and TOTP two-factor come from django-allauth,
# mounted at the site root by dashboard/urls.py (/login/, /signup/, /logout/, /password/reset/, /2fa/).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "dashboard.auth.AccountAdapter"
ACCOUNT_SIGNUP_FORM_CLASS = "dashboard.forms.SignupExtraForm"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_UNIQUE_EMAIL = True
# "optional": a verification link is mailed at sign-up and a banner asks for it; "mandatory" blocks log-in.
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if env_bool("SECURE_SSL_REDIRECT", False) else "http"
# Failed log-ins count per account only ("key" is the address tried): behind one shared address (an office,
# a load balancer) somebody's wrong passwords must never lock anyone else out. The per-address limits allauth
# keeps (log-in attempts, sign-ups) see the real client address (dashboard.auth.AccountAdapter.get_client_ip,
# the TRUSTED_PROXIES rule used everywhere).
LOGIN_RATE_LIMITS = {"login_failed": "5/5m/key"}
# The suite logs in many times from one address; the tests of the limits turn them on.
ACCOUNT_RATE_LIMITS: dict | bool = False if TESTING else LOGIN_RATE_LIMITS
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = SITE_NAME
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# --- Email -------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"{SITE_NAME} <noreply@tollgate.localhost>")

# --- Static files, i18n ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
# Generated images (and any other uploaded file) go through Django's storage API. The default keeps them on disk
# under MEDIA_ROOT; STORAGE_BACKEND names any django-storages backend (e.g. storages.backends.s3.S3Storage) and
# STORAGE_OPTIONS (a JSON object) its options. Files are only ever served by Tollgate's signed links.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")
try:
    STORAGE_OPTIONS = json.loads(env_str("STORAGE_OPTIONS", "{}") or "{}")
except ValueError:
    raise ImproperlyConfigured("STORAGE_OPTIONS must be a JSON object") from None
if not isinstance(STORAGE_OPTIONS, dict):
    raise ImproperlyConfigured("STORAGE_OPTIONS must be a JSON object")
if STORAGE_BACKEND == "django.core.files.storage.FileSystemStorage":
    STORAGE_OPTIONS = {"location": str(MEDIA_ROOT), **STORAGE_OPTIONS}
STORAGES = {
    "default": {"BACKEND": STORAGE_BACKEND, "OPTIONS": STORAGE_OPTIONS},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not (DEBUG or TESTING) and env_bool("STATIC_MANIFEST", False)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Security (production: set SECURE_SSL_REDIRECT=1 behind TLS) ----------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes talk plain HTTP to the process
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Comma-separated proxy addresses whose X-Forwarded-For we trust for client IPs.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# --- DRF -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.rest_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollgate management API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # every operation's refusals (400/401/403/404/429/503) in the error envelope: config/openapi.py
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "config.openapi.spectacular_errors"],
}

# --- Tollgate ----------------------------------------------------------------------
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_str("STRIPE_API_BASE")  # tests point this at localstripe
# Credit for every team created at sign-up (a trial), once, as a ledger grant. 0: none.
SIGNUP_CREDIT_USD = env_decimal("SIGNUP_CREDIT_USD", Decimal(0))
if not Decimal(0) <= SIGNUP_CREDIT_USD <= 10_000 or (SIGNUP_CREDIT_USD * 10**9) % 1:
    raise ImproperlyConfigured("SIGNUP_CREDIT_USD must be between 0 and 10000 USD, exact to the nano-dollar.")
# Redemption attempts per hour: guessing a 60-bit code at these rates is hopeless.
CREDIT_CODE_ATTEMPTS_PER_USER_PER_HOUR = env_int("CREDIT_CODE_ATTEMPTS_PER_USER_PER_HOUR", 10)
CREDIT_CODE_ATTEMPTS_PER_TEAM_PER_HOUR = env_int("CREDIT_CODE_ATTEMPTS_PER_TEAM_PER_HOUR", 20)
SIMULATOR_LATENCY_MS = env_int("SIMULATOR_LATENCY_MS", 0)
SIMULATOR_TOKENS_PER_SECOND = env_int("SIMULATOR_TOKENS_PER_SECOND", 0)
# The simulator's images: how long one generation takes, and the words its "content policy" refuses.
SIMULATOR_IMAGE_LATENCY_MS = env_int("SIMULATOR_IMAGE_LATENCY_MS", 0)
SIMULATOR_BLOCKED_WORDS = env_list("SIMULATOR_BLOCKED_WORDS", ["forbidden"])
# Gateway tuning (defaults and meaning in gateway/conf.py).
GATEWAY_CATALOG_TTL_SECONDS = env_float("GATEWAY_CATALOG_TTL_SECONDS", 5.0)
# Read on every request (gateway/teams.py): a setting that exists costs gateway.conf.get no AttributeError.
GATEWAY_TEAM_TTL_SECONDS = 5.0
GATEWAY_KEEPALIVE_SECONDS = env_float("GATEWAY_KEEPALIVE_SECONDS", 15.0)
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 20 * 1024 * 1024)
GATEWAY_ROUTE_RETRIES = env_int("GATEWAY_ROUTE_RETRIES", 1)
GATEWAY_BREAKER_FAILURES = env_int("GATEWAY_BREAKER_FAILURES", 5)
GATEWAY_BREAKER_COOLDOWN_SECONDS = env_float("GATEWAY_BREAKER_COOLDOWN_SECONDS", 30.0)
GATEWAY_IDEMPOTENCY_TTL_SECONDS = env_int("GATEWAY_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
GATEWAY_SETTLE_AFTER_REPLY = env_bool("GATEWAY_SETTLE_AFTER_REPLY", True)
# Webhook endpoints may point at loopback, private, link-local and multicast addresses, and use plain http:
# for local development and tests only (webhooks/safety.py). Off in production unless DEBUG.
WEBHOOKS_ALLOW_PRIVATE = env_bool("WEBHOOKS_ALLOW_PRIVATE", DEBUG)

# Graceful stop (config/lifespan.py): how long open requests may finish after SIGTERM (pass it to uvicorn as
# --timeout-graceful-shutdown; deploy/ does), then how long the cut requests' settlements may take.
SHUTDOWN_GRACE_SECONDS = env_int("SHUTDOWN_GRACE_SECONDS", 30)
SHUTDOWN_DRAIN_SECONDS = env_int("SHUTDOWN_DRAIN_SECONDS", 10)
# /metrics (config/metrics.py): a Bearer token, or addresses allowed to scrape; with neither it is not served.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])

# LOG_FORMAT=json: one JSON object per line (production); text otherwise (config/logs.py). ACCESS_LOG=0 drops the
# access line per /v1 request (it is INFO: LOG_LEVEL=WARNING drops it too).
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
ACCESS_LOG = env_bool("ACCESS_LOG", True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "config.logs.RequestContextFilter"}},
    "formatters": {
        "text": {"()": "config.logs.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # its INFO line names every URL called, webhook URLs (which may hold tokens) too
        **({} if ACCESS_LOG else {"tollgate.access": {"level": "WARNING"}}),
    },
}
