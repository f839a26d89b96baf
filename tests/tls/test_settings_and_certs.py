"""The TLS settings' checks (each bad file named by its setting, no key contents in a message) and
``make certs``'s files (a CA, a certificate per service with the compose names, idempotent)."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.tls import TlsConfigError, TlsFiles
from services.exporter.config import ExporterSettings
from services.gateway.config import GatewaySettings
from services.trainer.config import TrainerSettings
from tests.conftest import REPO
from tests.tls.conftest import dev_certs

FILES = ["ca.pem", "ca-key.pem"] + [f"{n}{s}.pem" for n in ("exporter", "trainer", "gateway", "worker")
                                    for s in ("", "-key")]


@pytest.mark.parametrize("cls, prefix", [(ExporterSettings, "EXPORTER_"), (TrainerSettings, "TRAINER_"),
                                         (GatewaySettings, "GATEWAY_")])
def test_every_service_reads_the_three_settings_plaintext_by_default(cls, prefix, monkeypatch, certs):
    assert not TlsFiles.from_settings(cls(_env_file=None)).enabled
    monkeypatch.setenv(f"{prefix}TLS_CERT_FILE", str(certs / "exporter.pem"))
    monkeypatch.setenv(f"{prefix}TLS_KEY_FILE", str(certs / "exporter-key.pem"))
    monkeypatch.setenv(f"{prefix}TLS_CA_FILE", str(certs / "ca.pem"))
    tls = TlsFiles.from_settings(cls(_env_file=None))
    assert tls == TlsFiles(str(certs / "exporter.pem"), str(certs / "exporter-key.pem"), str(certs / "ca.pem"),
                           env_prefix=prefix)
    tls.check()
    assert tls.server_credentials() is not None and tls.channel_credentials() is not None


def test_the_workers_certificate_defaults_to_the_trainers(certs):
    own = dict(tls_cert_file=str(certs / "trainer.pem"), tls_key_file=str(certs / "trainer-key.pem"),
               tls_ca_file=str(certs / "ca.pem"))
    assert TrainerSettings(_env_file=None, **own).worker_tls().cert_file == own["tls_cert_file"]
    worker = TrainerSettings(_env_file=None, **own, worker_tls_cert_file=str(certs / "worker.pem"),
                             worker_tls_key_file="").worker_tls()
    assert (worker.cert_file, worker.ca_file) == (str(certs / "worker.pem"), own["tls_ca_file"])
    with pytest.raises(TlsConfigError, match=r"^TRAINER_WORKER_TLS_CERT_FILE \(worker_tls_cert_file\) is set but "
                                             r"TRAINER_WORKER_TLS_KEY_FILE \(worker_tls_key_file\) is not"):
        worker.check()


def _error(tls: TlsFiles, server: bool = True) -> str:
    with pytest.raises(TlsConfigError) as err:
        tls.server_credentials() if server else tls.channel_credentials()
    return str(err.value)


def test_each_bad_file_is_named_by_its_setting(certs, other_certs, tmp_path):
    p = "EXPORTER_"
    cert, key, ca = str(certs / "exporter.pem"), str(certs / "exporter-key.pem"), str(certs / "ca.pem")
    missing = str(tmp_path / "missing.pem")
    assert _error(TlsFiles(cert, missing, ca, p)) == \
        f"EXPORTER_TLS_KEY_FILE (tls_key_file): no such file: {missing}"
    assert _error(TlsFiles(missing, key, ca, p)) == \
        f"EXPORTER_TLS_CERT_FILE (tls_cert_file): no such file: {missing}"
    assert _error(TlsFiles(cert, key, missing, p)).startswith("EXPORTER_TLS_CA_FILE (tls_ca_file): no such file")
    assert "are not: a TLS server needs its own certificate" in _error(TlsFiles("", "", ca, p))
    assert "is set but EXPORTER_TLS_KEY_FILE (tls_key_file) is not" in _error(TlsFiles(cert, "", ca, p))
    # A key that is not the certificate's (another service's, another CA's).
    for wrong in (str(certs / "trainer-key.pem"), str(other_certs / "exporter-key.pem")):
        assert _error(TlsFiles(cert, wrong, ca, p), server=False) == \
            f"EXPORTER_TLS_KEY_FILE (tls_key_file): {wrong} is not the private key of the certificate in " \
            f"EXPORTER_TLS_CERT_FILE (tls_cert_file) ({cert})"
    # Not PEM; a key where a certificate belongs; a certificate where the key belongs.
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\x01 not a certificate")
    assert _error(TlsFiles(str(junk), key, ca, p)).endswith(f"{junk} is not a PEM file")
    assert _error(TlsFiles(cert, key, key, p)) == f"EXPORTER_TLS_CA_FILE (tls_ca_file): {key} holds no PEM certificate"
    assert _error(TlsFiles(cert, cert, ca, p)).endswith(f"{cert}: not a PEM private key")
    # An unreadable file.
    locked = tmp_path / "locked.pem"
    locked.mkdir()
    assert _error(TlsFiles(cert, str(locked), ca, p)).startswith(f"EXPORTER_TLS_KEY_FILE (tls_key_file): cannot read "
                                                                f"{locked}")


def test_an_encrypted_key_is_refused_and_no_message_quotes_a_key(certs, tmp_path):
    key = serialization.load_pem_private_key((certs / "exporter-key.pem").read_bytes(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    message = _error(TlsFiles(str(certs / "exporter.pem"), str(encrypted), "", "EXPORTER_"))
    assert message.endswith("it is encrypted (give an unencrypted key)")
    for path in (encrypted, certs / "exporter-key.pem"):
        for line in path.read_text().splitlines()[1:-1]:
            assert line not in message


def test_make_certs_writes_a_ca_and_a_certificate_per_service(certs):
    assert sorted(p.name for p in certs.iterdir()) == sorted(FILES)
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("exporter", "trainer", "gateway", "worker"):
        cert = x509.load_pem_x509_certificate((certs / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", name} <= set(san.get_values_for_type(x509.DNSName))
        assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {u._name for u in usages} == {"serverAuth", "clientAuth"}
        assert isinstance(serialization.load_pem_private_key((certs / f"{name}-key.pem").read_bytes(), None),
                          ec.EllipticCurvePrivateKey)
    for name in FILES:
        mode = stat.S_IMODE((certs / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), (name, oct(mode))


def test_make_certs_is_idempotent_and_repairs_what_is_missing(tmp_path):
    out = tmp_path / "certs"
    first = dev_certs.write_dev_certs(out)
    assert sorted(first.written) == sorted(FILES) and not first.kept
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = dev_certs.write_dev_certs(out)
    assert not again.written and sorted(again.kept) == sorted(FILES)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "trainer-key.pem").unlink()  # a lost key: its certificate is reissued with a new key, the rest kept
    (out / "gateway.pem").write_bytes((out / "exporter.pem").read_bytes())  # a wrong certificate
    third = dev_certs.write_dev_certs(out)
    assert sorted(third.written) == ["gateway-key.pem", "gateway.pem", "trainer-key.pem", "trainer.pem"]
    assert (out / "ca.pem").read_bytes() == before["ca.pem"]
    TlsFiles(str(out / "trainer.pem"), str(out / "trainer-key.pem"), str(out / "ca.pem")).check()
    (out / "ca-key.pem").unlink()  # a new CA: every certificate is reissued under it
    fourth = dev_certs.write_dev_certs(out)
    assert sorted(fourth.written) == sorted(FILES)


def test_the_make_target_runs_the_script(tmp_path):
    assert "scripts/dev_certs.py --out var/certs" in (REPO / "Makefile").read_text()
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "dev_certs.py"), "--out", str(tmp_path / "c"),
                          "--host", "training.example.org"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wrote ca.pem" in out.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "c" / "gateway.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "training.example.org" in san.get_values_for_type(x509.DNSName)
