"""UrllibCertificateLoader against a real HTTPS server on 127.0.0.1 with a local CA."""

from __future__ import annotations

import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broadcast_adapters.bounces.webhooks import UrllibCertificateLoader
from broadcast_domain.errors import InvalidSignature

PEM_BODY = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
# Certificates for the test server must be valid for the real clock, which the
# TLS handshake checks; a wide margin keeps the test independent of the date.
_FROM = datetime(2000, 1, 1, tzinfo=UTC)
_UNTIL = datetime(2999, 1, 1, tzinfo=UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for 127.0.0.1 it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(_FROM)
        .not_valid_after(_UNTIL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(_FROM)
        .not_valid_after(_UNTIL)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/cert.pem":
            body = PEM_BODY
        elif self.path == "/huge.pem":
            body = b"A" * 100_000
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_port(tls_files: tuple[Path, Path, Path]) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1, stopped after the module."""
    _, cert_file, key_file = tls_files
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def test_loader_fetches_over_verified_https(
    https_port: int, tls_files: tuple[Path, Path, Path]
) -> None:
    """With the CA trusted, the loader returns the served certificate bytes."""
    loader = UrllibCertificateLoader(context=_trusting(tls_files[0]), timeout=5)
    assert loader.load(f"https://127.0.0.1:{https_port}/cert.pem") == PEM_BODY


def test_loader_refuses_an_untrusted_server(https_port: int) -> None:
    """The default context does not trust the local CA, so the fetch is refused."""
    loader = UrllibCertificateLoader(timeout=5)
    with pytest.raises(InvalidSignature, match="could not fetch"):
        loader.load(f"https://127.0.0.1:{https_port}/cert.pem")


def test_loader_reports_http_errors(https_port: int, tls_files: tuple[Path, Path, Path]) -> None:
    """A 404 from the certificate host is InvalidSignature, not an HTTPError."""
    loader = UrllibCertificateLoader(context=_trusting(tls_files[0]), timeout=5)
    with pytest.raises(InvalidSignature):
        loader.load(f"https://127.0.0.1:{https_port}/missing.pem")


def test_loader_bounds_the_download(https_port: int, tls_files: tuple[Path, Path, Path]) -> None:
    """A response larger than max_bytes is refused."""
    loader = UrllibCertificateLoader(context=_trusting(tls_files[0]), timeout=5, max_bytes=1024)
    with pytest.raises(InvalidSignature, match="larger"):
        loader.load(f"https://127.0.0.1:{https_port}/huge.pem")


def test_loader_refuses_plain_http() -> None:
    """Only https URLs are fetched."""
    with pytest.raises(InvalidSignature, match="https"):
        UrllibCertificateLoader().load("http://127.0.0.1:1/cert.pem")
