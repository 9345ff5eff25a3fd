"""A real RFC 3161 time-stamping authority on localhost for tests: OpenSSL's own TSA
(`openssl ts -reply`) behind a small HTTP server, with a root and a TSA certificate made for
the test (the TSA's with the critical time-stamping extended key usage RFC 3161 requires).

Not a mock: requests are answered by OpenSSL's TSA implementation and signed with the TSA's
key, as a production TSA answers them; a second instance has its own root, so a stamp from it
(an insider's own TSA, e.g. to back-date) fails against the first one's pinned root.
"""

from __future__ import annotations

import datetime
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LocalTsa:
    url: str
    roots: Path  # the TSA's root certificate, PEM (what HITL_AUDIT_TSA_ROOTS names)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=sign_certificates, crl_sign=sign_certificates, encipher_only=False,
        decipher_only=False,
    )  # fmt: skip


def _certificates(folder: Path, label: str) -> None:
    """`root.pem`, `tsa.pem`, `tsa.key` and the OpenSSL TSA configuration in `folder`."""
    now = datetime.datetime.now(datetime.UTC)
    root_key, tsa_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def issued(
        subject: str, key: ec.EllipticCurvePrivateKey, serial: int
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(f"{label} root"))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
        )

    root = (
        issued(f"{label} root", root_key, 1)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    tsa = (
        issued(f"{label} tsa", tsa_key, 2)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(_usage(False), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "root.pem").write_bytes(root.public_bytes(pem))
    (folder / "tsa.pem").write_bytes(tsa.public_bytes(pem))
    (folder / "tsa.key").write_bytes(
        tsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "serial").write_text("01\n")
    (folder / "ts.cnf").write_text(
        "[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\n"
        f"serial = {folder}/serial\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n"
        "digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\ntsa_name = no\n"
        "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )


@contextmanager
def local_tsa(label: str = "test") -> Iterator[LocalTsa]:
    """Serve OpenSSL's TSA on 127.0.0.1 (a free port) until the block ends."""
    with tempfile.TemporaryDirectory(prefix="hitl-tsa-") as scratch:
        folder = Path(scratch)
        _certificates(folder, label)
        lock = threading.Lock()  # OpenSSL's serial file is read and rewritten per answer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                query = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    (folder / "query.tsq").write_bytes(query)
                    subprocess.run(
                        ["openssl", "ts", "-reply", "-config", str(folder / "ts.cnf"),
                         "-queryfile", str(folder / "query.tsq"),
                         "-inkey", str(folder / "tsa.key"), "-signer", str(folder / "tsa.pem"),
                         "-out", str(folder / "reply.tsr")],
                        check=True, capture_output=True,
                    )  # fmt: skip
                    answer = (folder / "reply.tsr").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # `shutdown` waits for the serving loop's next look at its flag: every 0.05 s, not the
        # default 0.5 s of idle waiting per TSA a test starts.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield LocalTsa(f"http://127.0.0.1:{server.server_address[1]}/", folder / "root.pem")
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
