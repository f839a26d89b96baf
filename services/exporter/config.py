"""Process settings of the exporter, read once at start from EXPORTER_* variables (or a .env file)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExporterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTER_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    """Interface the gRPC server binds (0.0.0.0 in containers)."""
    port: int = 50051
    """gRPC port."""
    database_url: str = "sqlite:///var/exporter/debates.db"
    """SQLAlchemy URL of the debate store (SQLite file by default, PostgreSQL by URL)."""
    export_dir: Path = Path("var/exports")
    """Where WriteExport puts JSONL files."""
    samples_path: Path | None = None
    """JSONL of debates to load when the store is empty at start (None: the bundled sample debates)."""
    load_samples: bool = True
    """Whether to load the sample debates into an empty store at start."""
    export_batch: int = Field(default=64, ge=1, le=100_000)
    """Records per typed export message and per fetch from the database cursor (JSONL messages, the gateway's,
    are cut at about 48 KiB instead). Small messages keep the exporter -> gateway -> client pipeline moving;
    1,000 records (about 1 MB) per message halved the throughput in benchmarks/export_bench.py."""
    api_token: str | None = None
    """When set, every ExporterService call needs the metadata ``authorization: Bearer <token>`` (health and
    reflection stay open); the CLI's ``--address`` mode sends it."""
    tls_cert_file: str = ""
    """The server's TLS certificate (PEM); with ``tls_key_file``, gRPC is served over TLS. Empty: plaintext."""
    tls_key_file: str = ""
    """The private key (PEM, unencrypted) of ``tls_cert_file``."""
    tls_ca_file: str = ""
    """A CA certificate (PEM): clients must present a certificate it signed (mutual TLS)."""
    auth_database_url: str = "sqlite:///var/auth/keys.db"
    """SQLAlchemy URL of the keys store shared by the three services (API keys, hashed, and the audit log;
    ``python -m services.auth`` manages it). While it holds no key (and no ``api_token`` is set) every call is
    open, as on loopback today; with keys, every call needs ``authorization: Bearer <key>``."""
    log_level: str = "INFO"
    grace_seconds: float = 5.0
    """How long calls in flight may finish after SIGTERM."""
    api_token: str | None = None
    """When set, every ExporterService call needs the metadata ``authorization: Bearer <token>`` (health and
    reflection stay open)."""
