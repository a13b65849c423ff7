"""Where the CLI keeps its base URL and API key: `~/.config/tollgate/config.toml` (or under
`$XDG_CONFIG_HOME`), one table per profile, readable by its owner only (0600, in a 0700 directory).

    [profiles.default]
    base_url = "https://tollgate.example.com"
    api_key = "tg_live_…"

`TOLLGATE_BASE_URL` and `TOLLGATE_API_KEY` override the file; `--profile` (or `TOLLGATE_PROFILE`) picks the
table.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import tomli_w

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(Exception):
    """A profile name, base URL or config file the CLI cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    profile: str
    base_url: str
    api_key: str | None
    key_from_env: bool  # then `login`/`rotate` must not pretend the file's key is the one in use


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    root = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(root) / "tollgate" / "config.toml"


def profile_name(explicit: str | None, env: Mapping[str, str] = os.environ) -> str:
    name = explicit or env.get("TOLLGATE_PROFILE") or DEFAULT_PROFILE
    if not _PROFILE_NAME.match(name):
        raise ConfigError(f"Invalid profile name {name[:70]!r}: use letters, digits, '-' and '_' (at most 64).")
    return name


def normalize_base_url(url: str) -> str:
    """The installation's root, `https://host[:port][/prefix]`: a trailing `/v1` (what OpenAI SDKs are
    given) and slashes are dropped, so both spellings work."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"Invalid base URL {url[:100]!r}: expected http(s)://host[:port], e.g. {DEFAULT_BASE_URL}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"Invalid base URL {url[:100]!r}: it must not have a query or fragment.")
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def load(path: Path | None = None) -> dict:
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or delete it and log in again.") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"{path}: [profiles.<name>] tables expected; fix it or delete it and log in again.")
    return data


def save(data: dict, path: Path | None = None) -> Path:
    """Write the whole file atomically: a new 0600 file renamed over the old one, so the key is never
    readable by others, not even for a moment, and a crash leaves the old file whole."""
    path = path or config_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)  # the mode given to O_CREAT passes through the umask
                out.write(tomli_w.dumps(data).encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    return path


def resolve(profile: str | None, env: Mapping[str, str] = os.environ) -> Settings:
    name = profile_name(profile, env)
    stored = load(config_path(env)).get("profiles", {}).get(name, {})
    env_key = env.get("TOLLGATE_API_KEY") or None
    base_url = env.get("TOLLGATE_BASE_URL") or stored.get("base_url") or DEFAULT_BASE_URL
    api_key = env_key or stored.get("api_key") or None
    return Settings(
        profile=name, base_url=normalize_base_url(str(base_url)), api_key=api_key, key_from_env=bool(env_key)
    )


def store_login(profile: str, *, base_url: str, api_key: str, env: Mapping[str, str] = os.environ) -> Path:
    path = config_path(env)
    data = load(path)
    data.setdefault("profiles", {})[profile] = {"base_url": base_url, "api_key": api_key}
    return save(data, path)


def remove_profile(profile: str, env: Mapping[str, str] = os.environ) -> bool:
    """Forget a profile; the file goes when its last profile does. False when there was nothing to forget."""
    path = config_path(env)
    data = load(path)
    profiles = data.get("profiles", {})
    if profile not in profiles:
        return False
    del profiles[profile]
    if profiles or set(data) - {"profiles"}:
        save(data, path)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"Cannot remove {path}: {exc.strerror or exc}.") from None
    return True
