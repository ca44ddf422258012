"""HTTPS for ``taskloom server``, the client's certificate checks, and the warnings for clear-text exposure.

The certificates are made here (a private CA and a server certificate for 127.0.0.1) with
``cryptography``, a core dependency; the server is a real process on loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from processes import free_port, stop, wait_for

from taskloom.client import TaskloomClient
from taskloom.errors import TaskloomError
from taskloom.exposure import database_url_warning, is_loopback, server_bind_warning, server_url_warning

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
#: TEST-NET-1 (RFC 5737): never routed, so binding to it fails without any packet leaving the machine
UNROUTED = "192.0.2.1"


# -- certificates -------------------------------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates(folder: Path) -> dict[str, Path]:
    """A private CA, and a certificate it signs for 127.0.0.1; returns the PEM files' paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("taskloom test CA"))
        .issuer_name(_name("taskloom test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(_pem_key(key))
    return files


def make_env(folder: Path, store_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url or f"sqlite:///{folder / 'taskloom.db'}",
        "TASKLOOM_HOME": str(folder / "home"),
        "TASKLOOM_API_TOKEN": "tls-test-token",
        "PYTHONPATH": f"{HERE.parent / 'integration'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    for name in ("TASKLOOM_SERVER_URL", "TASKLOOM_CA_BUNDLE"):
        env.pop(name, None)
    return env


def taskloom(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


# -- warnings, as functions ---------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "", "/var/run/postgresql"])
def test_loopback_hosts_are_local(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "db.example.com", UNROUTED])
def test_other_hosts_are_not_local(host: str) -> None:
    assert not is_loopback(host)


def test_the_server_warns_only_beyond_loopback_without_tls() -> None:
    assert server_bind_warning("127.0.0.1", tls=False) is None
    assert server_bind_warning("0.0.0.0", tls=True) is None
    warning = server_bind_warning("0.0.0.0", tls=False)
    assert warning is not None and "0.0.0.0" in warning and "--tls-cert" in warning


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("sqlite:///x.db", False),
        ("postgresql://u:p@127.0.0.1/db", False),
        ("postgresql://u:p@localhost:5432/db", False),
        ("postgresql://u@/db?host=/tmp", False),
        ("postgresql://u:p@db.example.com/db", True),
        ("postgresql://u:p@db.example.com/db?sslmode=prefer", True),
        ("postgresql://u:p@db.example.com/db?sslmode=disable", True),
        ("postgresql://u:p@db.example.com/db?sslmode=require", False),
        ("postgres://u:p@db.example.com/db?sslmode=verify-full", False),
        ("postgresql://u@/db?host=127.0.0.1,db.example.com", True),
    ],
)
def test_a_remote_database_without_encryption_is_named(url: str, warns: bool) -> None:
    warning = database_url_warning(url)
    assert (warning is not None) is warns
    if warning is not None:
        assert "db.example.com" in warning or "sslmode" in warning
        assert ":p@" not in warning  # never the password


def test_a_remote_server_over_http_is_named() -> None:
    assert server_url_warning("https://tasks.example.com") is None
    assert server_url_warning("http://127.0.0.1:8080") is None
    warning = server_url_warning("http://tasks.example.com:8080")
    assert warning is not None and "tasks.example.com" in warning and "http://" in warning


# -- a real server over HTTPS -------------------------------------------------------------------------
@pytest.fixture
def tls_server(tmp_path: Path, store_url: str) -> Iterator[tuple[str, dict[str, Path], subprocess.Popen[bytes]]]:
    """``taskloom server`` over HTTPS on loopback, once on each store."""
    files = make_certificates(tmp_path)
    env = make_env(tmp_path, store_url)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskloom",
                "server",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--tls-cert",
                str(files["cert"]),
                "--tls-key",
                str(files["key"]),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(files["ca"]))

    def answers() -> bool | None:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health", verify=trust, timeout=2).status_code == 200 or None
        except httpx.TransportError:
            return None

    wait_for(answers, timeout=60, what="the HTTPS server")
    try:
        yield url, files, process
    finally:
        stop(process)
    output = log.read_text()
    assert f"taskloom server: https://127.0.0.1:{port}" in output
    assert "WARNING" not in output  # loopback, TLS: nothing to warn about


def test_the_server_serves_https_and_the_client_trusts_a_private_ca(
    tls_server: tuple[str, dict[str, Path], subprocess.Popen[bytes]],
) -> None:
    url, files, _ = tls_server
    with TaskloomClient(url, "tls-test-token", ca_bundle=str(files["ca"])) as client:
        assert client.health()["status"] == "ok"
        assert client.list_executions() == []


def test_the_client_takes_its_ca_from_the_environment(
    tls_server: tuple[str, dict[str, Path], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, files, _ = tls_server
    monkeypatch.setenv("TASKLOOM_CA_BUNDLE", str(files["ca"]))
    with TaskloomClient(url, "tls-test-token") as client:
        assert client.list_executions() == []


def test_the_client_refuses_a_certificate_it_does_not_trust(
    tls_server: tuple[str, dict[str, Path], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, _ = tls_server
    monkeypatch.delenv("TASKLOOM_CA_BUNDLE", raising=False)
    with TaskloomClient(url, "tls-test-token") as client, pytest.raises(TaskloomError) as caught:
        client.list_executions()
    assert "TASKLOOM_CA_BUNDLE" in str(caught.value) and "certificate" in str(caught.value)


def test_the_https_server_does_not_answer_plain_http(
    tls_server: tuple[str, dict[str, Path], subprocess.Popen[bytes]],
) -> None:
    url, _, _ = tls_server
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/health", timeout=5)


def test_the_cli_reaches_an_https_server_with_the_ca_setting(
    tls_server: tuple[str, dict[str, Path], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, files, _ = tls_server
    env = make_env(tmp_path) | {"TASKLOOM_CA_BUNDLE": str(files["ca"])}
    result = taskloom(env, "--server", url, "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    env.pop("TASKLOOM_CA_BUNDLE")
    result = taskloom(env, "--server", url, "list")
    assert result.returncode != 0 and "TASKLOOM_CA_BUNDLE" in result.stderr


def test_a_missing_ca_bundle_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(TaskloomError, match="ca_bundle"):
        TaskloomClient("https://127.0.0.1:1", "t", ca_bundle=str(tmp_path / "missing.pem"))


# -- the server's start: bad TLS options and the exposure warning --------------------------------------
def test_a_certificate_without_its_key_is_refused_by_name(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    result = taskloom(make_env(tmp_path), "server", "--port", "0", "--tls-cert", str(files["cert"]))
    assert result.returncode != 0
    assert "--tls-cert needs --tls-key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_that_does_not_match_is_refused_by_name(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")
    result = taskloom(
        make_env(tmp_path), "server", "--port", "0", "--tls-cert", str(files["cert"]), "--tls-key", str(other["key"])
    )
    assert result.returncode != 0
    assert "do not load as a PEM certificate and its key" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_warns_when_bound_beyond_loopback_without_tls(tmp_path: Path) -> None:
    # An address of TEST-NET-1: the warning comes before uvicorn binds, and binding then fails, so no
    # socket ever listens beyond loopback.
    result = taskloom(make_env(tmp_path), "server", "--host", UNROUTED, "--port", str(free_port()))
    assert f"WARNING: listening on {UNROUTED} without TLS" in result.stdout, result.stdout + result.stderr


def test_a_worker_warns_of_a_server_reached_over_plain_http(tmp_path: Path) -> None:
    # 0.0.0.0 is not a loopback name, so it warns, yet it reaches only this machine should anything connect
    env = make_env(tmp_path) | {"TASKLOOM_SERVER_URL": "http://0.0.0.0:9"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "cliapp.flows"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "running" in log.read_text() or None, timeout=60, what="the worker's start")
        assert "the taskloom server 0.0.0.0 is reached over http://" in log.read_text()
    finally:
        stop(worker)
