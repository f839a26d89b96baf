"""``python -m services.common.healthcheck [--tls-env PREFIX] HOST:PORT``: exits 0 when the gRPC server there
reports SERVING.

Used by the container healthchecks (the images carry no grpc_health_probe binary). With ``--tls-env EXPORTER``
it connects over TLS with the files named by ``EXPORTER_TLS_CERT_FILE``, ``EXPORTER_TLS_KEY_FILE`` and
``EXPORTER_TLS_CA_FILE`` (the service's own settings: its certificate is also a client certificate), so it
works against a server that requires mutual TLS; plaintext when none of them is set."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.tls import TlsConfigError, TlsFiles, sync_channel

USAGE = "usage: python -m services.common.healthcheck [--tls-env PREFIX] HOST:PORT"


def main(argv: list[str]) -> int:
    tls = None
    if len(argv) == 3 and argv[0] == "--tls-env":
        prefix = argv[1].upper().rstrip("_") + "_"
        tls = TlsFiles(*(os.environ.get(f"{prefix}{f.upper()}", "") for f in ("tls_cert_file", "tls_key_file",
                                                                              "tls_ca_file")), env_prefix=prefix)
        argv = argv[2:]
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        channel = sync_channel(argv[0], tls)
    except TlsConfigError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    with channel as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            print(f"{argv[0]}: {exc.code().name}", file=sys.stderr)
            return 1
    print(f"{argv[0]}: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
