"""A loopback Hugging Face Hub for offline tests: push and load models through the real `huggingface_hub` client.

    from hf_rnn.testing.loopback_hub import LoopbackHub
    with LoopbackHub() as hub:                 # serves http://127.0.0.1:<port>; this process's client goes there
        model.push_to_hub("me/tagger")
        model = AutoModelForTokenClassification.from_pretrained("me/tagger")
        hub.files("me/tagger")                 # what was pushed: {path: bytes}

Inside the `with` (between `start()` and `stop()`), the client in this process talks to the loopback hub and to
nothing else: `huggingface_hub` reads `HF_ENDPOINT` once, when it is imported, into `huggingface_hub.constants`
(`ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE`) and into the `HfApi` instances made then (huggingface_hub's module-level
one behind `create_repo`, `upload_folder`, ..., and transformers' shared one behind `push_to_hub`/`from_pretrained`),
so setting the variable later changes nothing. `start()` sets those to the hub's URL instead, turns the client's
offline mode (`HF_HUB_OFFLINE`) off, and points the download cache (`HF_HUB_CACHE`) at a temporary folder, so that
nothing the loopback hub serves is mixed with the real Hub's files in the cache; `stop()` puts every value back and
deletes that folder. `datasets.config.HF_ENDPOINT` is redirected too when datasets was imported before. These are
process-wide settings: nest hubs (the inner one wins until it stops), do not interleave their lifetimes, and do not
use the real Hub from another thread meanwhile. `LoopbackHub(redirect_client=False)` leaves this process alone.

A client in another process reads the environment instead: start it with `HF_ENDPOINT=hub.url` and without
`HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE`, e.g. `env={**os.environ, "HF_ENDPOINT": hub.url}` minus those two, and an
empty `HF_HOME` so that its cache starts empty (what tests/test_hub.py does).

It speaks the part of the Hub HTTP API that `create_repo`, `upload_folder`/`push_to_hub` (with `create_pr`, which
opens `refs/pr/N`), `create_branch`, `repo_info`/`model_info` (with the card's `pipeline_tag`, `library_name`, `tags`
and `cardData`), `list_repo_files`, `list_repo_refs`, `list_repo_commits`, `hf_hub_download` and `snapshot_download`
use: repositories with branches, pull requests and commits kept in memory, every file stored as a regular git blob
(so no Xet or LFS is involved), the headers that downloads need, and the error codes that make the client raise its
own clear exceptions. The server is standard library and PyYAML (which huggingface_hub needs) only.

A request the real Hub would refuse gets the 4xx it would send, with a JSON message: bodies that are not what their
headers say, JSON or NDJSON that does not parse or has unknown fields, base64 that does not decode, commit paths
that could escape a checkout (`..`, absolute, backslashes, empty parts, `.git` in any case or Windows spelling) or be
both a file and a folder, branch names git refuses or that would shadow a pull request or a commit id, and card
metadata whose YAML aliases expand past 100,000 nodes (read once per commit, never per request). A bug in the hub
itself answers 500 with the exception, its traceback on stderr; no request is met with a dropped connection, except
on purpose: `fail_next_commit()` drops it during the next commit, to test a push that dies midway. Requests are
served one at a time under one lock, but answers are sent after it: a client that stops reading holds up no other.
It serves on loopback only (see `LoopbackHub`).
"""

import hashlib
import ipaddress
import itertools
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .loopback_store import (
    KINDS,
    MAX_BODY,
    PULL_REQUEST,
    REPO_NAME,
    USER,
    Commit,
    HubError,
    Repository,
    apply_operations,
    card_metadata,
    check_branch,
    check_path,
    field_of,
    git_blob_sha,
    json_object,
    parse_commit,
)

Response = tuple[int, dict[str, str], bytes]  # status, headers, body: what a route answers, sent after the lock


def _check_host(host: str, allow_remote: bool) -> None:
    """Refuse (or with `allow_remote`, warn about) a host that is not a loopback address: see `LoopbackHub`."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)}
    except socket.gaierror as error:
        raise ValueError(f"LoopbackHub(host={host!r}): not an address of this machine ({error})") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)
    if not remote:
        return
    message = (
        f"LoopbackHub(host={host!r}) listens on {', '.join(remote)}, not only on loopback: it has no authentication, "
        "so anyone who can reach this port can push to it and read from it"
    )
    if not allow_remote:
        raise ValueError(message + "; serve on 127.0.0.1, or pass allow_remote=True if that is what you want")
    warnings.warn(message, stacklevel=3)


def redirect_client(url: str) -> list[tuple[object, str, object]]:
    """Point this process's Hub client at `url` (see the module docstring); returns what `restore` puts back."""
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    try:
        import transformers.utils.hub as transformers_hub
    except ImportError:
        transformers_hub = None
    saved: list[tuple[object, str, object]] = []

    def put(owner, name: str, value) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    cache = tempfile.mkdtemp(prefix="hf_rnn_loopback_cache_")
    put(constants, "ENDPOINT", url)
    put(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    put(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(url).hostname})
    put(constants, "HF_HUB_OFFLINE", False)
    put(constants, "HF_HUB_CACHE", cache)
    put(hf_api.api, "endpoint", url)
    if transformers_hub is not None and getattr(transformers_hub, "_hf_api", None) is not None:
        put(transformers_hub._hf_api, "endpoint", url)
    if (datasets_config := sys.modules.get("datasets.config")) is not None:
        put(datasets_config, "HF_ENDPOINT", url)
        put(datasets_config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    saved.append((None, cache, None))  # the temporary cache, deleted by `restore`
    return saved


def restore(saved: list[tuple[object, str, object]]) -> None:
    """Undo `redirect_client`, last change first, and delete its temporary cache."""
    for owner, name, value in reversed(saved):
        if owner is None:
            shutil.rmtree(name, ignore_errors=True)
        else:
            setattr(owner, name, value)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    api = getattr(transformers_hub, "_hf_api", None)
    if api is not None and not any(owner is api for owner, _, _ in saved):
        transformers_hub._hf_api = None  # made inside the `with` with the loopback URL: made afresh on next use


POLL_SECONDS = 0.01  # how often the serving loop looks for `stop()`: what `stop()` waits at most


class LoopbackHub:
    """An in-memory Hub on 127.0.0.1 (a free port), served from a daemon thread.

    It has no accounts and no tokens: whoever reaches its port can push, overwrite and read. So it serves on a
    loopback address only; `allow_remote=True` lets it listen elsewhere (e.g. "0.0.0.0", for a container's clients),
    with a warning."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, redirect_client: bool = True, allow_remote: bool = False
    ):
        _check_host(host, allow_remote)
        self.repositories: dict[str, Repository] = {}  # "kind:namespace/name" -> repository
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._fail_next_commit = False
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._redirect_client = redirect_client
        self._saved: list[tuple[object, str, object]] | None = None  # what `redirect_client` changed, while serving

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackHub":
        """Serve, and (with `redirect_client`) point this process's Hub client here until `stop()`."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,), daemon=True)
        self._thread.start()
        if self._redirect_client:
            self._saved = redirect_client(self.url)
        return self

    def stop(self) -> None:
        if self._saved is not None:
            saved, self._saved = self._saved, None
            restore(saved)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next_commit(self) -> None:
        self._fail_next_commit = True

    def repo_url(self, kind: str, repo_id: str) -> str:
        """Where a repository lives; the client reads the kind back from it (`RepoUrl`, `CommitInfo.repo_url`)."""
        return f"{self.url}/{'' if kind == 'model' else kind + 's/'}{repo_id}"

    def repository(self, repo_id: str, kind: str = "model") -> Repository:
        return self.repositories[f"{kind}:{repo_id}"]

    def files(self, repo_id: str, revision: str = "main", kind: str = "model") -> dict[str, bytes]:
        repository = self.repository(repo_id, kind)
        return dict(repository.commits[repository.resolve(revision)].files)

    # --- repository operations (called under the lock) -------------------------------------------------------

    def _new_commit(
        self, repository: Repository, files: dict[str, bytes], title: str, parent: str | None = None, message: str = ""
    ) -> str:
        digest = hashlib.sha1(f"{next(self._counter)}:{title}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha(files[path]).encode())
        commit = digest.hexdigest()
        repository.commits[commit] = Commit(files, title, message, parent)
        return commit

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # quiet: tests read `hub.requests` instead
                pass

            def send_response(self, code: int, message: str | None = None) -> None:
                self.responded = True
                super().send_response(code, message)

            def _dispatch(self) -> None:
                """Every method comes here, so that what the hub does not serve is a JSON 404, not an HTML 501."""
                method, path = self.command, urlsplit(self.path).path
                hub.requests.append((method, path))
                self.responded = False
                try:
                    body = self._body()
                    for pattern, route_method, handler in ROUTES:
                        match = re.fullmatch(pattern, path)
                        if match and (route_method == method or (route_method == "GET" and method == "HEAD")):
                            # the answer is made under the lock and sent after it, so that a client that reads
                            # slowly (or never) holds up no other request
                            with hub._lock:
                                response = handler(self, method, body, *map(unquote, match.groups()))
                            if response is not None:
                                self._send(*response)
                            return
                    raise HubError(404, f"loopback hub: no route for {method} {path}")
                except HubError as error:
                    self._send(*self._error(error))
                except ConnectionError:  # the client went away: nobody to answer
                    self.close_connection = True
                except Exception as error:  # a bug in the hub: say so rather than drop the connection
                    traceback.print_exc()
                    self.close_connection = True
                    if not self.responded:
                        message = f"loopback hub: internal error: {type(error).__name__}: {error}"
                        self._send(*self._json({"error": message}, 500))

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

            def _body(self) -> bytes:
                """The request body, exactly as long as Content-Length says; refused (closing the connection, whose
                next request could not be found) when the length is missing, absurd, or more than was sent."""
                length = self.headers.get("Content-Length", "0")
                if "Transfer-Encoding" in self.headers:
                    refusal = HubError(411, "loopback hub: send the body with a Content-Length, not chunked")
                elif not re.fullmatch(r"[0-9]{1,19}", length):
                    refusal = HubError(400, f"Content-Length {length!r} is not a number of bytes")
                elif int(length) > MAX_BODY:
                    refusal = HubError(413, f"Content-Length {length} is over the loopback hub's {MAX_BODY} bytes")
                else:
                    body = self.rfile.read(int(length))
                    if len(body) == int(length):
                        return body
                    refusal = HubError(400, f"the body ended after {len(body)} of {length} bytes (Content-Length)")
                self.close_connection = True
                raise refusal

            # --- responses ------------------------------------------------------------------------------------

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                """Write one answer: the headers, then (but for HEAD) the body, each sent at once (TCP_NODELAY: no
                40 ms wait for the client's delayed acknowledgement of the headers on a kept-alive connection)."""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, payload, status: int = 200, headers: dict | None = None) -> Response:
                return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()

            def _error(self, error: HubError) -> Response:
                headers = {"X-Error-Message": ascii(error.message)[1:-1]}  # no line breaks or non-latin-1 in a header
                if error.code:
                    headers["X-Error-Code"] = error.code
                if error.commit:
                    headers["X-Repo-Commit"] = error.commit
                return self._json({"error": error.message}, error.status, headers)

            def _repository(self, kind: str, repo_id: str) -> Repository:
                repository = hub.repositories.get(f"{kind}:{repo_id}")
                if repository is None:
                    raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
                return repository

            def _flag(self, name: str) -> bool:
                """A query parameter the client sets to 1 (`create_pr`, `include_prs`)."""
                return parse_qs(urlsplit(self.path).query).get(name) == ["1"]

            def _revision(self, kind: str, repo_id: str, revision: str) -> tuple[Repository, str]:
                """The repository and the commit a revision names (404 with the client's codes otherwise)."""
                repository = self._repository(kind, repo_id)
                commit = repository.resolve(revision)
                if commit is None:
                    raise HubError(404, f"Revision {revision} not found", "RevisionNotFound")
                return repository, commit

            # --- write side -----------------------------------------------------------------------------------

            def create_repo(self, method, body) -> Response:
                request = json_object(body)
                kind = field_of(request, "type", str, "create", optional=True) or "model"
                if kind not in KINDS:
                    raise HubError(400, f"create: repository type {kind!r} is not one of {KINDS}")
                name = field_of(request, "name", str, "create")
                namespace = field_of(request, "organization", str, "create", optional=True) or USER
                for part in (namespace, name):
                    if not REPO_NAME.fullmatch(part):
                        raise HubError(400, f"create: {part!r} must be letters, digits, '-', '_', '.' (no '--', '..')")
                repo_id = f"{namespace}/{name}"
                key = f"{kind}:{repo_id}"
                if key in hub.repositories:
                    return self._json(
                        {"error": "You already created this repo", "url": hub.repo_url(kind, repo_id)}, 409
                    )
                repository = Repository(kind)
                repository.branches["main"] = hub._new_commit(repository, {}, "initial commit")
                hub.repositories[key] = repository
                return self._json({"url": hub.repo_url(kind, repo_id), "name": repo_id})

            def validate_yaml(self, method, body) -> Response:
                try:
                    card_metadata(field_of(json_object(body), "content", str, "validate-yaml"))
                except ValueError as error:  # the client reads `errors` into its own ValueError
                    return self._json(
                        {"error": "Invalid metadata in README.md", "errors": [{"message": str(error)}]}, 400
                    )
                return self._json({})

            def preupload(self, method, body, kind, repo_id, revision) -> Response:
                repository, commit = self._revision(kind, repo_id, revision)
                current = repository.commits[commit].files
                files = []
                for entry in field_of(json_object(body), "files", list, "preupload"):
                    if not isinstance(entry, dict):
                        raise HubError(400, "preupload: each of 'files' must be a JSON object")
                    path = check_path(field_of(entry, "path", str, "preupload"), "preupload")
                    files.append(
                        {
                            "path": path,
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            **({"oid": git_blob_sha(current[path])} if path in current else {}),
                        }
                    )
                return self._json({"files": files})

            def commit(self, method, body, kind, repo_id, revision) -> Response | None:
                if hub._fail_next_commit:  # the Hub "dies" mid-push: no answer at all
                    hub._fail_next_commit = False
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                repository, head = self._revision(kind, repo_id, revision)
                open_pull_request = PULL_REQUEST.fullmatch(revision)  # pushing to refs/pr/N moves that ref only
                if revision not in repository.branches and not open_pull_request:
                    raise HubError(
                        400, "commits go to a branch or an open pull request (refs/pr/N)", "RevisionNotFound"
                    )
                header, operations = parse_commit(body)
                parent = repository.find_commit(header["parentCommit"]) if "parentCommit" in header else head
                pull_request = self._flag("create_pr")  # a new refs/pr/N from the parent; the branch stays
                if parent != head and not pull_request:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
                files = apply_operations(repository.commits[parent].files, operations)
                commit = hub._new_commit(repository, files, header["summary"], parent, header.get("description", ""))
                url = hub.repo_url(kind, repo_id)
                number = None  # of the pull request the commit lands in
                if pull_request:
                    repository.pull_requests.append(commit)
                    repository.pull_request_titles.append(header["summary"])
                    number = len(repository.pull_requests)
                elif open_pull_request:
                    number = int(open_pull_request[1])
                    repository.pull_requests[number - 1] = commit
                else:
                    repository.branches[revision] = commit
                pr_url = f"{url}/discussions/{number}" if number else None
                return self._json(
                    {"commitOid": commit, "commitUrl": f"{url}/commit/{commit}", "pullRequestUrl": pr_url}
                )

            def open_pull_request(self, method, body, kind, repo_id) -> Response:
                """`create_pull_request` (what `upload_folder(create_pr=True)` calls first): refs/pr/N starts at main's
                head and takes the commits pushed to it. Plain discussions (no pull request) are not kept."""
                repository = self._repository(kind, repo_id)
                request = json_object(body)
                title = field_of(request, "title", str, "discussion")
                if request.get("pullRequest") is not True:
                    raise HubError(400, "loopback hub: only pull requests are kept, not discussions")
                repository.pull_requests.append(repository.branches["main"])
                repository.pull_request_titles.append(title)
                number = len(repository.pull_requests)
                return self._json({"num": number, "url": f"{hub.repo_url(kind, repo_id)}/discussions/{number}"})

            def pull_request(self, method, body, kind, repo_id, number) -> Response:
                repository = self._repository(kind, repo_id)
                if not 1 <= int(number) <= len(repository.pull_requests):
                    raise HubError(404, f"Discussion {number} not found")
                return self._json(
                    {
                        "num": int(number),
                        "title": repository.pull_request_titles[int(number) - 1],
                        "author": {"name": USER},
                        "createdAt": repository.commits[repository.pull_requests[int(number) - 1]].date,
                        "status": "open",
                        "repo": {"name": repo_id, "type": kind},
                        "isPullRequest": True,
                        "events": [],
                        "changes": {"base": "refs/heads/main"},
                        "filesWithConflicts": [],
                    }
                )

            def create_branch(self, method, body, kind, repo_id, branch) -> Response:
                repository = self._repository(kind, repo_id)
                start = field_of(json_object(body), "startingPoint", str, "branch", optional=True) or "main"
                check_branch(branch)
                if branch in repository.branches:
                    return self._json({"error": f"Reference {branch} already exists"}, 409)
                repository.branches[branch] = self._revision(kind, repo_id, start)[1]
                return self._json({})

            # --- read side ------------------------------------------------------------------------------------

            def info(self, method, body, kind, repo_id, revision="main") -> Response:
                repository, commit = self._revision(kind, repo_id, revision)
                entry = repository.commits[commit]
                siblings = [
                    {"rfilename": p, "size": len(c), "blobId": git_blob_sha(c)} for p, c in sorted(entry.files.items())
                ]
                card = entry.card  # read at commit (unreadable: {}; validate-yaml refuses it first)
                return self._json(
                    {
                        "id": repo_id,
                        "sha": commit,
                        "private": False,
                        "siblings": siblings,
                        "tags": card["tags"] if isinstance(card.get("tags"), list) else [],
                        "pipeline_tag": card.get("pipeline_tag"),
                        "library_name": card.get("library_name"),
                        **({"cardData": card} if card else {}),
                        "lastModified": entry.date,
                    }
                )

            def refs(self, method, body, kind, repo_id) -> Response:
                repository = self._repository(kind, repo_id)
                refs = {
                    "branches": [
                        {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}
                        for name, commit in sorted(repository.branches.items())
                    ],
                    "converts": [],
                    "tags": [],
                }
                if self._flag("include_prs"):
                    refs["pullRequests"] = [
                        {"name": str(number), "ref": f"refs/pr/{number}", "targetCommit": commit}
                        for number, commit in enumerate(repository.pull_requests, 1)
                    ]
                return self._json(refs)

            def commits(self, method, body, kind, repo_id, revision) -> Response:
                """The history of a revision, newest first (one page: the client follows no `Link` here)."""
                repository, commit = self._revision(kind, repo_id, revision)
                history = []
                while commit is not None:
                    entry = repository.commits[commit]
                    history.append(
                        {
                            "id": commit,
                            "title": entry.title,
                            "message": entry.message,
                            "authors": [{"user": USER}],
                            "date": entry.date,
                        }
                    )
                    commit = entry.parent
                return self._json(history)

            def tree(self, method, body, kind, repo_id, revision, folder="") -> Response:
                repository, commit = self._revision(kind, repo_id, revision)
                prefix = folder.strip("/") + "/" if folder.strip("/") else ""
                entries = [
                    {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
                    for path, content in sorted(repository.commits[commit].files.items())
                    if path.startswith(prefix)
                ]
                return self._json(entries)

            def resolve_file(self, method, body, kind, repo_id, revision, path) -> Response:
                repository, commit = self._revision(kind, repo_id, revision)
                content = repository.commits[commit].files.get(path)
                if content is None:
                    raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound", commit)
                headers = {"Content-Type": "application/octet-stream", "ETag": f'"{git_blob_sha(content)}"'}
                return 200, {**headers, "X-Repo-Commit": commit}, content  # (bytes are immutable: sent unlocked)

        repo = rf"(?P<kind>{'|'.join(KINDS)})s/([^/]+/[^/]+)"
        ROUTES = [
            (r"/api/repos/create", "POST", lambda h, m, b: h.create_repo(m, b)),
            (r"/api/validate-yaml", "POST", lambda h, m, b: h.validate_yaml(m, b)),
            (rf"/api/{repo}/preupload/(.+)", "POST", Handler.preupload),
            (rf"/api/{repo}/commit/(.+)", "POST", Handler.commit),
            (rf"/api/{repo}/branch/(.+)", "POST", Handler.create_branch),
            (rf"/api/{repo}/discussions", "POST", Handler.open_pull_request),
            (rf"/api/{repo}/discussions/([1-9][0-9]{{0,8}})", "GET", Handler.pull_request),
            (rf"/api/{repo}", "GET", Handler.info),
            (rf"/api/{repo}/revision/(.+)", "GET", Handler.info),
            (rf"/api/{repo}/refs", "GET", Handler.refs),
            (rf"/api/{repo}/commits/(.+)", "GET", Handler.commits),
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
