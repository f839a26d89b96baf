"""A model hub on loopback: the URL layout and headers the real ``huggingface_hub`` client needs, serving model
folders from disk.

- ``GET /api/models/{org}/{name}[/revision/{rev}]`` (``?blobs=true``): id, sha, config, siblings with size,
  blobId and lfs (sha256) — ``HfApi.model_info(files_metadata=True)``;
- ``HEAD|GET /{org}/{name}/resolve/{rev}/{file}``: ETag, X-Repo-Commit, Content-Length, Accept-Ranges and
  ``Range: bytes=N-`` (206) — ``hf_hub_url`` + ``http_get``;
- unknown repos: 404 ``X-Error-Code: RepoNotFound``; gated repos without the right bearer token: 401
  ``X-Error-Code: GatedRepo`` on their files (their metadata stays public, as on the real hub).

Knobs: ``rate`` (bytes per second per response, to make a kill land mid-file), ``corrupt`` (file names served
with a flipped byte while the metadata keeps the true checksum). ``requests`` records (method, path, range).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")


@dataclass
class Repo:
    folder: Path
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    gated_token: str | None = None
    """When set: the files need ``Authorization: Bearer <gated_token>``."""
    info_config: bool = True
    """Whether the model info carries ``config`` (architectures, model_type) as the real hub's does; without,
    the client reads ``config.json``."""


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    rate: float | None = None
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, folder: Path, **kw) -> Repo:
        self.repos[repo_id] = Repo(Path(folder), **kw)
        return self.repos[repo_id]

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ranges(self, name: str) -> list[str]:
        """The Range headers of the GETs of file ``name``."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + name)]


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _error(self, status: int, code: str, message: str = "") -> None:
        body = json.dumps({"error": message or code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.fake.requests.append((self.command, path, self.headers.get("Range", "")))
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._model_info("/".join(parts[2:4]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), "/".join(parts[4:]))
        self._error(404, "EntryNotFound")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    def _model_info(self, repo_id: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        siblings = []
        for f in sorted(p for p in repo.folder.rglob("*") if p.is_file()):
            data = f.read_bytes()
            name = f.relative_to(repo.folder).as_posix()
            entry = {"rfilename": name, "size": len(data), "blobId": _blob_id(data)}
            if name.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        info = {"id": repo_id, "sha": repo.sha, "private": False,
                "gated": "manual" if repo.gated_token else False, "siblings": siblings}
        if repo.info_config:
            config = json.loads((repo.folder / "config.json").read_text())
            info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
        body = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, repo_id: str, name: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            return self._error(401, "GatedRepo", "Access to model is restricted")
        f = repo.folder / name
        if not f.is_file():
            return self._error(404, "EntryNotFound")
        data = f.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else _blob_id(data)
        if name in self.fake.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        body = data[start:]
        chunk = 8192
        try:
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i:i + chunk])
                if self.fake.rate:
                    time.sleep(chunk / self.fake.rate)
        except (BrokenPipeError, ConnectionResetError):
            pass
