"""A loopback Hugging Face Hub for offline tests: push and load models through the real `huggingface_hub` client.

    from hf_rnn.testing import LoopbackHub
    with LoopbackHub() as hub:                 # serves http://127.0.0.1:<port>
        os.environ["HF_ENDPOINT"] = hub.url    # before huggingface_hub is imported, or in a subprocess
        model.push_to_hub("me/tagger")

It speaks the part of the Hub HTTP API that `create_repo`, `upload_folder`/`push_to_hub`, `create_branch`,
`repo_info`, `list_repo_files`, `hf_hub_download` and `snapshot_download` use: repositories with branches and commits
kept in memory, every file stored as a regular git blob (so no Xet or LFS is involved), the headers that downloads
need, and the error codes that make the client raise its own clear exceptions. Standard library only.

`fail_next_commit()` drops the connection during the next commit, to test a push that dies midway.
"""

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

EMPTY_TREE = "0" * 40


def git_blob_sha(content: bytes) -> str:
    """The id git gives a file's content; the client compares it to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repository:
    kind: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> {path: content}
    messages: dict[str, str] = field(default_factory=dict)  # commit id -> summary

    def resolve(self, revision: str) -> str | None:
        """A branch name or a commit id -> commit id."""
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class LoopbackHub:
    """An in-memory Hub on 127.0.0.1 (a free port), served from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repositories: dict[str, Repository] = {}  # "kind:namespace/name" -> repository
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._fail_next_commit = False
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackHub":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next_commit(self) -> None:
        self._fail_next_commit = True

    def repository(self, repo_id: str, kind: str = "model") -> Repository:
        return self.repositories[f"{kind}:{repo_id}"]

    def files(self, repo_id: str, revision: str = "main", kind: str = "model") -> dict[str, bytes]:
        repository = self.repository(repo_id, kind)
        return dict(repository.commits[repository.resolve(revision)])

    # --- repository operations (called under the lock) -------------------------------------------------------

    def _new_commit(self, repository: Repository, files: dict[str, bytes], summary: str) -> str:
        digest = hashlib.sha1(f"{next(self._counter)}:{summary}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha(files[path]).encode())
        commit = digest.hexdigest()
        repository.commits[commit] = files
        repository.messages[commit] = summary
        return commit

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: tests read `hub.requests` instead
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_HEAD(self) -> None:
                self._dispatch("HEAD")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def _dispatch(self, method: str) -> None:
                path = urlsplit(self.path).path
                hub.requests.append((method, path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
                for pattern, route_method, handler in ROUTES:
                    match = re.fullmatch(pattern, path)
                    if match and (route_method == method or (route_method == "GET" and method == "HEAD")):
                        with hub._lock:
                            handler(self, method, body, *map(unquote, match.groups()))
                        return
                self._json({"error": f"loopback hub: no route for {method} {path}"}, 404)

            # --- responses ------------------------------------------------------------------------------------

            def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
                headers = {"X-Error-Code": code, "X-Error-Message": message}
                if commit:
                    headers["X-Repo-Commit"] = commit
                self._json({"error": message}, status, headers)

            def _repository(self, kind: str, repo_id: str) -> Repository | None:
                repository = hub.repositories.get(f"{kind}:{repo_id}")
                if repository is None:
                    self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return repository

            def _revision(self, kind: str, repo_id: str, revision: str) -> tuple[Repository, str] | None:
                """The repository and the commit a revision names; None after answering 404 with the right code."""
                repository = self._repository(kind, repo_id)
                if repository is None:
                    return None
                commit = repository.resolve(revision)
                if commit is None:
                    self._error(404, "RevisionNotFound", f"Revision {revision} not found")
                    return None
                return repository, commit

            # --- write side -----------------------------------------------------------------------------------

            def create_repo(self, method, body) -> None:
                request = json.loads(body or b"{}")
                kind = request.get("type") or "model"
                repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
                key = f"{kind}:{repo_id}"
                if key in hub.repositories:
                    self._json({"error": "You already created this repo", "url": f"{hub.url}/{repo_id}"}, 409)
                    return
                repository = Repository(kind)
                repository.branches["main"] = hub._new_commit(repository, {}, "initial commit")
                hub.repositories[key] = repository
                self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id})

            def validate_yaml(self, method, body) -> None:
                self._json({})

            def preupload(self, method, body, kind, repo_id, revision) -> None:
                repository = self._repository(kind, repo_id)
                if repository is None:
                    return
                commit = repository.resolve(revision)
                current = repository.commits.get(commit, {})
                files = [
                    {
                        "path": entry["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        **({"oid": git_blob_sha(current[entry["path"]])} if entry["path"] in current else {}),
                    }
                    for entry in json.loads(body)["files"]
                ]
                self._json({"files": files})

            def commit(self, method, body, kind, repo_id, revision) -> None:
                if hub._fail_next_commit:  # the Hub "dies" mid-push: no answer at all
                    hub._fail_next_commit = False
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                found = self._revision(kind, repo_id, revision)
                if found is None:
                    return
                repository, parent = found
                if revision not in repository.branches:
                    self._error(400, "RevisionNotFound", "commits go to a branch")
                    return
                files = dict(repository.commits[parent])
                summary = ""
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    entry = json.loads(line)
                    value = entry["value"]
                    if entry["key"] == "header":
                        summary = value.get("summary", "")
                    elif entry["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif entry["key"] == "deletedFile":
                        files.pop(value["path"], None)
                    elif entry["key"] == "deletedFolder":
                        prefix = value["path"].rstrip("/") + "/"
                        files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                    else:
                        self._json({"error": f"loopback hub: unsupported commit entry {entry['key']!r}"}, 400)
                        return
                commit = hub._new_commit(repository, files, summary)
                repository.branches[revision] = commit
                self._json(
                    {"commitOid": commit, "commitUrl": f"{hub.url}/{repo_id}/commit/{commit}", "pullRequestUrl": None}
                )

            def create_branch(self, method, body, kind, repo_id, branch) -> None:
                repository = self._repository(kind, repo_id)
                if repository is None:
                    return
                if branch in repository.branches:
                    self._json({"error": f"Reference {branch} already exists"}, 409)
                    return
                start = repository.resolve(json.loads(body or b"{}").get("startingPoint") or "main")
                repository.branches[branch] = start
                self._json({})

            # --- read side ------------------------------------------------------------------------------------

            def info(self, method, body, kind, repo_id, revision="main") -> None:
                found = self._revision(kind, repo_id, revision)
                if found is None:
                    return
                repository, commit = found
                files = repository.commits[commit]
                siblings = [
                    {"rfilename": p, "size": len(c), "blobId": git_blob_sha(c)} for p, c in sorted(files.items())
                ]
                self._json(
                    {
                        "id": repo_id,
                        "sha": commit,
                        "private": False,
                        "siblings": siblings,
                        "tags": [],
                        "lastModified": "2026-01-01T00:00:00.000Z",
                    }
                )

            def tree(self, method, body, kind, repo_id, revision, folder="") -> None:
                found = self._revision(kind, repo_id, revision)
                if found is None:
                    return
                repository, commit = found
                prefix = folder.strip("/") + "/" if folder.strip("/") else ""
                entries = [
                    {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
                    for path, content in sorted(repository.commits[commit].items())
                    if path.startswith(prefix)
                ]
                self._json(entries)

            def resolve_file(self, method, body, kind, repo_id, revision, path) -> None:
                found = self._revision(kind, repo_id, revision)
                if found is None:
                    return
                repository, commit = found
                content = repository.commits[commit].get(path)
                if content is None:
                    self._error(404, "EntryNotFound", f"{path} does not exist at {revision}", commit)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.send_header("ETag", f'"{git_blob_sha(content)}"')
                self.send_header("X-Repo-Commit", commit)
                self.end_headers()
                if method == "GET":
                    self.wfile.write(content)

        repo = r"(?P<kind>model|dataset|space)s/([^/]+/[^/]+)"
        ROUTES = [
            (r"/api/repos/create", "POST", lambda h, m, b: h.create_repo(m, b)),
            (r"/api/validate-yaml", "POST", lambda h, m, b: h.validate_yaml(m, b)),
            (rf"/api/{repo}/preupload/(.+)", "POST", Handler.preupload),
            (rf"/api/{repo}/commit/(.+)", "POST", Handler.commit),
            (rf"/api/{repo}/branch/(.+)", "POST", Handler.create_branch),
            (rf"/api/{repo}", "GET", Handler.info),
            (rf"/api/{repo}/revision/(.+)", "GET", Handler.info),
            (rf"/api/{repo}/tree/([^/]+)", "GET", Handler.tree),
            (rf"/api/{repo}/tree/([^/]+)/(.+)", "GET", Handler.tree),
            (
                r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)",
                "GET",
                lambda h, m, b, repo_id, rev, path: h.resolve_file(m, b, "dataset", repo_id, rev, path),
            ),
            (
                r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)",
                "GET",
                lambda h, m, b, repo_id, rev, path: h.resolve_file(m, b, "model", repo_id, rev, path),
            ),
        ]
        return Handler
