"""``make certs`` (``python scripts/dev_certs.py [--out var/certs]``): a development CA and one certificate per
service, for TLS and mutual TLS between the gateway, the exporter, the trainer and its workers.

Writes into the folder (``var/certs/`` by default):

- ``ca.pem`` (the CA certificate every service is given as ``tls_ca_file``) and ``ca-key.pem`` (the CA's key,
  needed only to issue more certificates here; never give it to a service);
- ``exporter.pem``/``exporter-key.pem``, ``trainer.pem``/``trainer-key.pem``, ``gateway.pem``/``gateway-key.pem``,
  ``worker.pem``/``worker-key.pem``: each valid as a server and as a client certificate, for the names
  ``localhost``, ``127.0.0.1``, ``::1``, the service's compose name (``exporter``, ``trainer``, ``gateway``) and any
  ``--host`` given.

Idempotent: a file that is already there and valid (issued by the CA there, its key matching, the names present,
more than 30 days left) is kept; anything missing or stale is (re)issued. Keys are EC P-256, unencrypted, mode
0600. These are development certificates: for a real deployment, issue the same files from your own CA.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("exporter", "trainer", "gateway", "worker")
BASE_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_WITHIN = dt.timedelta(days=30)
ORG = "Aragora training (development)"


@dataclass
class Outcome:
    """What a run did: the files it (re)wrote and the ones it kept."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, private: bool) -> None:
    """Writes atomically; a key is created 0600 (never readable by others, even for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(cert_path: Path, key_path: Path):
    """(certificate, key) when both files exist, parse and belong together; else None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() > RENEW_WITHIN and cert.not_valid_before_utc <= _now()


def _ca(out: Path, outcome: Outcome) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """The CA there when valid, else a new one; the flag says it is new (every leaf is then reissued)."""
    loaded = _load(out / "ca.pem", out / "ca-key.pem")
    if loaded is not None and _fresh(loaded[0]):
        outcome.kept += ["ca.pem", "ca-key.pem"]
        return loaded[0], loaded[1], False
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Aragora training development CA")
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(out / "ca-key.pem", _key_pem(key), private=True)
    _write(out / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), private=False)
    outcome.written += ["ca.pem", "ca-key.pem"]
    return cert, key, True


def _leaf_ok(cert: x509.Certificate, ca: x509.Certificate, hosts: list[str]) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.InvalidSignature, x509.ExtensionNotFound):
        return False
    return _fresh(cert) and all(n in have for n in _san(hosts))


def _issue(name: str, hosts: list[str], ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey):
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_dev_certs(out: Path | str = "var/certs", services: tuple[str, ...] = SERVICES,
                    extra_hosts: tuple[str, ...] = ()) -> Outcome:
    """Makes ``out`` hold a valid development CA and a certificate per service (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    ca, ca_key, new_ca = _ca(out, outcome)
    for name in services:
        hosts = [*BASE_HOSTS, name, *extra_hosts]
        cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
        loaded = None if new_ca else _load(cert_path, key_path)
        if loaded is not None and _leaf_ok(loaded[0], ca, hosts):
            outcome.kept += [cert_path.name, key_path.name]
            continue
        cert, key = _issue(name, hosts, ca, ca_key)
        _write(key_path, _key_pem(key), private=True)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
        outcome.written += [cert_path.name, key_path.name]
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/dev_certs.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="var/certs", help="the folder to write into (default: var/certs)")
    parser.add_argument("--host", action="append", default=[],
                        help="another name or IP address every certificate is valid for (repeatable)")
    args = parser.parse_args(argv)
    outcome = write_dev_certs(args.out, extra_hosts=tuple(args.host))
    if outcome.written:
        print(f"{args.out}: wrote {', '.join(outcome.written)}")
    if outcome.kept:
        print(f"{args.out}: kept {', '.join(outcome.kept)} (still valid)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
