"""``python -m services.gateway`` runs the gateway's HTTP server."""

from __future__ import annotations

import uvicorn

from services.common.logs import setup_logging
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


def main() -> int:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
