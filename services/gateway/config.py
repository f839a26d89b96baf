"""Process settings of the gateway, read once at start from GATEWAY_* variables (or a .env file)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    """Interface the HTTP server binds (0.0.0.0 in containers)."""
    port: int = 8080
    """HTTP port."""
    exporter_address: str = "127.0.0.1:50051"
    """The exporter's gRPC address."""
    trainer_address: str = "127.0.0.1:50052"
    """The trainer's gRPC address."""
    rpc_timeout_seconds: float = 10.0
    """Deadline of each unary gRPC call the gateway makes."""
    api_token: str | None = None
    """When set, every /api/ endpoint needs ``Authorization: Bearer <token>`` (401 otherwise); the dashboard
    pages, /healthz and the OpenAPI docs stay open. The gateway also sends it to the exporter and the trainer
    (gRPC metadata), so give the three services the same token."""
    tls_cert_file: str = ""
    """The client certificate (PEM) the gateway presents to the exporter and the trainer (mutual TLS)."""
    tls_key_file: str = ""
    """The private key (PEM, unencrypted) of ``tls_cert_file``."""
    tls_ca_file: str = ""
    """The CA certificate (PEM) the backends' certificates are verified against. Any of the three set: the
    gateway talks TLS to the backends (the system's roots without a CA)."""
    auth_database_url: str = "sqlite:///var/auth/keys.db"
    """SQLAlchemy URL of the keys store shared by the three services (API keys, hashed, and the audit log;
    ``python -m services.auth`` manages it). While it holds no key (and no ``api_token`` is set) every call is
    open, as on loopback today; with keys, every call needs ``authorization: Bearer <key>``."""
    log_level: str = "INFO"
