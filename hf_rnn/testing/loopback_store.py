"""What the loopback Hub (`hf_rnn.testing.loopback_hub`) stores, and how it reads the requests that change it.

Repositories with branches, pull requests and commits, every file a regular git blob; the NDJSON commit format, the
card metadata the Hub reads, and the checks that turn a malformed request into the 4xx the real Hub would send
(`HubError`). Standard library and PyYAML (which huggingface_hub needs) only.
"""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import yaml

PULL_REQUEST = re.compile(r"refs/pr/([1-9][0-9]*)")
KINDS = ("model", "dataset", "space")
USER = "user"  # the one (anonymous) user of the loopback hub: the namespace of repositories created without one
MAX_BODY = 1 << 30  # bytes; a larger Content-Length is refused before anything is read
REPO_NAME = re.compile(r"(?!.*(--|\.\.))\w(?:[\w.-]{0,94}\w)?", re.ASCII)  # the Hub's rule for each half of an id
COMMIT_FIELDS = {  # what each NDJSON commit line may hold (the loopback hub stores every file regular: no lfsFile)
    "header": {"summary", "description", "parentCommit"},
    "file": {"path", "content", "encoding"},
    "deletedFile": {"path"},
    "deletedFolder": {"path"},
}


def git_blob_sha(content: bytes) -> str:
    """The id git gives a file's content; the client compares it to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubError(Exception):
    """A request the Hub refuses: answered with `status` and the message as JSON, plus the `X-Error-Code` (and
    `X-Repo-Commit`) that the client turns into its own exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


def json_object(body: bytes) -> dict:
    """A request's JSON body, which must be an object."""
    if not body:
        raise HubError(400, "the body is empty; a JSON object was expected")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise HubError(400, f"the body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise HubError(400, "the body must be a JSON object")
    return value


def field_of(mapping: dict, key: str, kind: type, where: str, optional: bool = False):
    """`mapping[key]` checked to be a `kind` (None when absent and `optional`), so a malformed request is a 400."""
    value = mapping.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise HubError(400, f"{where}: {key!r} must be a {kind.__name__}")
    return value


def check_path(path: str, where: str) -> str:
    """A path in a repository, refused when a checkout could not hold it as written or it could escape the checkout.
    `.git` is refused as git refuses it: in any case (`.GIT` is `.git` on case-insensitive file systems), with the
    trailing dots and spaces or `:stream` Windows drops, and as its 8.3 short name `git~1`."""
    parts = path.split("/")
    for why, bad in (
        ("is absolute", path.startswith("/")),
        ("has a backslash", "\\" in path),
        ("has a control character", any(ord(c) < 32 for c in path)),
        ("has an empty component", "" in parts),
        ("has a '.' component", "." in parts),
        ("has a '..' component", ".." in parts),
        (
            "has a '.git' component",
            any(part.lower().split(":")[0].rstrip(". ") in (".git", "git~1") for part in parts),
        ),
    ):
        if bad:
            raise HubError(400, f"{where}: path {path!r} {why}")
    return path


def check_branch(name: str) -> str:
    """A new branch's name, refused where git would refuse the ref (`git check-ref-format`) or where it would shadow
    another revision: a pull request (`refs/...`) or a commit id (40 hex digits)."""
    for why, bad in (
        ("starts with 'refs/', where pull requests live", name.startswith("refs/")),
        ("is 40 hex digits, a commit id", re.fullmatch(r"[0-9a-fA-F]{40}", name) is not None),
        (
            "has a space, a control character or one of ~^:?*[\\",
            re.search(r"[\x00-\x20\x7f~^:?*\[\\]", name) is not None,
        ),
        ("has an empty component (or starts or ends with '/')", "" in name.split("/")),
        ("has '..' or '@{'", ".." in name or "@{" in name),
        (
            "has a component that starts with '.' or ends with '.lock'",
            any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")),
        ),
        ("ends with '.' or is '@'", name.endswith(".") or name == "@"),
    ):
        if bad:
            raise HubError(400, f"branch: {name!r} {why}")
    return name


MAX_CARD_NODES = 100_000  # YAML nodes a card's metadata may expand to (aliases counted at every use)


def card_metadata(readme: str) -> dict:
    """The YAML front matter of a card (README.md): what the Hub shows as `cardData`, and reads `pipeline_tag`,
    `library_name` and `tags` from. ValueError when it is not a YAML mapping, or when its aliases expand it past
    `MAX_CARD_NODES` (a "billion laughs" card: a few lines that would turn into gigabytes of JSON)."""
    block = re.match(r"\s*---[\r\n]+(.*?)[\r\n]+---(?:\r?\n|$)", readme, re.DOTALL)
    if not block:
        return {}
    loader = yaml.SafeLoader(block[1])
    try:
        node = loader.get_single_node()
        _check_expansion(node)
        metadata = loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, RecursionError) as error:
        raise ValueError(f"the card's YAML does not parse: {error}") from None
    finally:
        loader.dispose()
    if not isinstance(metadata, dict | None):
        raise ValueError("the card's YAML is not a mapping")
    return json.loads(json.dumps(metadata or {}, default=str))  # dates as the strings the Hub sends


def _check_expansion(node: yaml.Node | None) -> None:
    """Count the nodes the document expands to, each alias as often as it is used, up to MAX_CARD_NODES."""
    pending, count = [node] if node is not None else [], 0
    while pending:
        node = pending.pop()
        count += 1
        if count > MAX_CARD_NODES:
            raise ValueError(f"the card's YAML expands to more than {MAX_CARD_NODES} nodes (through its aliases)")
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(item for pair in node.value for item in pair)


def parse_commit(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """The header and the operations of an NDJSON commit body, every line checked before anything is applied."""
    lines = [line for line in body.splitlines() if line.strip()]
    entries = []
    for number, line in enumerate(lines, 1):
        where = f"commit line {number}"
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise HubError(400, f"{where} is not JSON: {error}") from None
        if not isinstance(entry, dict):
            raise HubError(400, f"{where} must be a JSON object")
        if set(entry) - {"key", "value"}:
            raise HubError(400, f"{where}: unknown fields {sorted(set(entry) - {'key', 'value'})}")
        key, value = field_of(entry, "key", str, where), field_of(entry, "value", dict, where)
        if key not in COMMIT_FIELDS:
            raise HubError(400, f"{where}: unsupported commit entry {key!r}")
        if set(value) - COMMIT_FIELDS[key]:
            raise HubError(400, f"{where}: unknown fields {sorted(set(value) - COMMIT_FIELDS[key])} in {key!r}")
        if (key == "header") != (number == 1):
            raise HubError(400, f"{where}: a commit is one header line, then its operations")
        if key == "header":
            for name in ("summary", "description", "parentCommit"):
                field_of(value, name, str, where, optional=name != "summary")
        else:
            path = field_of(value, "path", str, where)
            check_path(path.removesuffix("/") if key == "deletedFolder" else path, where)
        if key == "file":
            value = {"path": path, "content": decode_base64(value, where)}
        entries.append((key, value))
    if not entries:
        raise HubError(400, "the commit is empty: a header line was expected")
    return entries[0][1], entries[1:]


def decode_base64(value: dict, where: str) -> bytes:
    """A committed file's content, which the client sends as base64."""
    encoding = field_of(value, "encoding", str, where, optional=True) or "base64"
    if encoding != "base64":
        raise HubError(400, f"{where}: unsupported encoding {encoding!r}")
    try:
        return base64.b64decode(field_of(value, "content", str, where), validate=True)
    except binascii.Error as error:
        raise HubError(400, f"{where}: content is not base64: {error}") from None


def apply_operations(files: dict[str, bytes], operations: list[tuple[str, dict]]) -> dict[str, bytes]:
    """The files after a commit's operations, refused when a deletion misses or a path becomes a file and a folder."""
    files = dict(files)
    for key, value in operations:
        path = value["path"]
        if key == "file":
            files[path] = value["content"]
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        else:  # deletedFolder
            prefix = path.rstrip("/") + "/"
            files = {p: c for p, c in files.items() if not p.startswith(prefix)}
    folders = {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}
    if clash := sorted(folders & files.keys()):
        raise HubError(400, f"path {clash[0]!r} would be both a file and a folder")
    return files


def hub_date() -> str:
    """Now, in the one format the client parses (`parse_datetime`)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    files: dict[str, bytes]  # path -> content, the whole tree
    title: str
    message: str = ""
    parent: str | None = None  # commit id; None for a repository's first commit
    date: str = field(default_factory=hub_date)
    card: dict = field(init=False)  # README.md's metadata, read once here rather than on every model_info

    def __post_init__(self) -> None:
        try:
            self.card = card_metadata(self.files["README.md"].decode()) if "README.md" in self.files else {}
        except (ValueError, UnicodeDecodeError):  # a card the Hub cannot read shows no metadata
            self.card = {}


@dataclass
class Repository:
    kind: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    pull_requests: list[str] = field(default_factory=list)  # the commit refs/pr/1, refs/pr/2, ... point to
    pull_request_titles: list[str] = field(default_factory=list)
    commits: dict[str, Commit] = field(default_factory=dict)  # commit id -> commit

    def resolve(self, revision: str) -> str | None:
        """A pull request (refs/pr/N), a branch name or a commit id -> commit id (no branch can take the name of
        either: `check_branch`)."""
        pull_request = PULL_REQUEST.fullmatch(revision)
        if pull_request:
            number = int(pull_request[1])
            return self.pull_requests[number - 1] if number <= len(self.pull_requests) else None
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None

    def find_commit(self, prefix: str) -> str:
        """The one commit whose id starts with `prefix`, as the Hub takes a short `parentCommit`."""
        matches = [commit for commit in self.commits if commit.startswith(prefix.lower())]
        if len(matches) != 1:
            raise HubError(400, f"parentCommit {prefix!r} names {len(matches)} commits, not one")
        return matches[0]
