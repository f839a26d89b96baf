"""TLS and mutual TLS for the gRPC servers and clients of the product, by setting.

Every service has three settings, empty by default (plaintext, as on a laptop):

- ``tls_cert_file`` and ``tls_key_file``: the service's own certificate (PEM, the chain when there is one) and its
  private key. A server with both serves TLS; a client with both presents them as its client certificate.
- ``tls_ca_file``: the certificate authority (PEM) the peer's certificate must chain to. A server with it requires
  and verifies a client certificate (mutual TLS); a client with it verifies the server against it (without it, a
  TLS client trusts the system's roots).

A client uses TLS as soon as any of the three is set. ``make certs`` (``scripts/dev_certs.py``) writes a
development CA and a certificate per service into ``var/certs/``.

Files are read once, at start; a missing, unreadable or mismatched file is a ``TlsConfigError`` naming the
setting (its environment variable), never the key's contents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

FIELDS = ("tls_cert_file", "tls_key_file", "tls_ca_file")


class TlsConfigError(ValueError):
    """A TLS setting that cannot be used: its message names the setting and says why."""


@dataclass(frozen=True)
class TlsFiles:
    """The three TLS settings of one process, and the prefix of their environment variables (for messages)."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    env_prefix: str = ""
    field_prefix: str = ""
    """Set for a second pair of the same service (the trainer's ``worker_`` client certificate)."""

    @classmethod
    def from_settings(cls, settings: object) -> TlsFiles:
        """The TLS settings of a service's settings object (``EXPORTER_``, ``TRAINER_``, ``GATEWAY_`` ...)."""
        prefix = str(getattr(settings, "model_config", {}).get("env_prefix", ""))
        return cls(*(str(getattr(settings, name, "") or "") for name in FIELDS), env_prefix=prefix)

    @property
    def enabled(self) -> bool:
        """Whether a client uses TLS (any of the three is set)."""
        return bool(self.cert_file or self.key_file or self.ca_file)

    def name(self, field: str) -> str:
        """How a setting is named in a message: ``EXPORTER_TLS_KEY_FILE (tls_key_file)``."""
        field = self.field_prefix + field
        return f"{self.env_prefix}{field.upper()} ({field})" if self.env_prefix else field

    def _read(self, field: str, path: str) -> bytes:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise TlsConfigError(f"{self.name(field)}: no such file: {path}") from None
        except OSError as exc:
            raise TlsConfigError(f"{self.name(field)}: cannot read {path}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in data:
            raise TlsConfigError(f"{self.name(field)}: {path} is not a PEM file")
        return data

    def _pair(self) -> tuple[bytes, bytes]:
        """(certificate chain, private key), checked to belong together."""
        if bool(self.cert_file) != bool(self.key_file):
            have, missing = ("tls_cert_file", "tls_key_file") if self.cert_file else ("tls_key_file", "tls_cert_file")
            raise TlsConfigError(f"{self.name(have)} is set but {self.name(missing)} is not: "
                                 "a certificate and its private key go together")
        cert = self._read("tls_cert_file", self.cert_file)
        key = self._read("tls_key_file", self.key_file)
        _check_pair(self, cert, key)
        return cert, key

    def _ca(self) -> bytes | None:
        if not self.ca_file:
            return None
        ca = self._read("tls_ca_file", self.ca_file)
        _load_certs(self, "tls_ca_file", self.ca_file, ca)
        return ca

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials for a server (mutual TLS with a CA); None when no TLS setting is set (plaintext)."""
        import grpc

        if not self.enabled:
            return None
        if not (self.cert_file or self.key_file):
            raise TlsConfigError(f"{self.name('tls_ca_file')} is set but {self.name('tls_cert_file')} and "
                                 f"{self.name('tls_key_file')} are not: a TLS server needs its own certificate")
        cert, key = self._pair()
        ca = self._ca()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for a client (with its client certificate when it has one); None for plaintext."""
        import grpc

        if not self.enabled:
            return None
        cert, key = self._pair() if (self.cert_file or self.key_file) else (None, None)
        return grpc.ssl_channel_credentials(root_certificates=self._ca(), private_key=key, certificate_chain=cert)

    def check(self) -> None:
        """Reads and checks every file that is set (a service calls it at start, to fail before it serves)."""
        if self.enabled:
            if self.cert_file or self.key_file:
                self._pair()
            self._ca()


def check_at_start(tls: TlsFiles) -> TlsFiles:
    """``tls`` of a service about to start, checked; exits with the error naming the setting."""
    try:
        tls.check()
    except TlsConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    return tls


def _load_certs(tls: TlsFiles, field: str, path: str, data: bytes) -> list:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TlsConfigError(f"{tls.name(field)}: {path} holds no PEM certificate")
    return certs


def _check_pair(tls: TlsFiles, cert: bytes, key: bytes) -> None:
    from cryptography.hazmat.primitives import serialization

    leaf = _load_certs(tls, "tls_cert_file", tls.cert_file, cert)[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        # The exception never quotes the key; "Bad decrypt"/"password" say it is encrypted.
        why = "it is encrypted (give an unencrypted key)" if isinstance(exc, TypeError) else "not a PEM private key"
        raise TlsConfigError(f"{tls.name('tls_key_file')}: {tls.key_file}: {why}") from None
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, raw) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, raw):
        raise TlsConfigError(f"{tls.name('tls_key_file')}: {tls.key_file} is not the private key of the "
                             f"certificate in {tls.name('tls_cert_file')} ({tls.cert_file})")


def aio_channel(address: str, tls: TlsFiles | None, options: Sequence = (), interceptors: Sequence = ()
                ) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``address``: TLS when ``tls`` is enabled, plaintext otherwise."""
    import grpc

    creds = tls.channel_credentials() if tls is not None else None
    if creds is None:
        return grpc.aio.insecure_channel(address, options=list(options), interceptors=list(interceptors) or None)
    return grpc.aio.secure_channel(address, creds, options=list(options), interceptors=list(interceptors) or None)


def sync_channel(address: str, tls: TlsFiles | None, options: Sequence = ()) -> grpc.Channel:
    """A blocking channel to ``address``: TLS when ``tls`` is enabled, plaintext otherwise."""
    import grpc

    creds = tls.channel_credentials() if tls is not None else None
    if creds is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, creds, options=list(options))
