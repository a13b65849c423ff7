"""What deploy/ ships works as shipped: the nginx site under Debian's nginx (TLS, HTTP/2, the headers Tollgate relies
on in every location, streams unbuffered, websocket upgrades, plain-HTTP probes), the systemd units, and an env
template whose every line is a real setting that passes `check --deploy`. The N-process proof itself is
deploy/prove.sh (CI runs it in quick mode)."""

from __future__ import annotations

import datetime
import http.client
import importlib.util
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.processes import stop

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "tollgate.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="needs Debian's nginx (apt-get install nginx)")
HOST = "tollgate.example.com"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the example host, made here (no openssl needed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    chain, private = folder / "fullchain.pem", folder / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, private


def _nginx_prefix(tmp_path: Path, site: str) -> Path:
    """A prefix directory where nginx finds the site as it would in /etc/nginx (snippets/ beside nginx.conf)."""
    shutil.copytree(DEPLOY / "nginx" / "snippets", tmp_path / "snippets")
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "temp"
    for part in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / part).mkdir(parents=True)
        (temp / part).chmod(0o777)
    for folder in (tmp_path, temp):
        folder.chmod(0o755)
    paths = "\n".join(f"    {part}_temp_path {temp / part};" for part in ("fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
{paths}
    include {tmp_path}/site.conf;
}}
""")
    return tmp_path


def _nginx(prefix: Path, *args: str) -> list[str]:
    return [str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log"), *args]


def _site_with(tmp_path: Path, *, http_port: int, https_port: int, upstream_port: int) -> str:
    chain, key = _certificate(tmp_path)
    site = SITE.read_text()
    site = site.replace("/etc/letsencrypt/live/tollgate.example.com/fullchain.pem", str(chain))
    site = site.replace("/etc/letsencrypt/live/tollgate.example.com/privkey.pem", str(key))
    site = re.sub(r"listen 80;", f"listen 127.0.0.1:{http_port};", site)
    site = re.sub(r"listen 443 ", f"listen 127.0.0.1:{https_port} ", site)
    site = re.sub(r"^\s*listen \[::\].*$", "", site, flags=re.M)  # no IPv6 on every test machine
    site = re.sub(r"server 127\.0\.0\.1:800\d", f"server 127.0.0.1:{upstream_port}", site)
    return site


@needs_nginx
def test_the_site_passes_nginx_t_as_shipped(tmp_path):
    """Only the certificate paths changed: Debian's nginx accepts every directive (`http2 on;` it would not)."""
    chain, key = _certificate(tmp_path)
    site = SITE.read_text().replace("/etc/letsencrypt/live/tollgate.example.com/fullchain.pem", str(chain))
    site = site.replace("/etc/letsencrypt/live/tollgate.example.com/privkey.pem", str(key))
    prefix = _nginx_prefix(tmp_path, site)
    result = subprocess.run(_nginx(prefix, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


class _Echo(BaseHTTPRequestHandler):
    """The web processes' stand-in: answers with the request line and headers it got; /v1/stream sends one event,
    waits, then another."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/v1/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            time.sleep(1.0)
            self.wfile.write(b"data: second\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site(tmp_path) -> Iterator[tuple[int, int]]:
    """The shipped site, listening on loopback ports, in front of the echo server."""
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    http_port, https_port = _free_port(), _free_port()
    site = _site_with(tmp_path, http_port=http_port, https_port=https_port, upstream_port=echo.server_address[1])
    prefix = _nginx_prefix(tmp_path, site)
    process = subprocess.Popen(_nginx(prefix), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # bounded: nginx listens, or the test fails
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield http_port, https_port
    finally:
        stop(process)
        echo.shutdown()
        echo.server_close()


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _get(port: int, path: str, *, tls: bool, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, context=_tls(), timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": HOST, **(headers or {})})
    return conn.getresponse()


@needs_nginx
def test_https_passes_host_client_address_and_scheme_and_offers_http2(site):
    _http, https = site
    response = _get(https, "/team/", tls=True, headers={"X-Forwarded-For": "203.0.113.9"})
    seen = json.loads(response.read())["headers"]
    assert seen["host"] == HOST  # $host: ALLOWED_HOSTS and CSRF see the name the client used
    assert seen["x-forwarded-proto"] == "https"  # USE_X_FORWARDED_PROTO
    # the client's own claim, then the address nginx saw: TRUSTED_PROXIES=127.0.0.1 walks it from the right
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    with socket.create_connection(("127.0.0.1", https), timeout=5) as raw:
        context = _tls()
        context.set_alpn_protocols(["h2", "http/1.1"])
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.selected_alpn_protocol() == "h2"


@needs_nginx
def test_the_websocket_location_upgrades_and_keeps_the_headers(site):
    """nginx drops server-level proxy_set_header in a location that sets its own: the websocket location must still
    send Host and X-Forwarded-* (Channels' origin check and the client address need them)."""
    _http, https = site
    response = _get(https, "/ws/team/tm_x/", tls=True, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    seen = json.loads(response.read())["headers"]
    assert seen["upgrade"] == "websocket"
    assert seen["connection"].lower() == "upgrade"
    assert seen["host"] == HOST
    assert seen["x-forwarded-proto"] == "https"
    plain = json.loads(_get(https, "/v1/models", tls=True).read())["headers"]
    assert "upgrade" not in plain and "connection" not in plain  # keep-alive to the processes


@needs_nginx
def test_streams_are_relayed_as_they_come(site):
    """proxy_buffering off on /v1/: the first event arrives while the process is still writing."""
    _http, https = site
    started = time.monotonic()
    response = _get(https, "/v1/stream", tls=True)
    first = response.read1(64) if hasattr(response, "read1") else response.read(13)
    took = time.monotonic() - started
    rest = response.read()
    assert first.startswith(b"data: first")
    assert took < 0.8, f"the first event took {took:.2f} s: buffered"
    assert b"data: second" in first + rest


@needs_nginx
def test_plain_http_serves_the_probes_and_moves_the_rest_to_https(site):
    http_port, _https = site
    probe = json.loads(_get(http_port, "/readyz", tls=False).read())
    assert probe["path"] == "/readyz"
    assert probe["headers"]["host"] == HOST  # not the upstream's name: Django would refuse it (ALLOWED_HOSTS)
    assert probe["headers"]["x-forwarded-proto"] == "http"
    moved = _get(http_port, "/login/?next=/", tls=False)
    assert moved.status == 301
    assert moved.getheader("Location") == f"https://{HOST}/login/?next=/"


def _load_prove():
    spec = importlib.util.spec_from_file_location("tollgate_prove", DEPLOY / "prove.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tollgate_prove"] = module
    spec.loader.exec_module(module)
    return module


@needs_nginx
def test_the_proves_nginx_config_is_the_shipped_upstream_and_snippets(tmp_path):
    prove = _load_prove()
    dep = prove.Deployment(
        pg="postgres://x", db="x", redis_db=0, dir=tmp_path, web_ports=[18001, 18002, 18003], nginx_port=_free_port()
    )
    conf = prove.nginx_config(dep)
    text = conf.read_text()
    assert "least_conn;" in text and "keepalive 64;" in text
    assert text.count("max_fails=3 fail_timeout=10s;") == 3 and "127.0.0.1:18003" in text
    assert "include snippets/tollgate-proxy.conf;" in text
    result = subprocess.run(
        [str(NGINX), "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


# --- systemd ----------------------------------------------------------------------------------------------------

UNITS = sorted((DEPLOY / "systemd").iterdir())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    """As installed in /opt/tollgate, here the checkout: every directive known and valid, every command there."""
    bin_dir = str(Path(sys.executable).parent)
    for unit in UNITS:
        text = unit.read_text().replace("/opt/tollgate/.venv/bin", bin_dir).replace("/opt/tollgate", str(ROOT))
        (tmp_path / unit.name).write_text(text)
    names = [u.name.replace("@.service", "@8001.service") for u in UNITS]
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "tollgate" in line]
    assert result.returncode == 0 and not ours, "\n".join(ours) or result.stderr


def test_every_unit_reads_the_env_file_and_only_beat_and_migrate_go_without_the_metrics_directory():
    """A process that imports Tollgate with PROMETHEUS_MULTIPROC_DIR set writes there: it must be able to."""
    for unit in UNITS:
        if unit.suffix != ".service":
            continue
        text = unit.read_text()
        assert "EnvironmentFile=/etc/tollgate/tollgate.env" in text, unit.name
        assert "StateDirectory=tollgate" in text, unit.name
        without = "UnsetEnvironment=PROMETHEUS_MULTIPROC_DIR" in text
        with_dir = "RuntimeDirectory=tollgate/metrics" in text and "RuntimeDirectoryPreserve=yes" in text
        assert without != with_dir, unit.name
        assert without == (unit.name in ("tollgate-beat.service", "tollgate-migrate.service")), unit.name


# --- the env template ------------------------------------------------------------------------------------------

TEMPLATE = DEPLOY / "tollgate.env.example"
_ENV_READ = re.compile(r"\benv_(?:str|bool|int|float|list|decimal)\(\s*\"([A-Z][A-Z0-9_]*)\"")
_OS_READ = re.compile(r"os\.environ(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]*)\"")


def _template() -> dict[str, str]:
    """The template read the way systemd reads an EnvironmentFile."""
    values = {}
    for number, line in enumerate(TEMPLATE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"line {number}: {line!r}"
        assert "#" not in value, f"line {number}: systemd would make the comment part of {name}'s value"
        values[name] = value.strip()
    return values


def _settings_read() -> tuple[set[str], set[str]]:
    """Names Tollgate reads through config.env (which also takes NAME_FILE), and straight from os.environ."""
    through_env, direct = set(), set()
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in (".venv", "tests", "bench", "deploy", "tollgate_cli"):
            continue
        source = path.read_text()
        through_env |= set(_ENV_READ.findall(source))
        direct |= set(_OS_READ.findall(source))
    return through_env, direct


def test_the_env_template_lists_only_real_settings():
    through_env, direct = _settings_read()
    assert {"DATABASE_URL", "SECRET_KEY", "METRICS_TOKEN"} <= through_env  # the scan finds them
    for name in _template():
        base = name.removesuffix("_FILE")
        if name.endswith("_FILE"):
            assert base in through_env, f"{name}: {base} is not read through config.env, so NAME_FILE does nothing"
        else:
            assert base in through_env | direct, f"{name} is not a setting Tollgate reads"


def test_the_env_template_passes_check_deploy(tmp_path):
    """The template with its secrets filled in (and its paths moved under tmp): `manage.py check --deploy` is clean,
    as the migrate unit requires before every release."""
    env = {k: v for k, v in __import__("os").environ.items() if k in ("PATH", "HOME", "LANG")}
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in _template().items():
        value = value.replace("/etc/tollgate/secrets", str(secrets_dir))
        value = value.replace("/var/lib/tollgate", str(tmp_path / "var")).replace(
            "/run/tollgate", str(tmp_path / "run")
        )
        env[name] = value
        if name.endswith("_FILE"):
            secret = "postgres://tollgate@db.invalid:5432/tollgate" if name == "DATABASE_URL_FILE" else None
            Path(value).write_text((secret or "s3cret-" + "x" * 60) + "\n")
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
