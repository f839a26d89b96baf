"""``python -m services.gateway`` runs the gateway's HTTP server (REST API, event streams and the dashboard) in
front of the exporter and the trainer. Settings come from ``GATEWAY_*`` environment variables (see the README's
settings table)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import uvicorn

from services.auth.authn import check_exposure
from services.common.logs import setup_logging
from services.common.tls import TlsFiles, check_at_start
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


class _Server(uvicorn.Server):
    """Uvicorn re-raises SIGTERM after its graceful shutdown, so the process would report death by signal;
    here SIGTERM/SIGINT only ask for the graceful shutdown and the process exits 0."""

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    parser.parse_args(argv)
    settings = GatewaySettings()
    check_at_start(TlsFiles.from_settings(settings))
    setup_logging("gateway", settings.log_level)
    app = create_app(settings)
    check_exposure("gateway", settings.host, app.state.auth)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    asyncio.run(_Server(config).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
