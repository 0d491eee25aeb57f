"""A local stand-in for the part of ModelScope's file API that ``snapshot_download`` and
``HubApi.upload_folder`` call.

The real ``modelscope`` client is pointed here with ``MODELSCOPE_DOMAIN``. Two
endpoints, read off the installed client (``modelscope_hub/_legacy_api.py``):

- ``GET /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True``:
  the file list, ``{"Code": 200, "Data": {"Files": [{Path, Name, Type, Size, Sha256}]}}``
- ``GET /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=P``: one file's bytes,
  honouring ``Range`` (the client resumes and splits large files with it).

Uploads (``modelscope_hub/_legacy_api.py``): ``POST /api/v1/models`` creates a repository
(``Path``, ``Name``); ``POST /api/v1/repos/models/{repo}/info/lfs/objects/batch`` answers
which blobs to send and where; ``PUT /blobs/{sha256}`` takes one; ``POST
/api/v1/repos/models/{repo}/commit/{revision}`` writes files from blobs or inline base64.

Errors use ModelScope's JSON body (``Code``, ``Message``, ``Success``) and status.
Every request is recorded, so tests can assert what the client asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

_FILES = re.compile(r"^/api/v1/models/([^/]+/[^/]+)/repo/files$")
_FILE = re.compile(r"^/api/v1/models/([^/]+/[^/]+)/repo$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_BATCH = re.compile(r"^/api/v1/repos/models/([^/]+/[^/]+)/info/lfs/objects/batch$")
_COMMIT = re.compile(r"^/api/v1/repos/models/([^/]+/[^/]+)/commit/([^/]+)$")
_BLOB = re.compile(r"^/blobs/([0-9a-f]{64})$")


@dataclass
class Repo:
    """One model repository: revision name -> {file path -> bytes}."""

    revisions: dict[str, dict[str, bytes]]

    @classmethod
    def from_folder(cls, folder: Path, revision: str = "master") -> Repo:
        files = {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        return cls({revision: files})


@dataclass
class FakeModelScope:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str | None = None  # when set, every request must carry it
    failures: dict[str, int] = field(default_factory=dict)  # path prefix -> 503s left
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status)
    blobs: dict[str, bytes] = field(default_factory=dict)  # uploaded, by sha256
    commits: list[str] = field(default_factory=list)  # their messages

    def __enter__(self) -> FakeModelScope:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()

    def fail_next(self, path_prefix: str, times: int) -> None:
        """Answer the next ``times`` requests whose path starts with this 503."""
        self.failures[path_prefix] = times

    def _take_failure(self, path: str) -> bool:
        for prefix, left in self.failures.items():
            if left > 0 and path.startswith(prefix):
                self.failures[prefix] = left - 1
                return True
        return False


def _file_entry(path: str, data: bytes) -> dict:
    return {
        "Path": path,
        "Name": path.rsplit("/", 1)[-1],
        "Type": "blob",
        "Size": len(data),
        "Sha256": hashlib.sha256(data).hexdigest(),
    }


def _handler_for(hub: FakeModelScope) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # the hub records requests itself
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            status = self._answer(url.path, query)
            hub.requests.append((self.path, status))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hub.requests.append((self.path, self._post(urlparse(self.path).path, body)))

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            blob = _BLOB.match(urlparse(self.path).path)
            if not self._authorized():
                status = self._error(401, "invalid or missing token")
            elif not blob or hashlib.sha256(body).hexdigest() != blob.group(1):
                status = self._error(400, "blob does not match its sha256")
            else:
                hub.blobs[blob.group(1)] = body
                status = self._json(200, {"Code": 200, "Success": True})
            hub.requests.append((self.path, status))

        def _authorized(self) -> bool:
            return not hub.token or self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _post(self, path: str, raw: bytes) -> int:
            if not self._authorized():
                return self._error(401, "invalid or missing token")
            body = json.loads(raw or b"{}")
            if path == "/api/v1/models":
                repo = f"{body['Path']}/{body['Name']}"
                hub.repos.setdefault(repo, Repo({"master": {}}))
                return self._ok({"Path": body["Path"], "Name": body["Name"]})
            if batch := _BATCH.match(path):
                if batch.group(1) not in hub.repos:
                    return self._error(404, f"model {batch.group(1)} not found")
                objects = [
                    {"oid": o["oid"], "size": o["size"], "actions": {}}
                    if o["oid"] in hub.blobs
                    else {**o, "actions": {"upload": {"href": f"{hub.url}/blobs/{o['oid']}"}}}
                    for o in body["objects"]
                ]
                return self._ok({"objects": objects})
            if commit := _COMMIT.match(path):
                repo = hub.repos.get(commit.group(1))
                if repo is None:
                    return self._error(404, f"model {commit.group(1)} not found")
                files = repo.revisions.setdefault(commit.group(2), {})
                for action in body["actions"]:
                    if action["type"] == "lfs":
                        files[action["path"]] = hub.blobs[action["sha256"]]
                    else:
                        files[action["path"]] = base64.b64decode(action["content"])
                hub.commits.append(body["commit_message"])
                return self._ok({"Revision": commit.group(2)})
            return self._error(404, f"no such endpoint {path}")

        def _ok(self, data: dict) -> int:
            return self._json(200, {"Code": 200, "Data": data, "Success": True})

        def _answer(self, path: str, query: dict[str, str]) -> int:
            if hub._take_failure(path):
                return self._error(503, "service unavailable")
            if not self._authorized():
                return self._error(401, "invalid or missing token")
            listing, single = _FILES.match(path), _FILE.match(path)
            match = listing or single
            if not match:
                return self._error(404, f"no such endpoint {path}")
            repo = hub.repos.get(match.group(1))
            if repo is None:
                return self._error(404, f"model {match.group(1)} not found")
            files = repo.revisions.get(query.get("Revision", "master"))
            if files is None:
                return self._error(404, f"revision {query.get('Revision')} not found")
            if listing:
                entries = [_file_entry(p, data) for p, data in files.items()]
                return self._json(200, {"Code": 200, "Data": {"Files": entries}, "Success": True})
            data = files.get(query.get("FilePath", ""))
            if data is None:
                return self._error(404, f"file {query.get('FilePath')} not found")
            return self._bytes(data)

        def _bytes(self, data: bytes) -> int:
            wanted = _RANGE.match(self.headers.get("Range", ""))
            status, start, end = 200, 0, len(data) - 1
            if wanted:
                status, start = 206, int(wanted.group(1))
                end = min(int(wanted.group(2) or end), end)
            body = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            self.wfile.write(body)
            return status

        def _error(self, status: int, message: str) -> int:
            return self._json(status, {"Code": status, "Message": message, "Success": False})

        def _json(self, status: int, payload: dict) -> int:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return status

    return Handler
