"""Certificates for the TLS tests, made by the code ``make certs`` runs (scripts/dev_certs.py): the product's
development CA and one from another CA (a stranger's), each in a session tmp folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from services.common.tls import TlsFiles
from tests.conftest import REPO


def _dev_certs_module():
    spec = importlib.util.spec_from_file_location("dev_certs", REPO / "scripts" / "dev_certs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev_certs"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dev_certs = _dev_certs_module()


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """var/certs/ as ``make certs`` writes it."""
    folder = tmp_path_factory.mktemp("certs")
    dev_certs.write_dev_certs(folder)
    return folder


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory) -> Path:
    """The same files from another CA: valid certificates the product's services must not accept."""
    folder = tmp_path_factory.mktemp("other-certs")
    dev_certs.write_dev_certs(folder)
    return folder


def tls_files(folder: Path, name: str | None, ca: Path | None = None) -> TlsFiles:
    """``name``'s certificate and key from ``folder`` (none for None) and ``ca`` (default: the folder's CA)."""
    cert, key = (str(folder / f"{name}.pem"), str(folder / f"{name}-key.pem")) if name else ("", "")
    return TlsFiles(cert, key, str(ca or folder / "ca.pem"))


def tls_settings(folder: Path, name: str) -> dict[str, str]:
    """The three settings of service ``name`` (mutual TLS), as keyword arguments of its settings class."""
    return {"tls_cert_file": str(folder / f"{name}.pem"), "tls_key_file": str(folder / f"{name}-key.pem"),
            "tls_ca_file": str(folder / "ca.pem")}


from tests.trainer.conftest import tiny_models_dir  # noqa: E402,F401 - the session fixture, shared
