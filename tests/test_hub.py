"""push_to_hub -> from_pretrained over real HTTP through the real huggingface_hub client, against hf_rnn's loopback
Hub (`hf_rnn.testing.loopback_hub.LoopbackHub`). Every client runs in a fresh process with an empty cache."""

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_rnn.testing.loopback_hub import LoopbackHub, _check_host
from hf_rnn.testing.loopback_store import Repository

HERE = Path(__file__).parent


def client(hub_url: str, home: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH")}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(HERE / "hub_client.py"), *args],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A trained tiny char-BiLSTM-CRF pushed to `me/tagger` on main and to branch `v2` of `me/tagger-branch`."""
    with LoopbackHub() as hub:
        infos = {}
        for repo, revision in (("me/tagger", None), ("me/tagger-branch", "v2")):
            home = tmp_path_factory.mktemp("pusher")
            result = client(hub.url, home, "push", repo, str(home), *([revision] if revision else []))
            assert result.returncode == 0, result.stderr[-3000:]
            infos[repo] = json.loads((home / "pushed.json").read_text())
        assert infos["me/tagger"]["predictions"] == infos["me/tagger-branch"]["predictions"]  # same seed and data
        yield hub, infos["me/tagger"]


def test_push_holds_everything(pushed):
    hub, _ = pushed
    files = hub.files("me/tagger")
    expected = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "configuration_rnn.py",
        "modeling_rnn.py",
        "modeling_tagger.py",
        "modeling_lm.py",
        "modeling_classifier.py",
        "heads.py",
        "crf.py",
        "semicrf.py",
        "cells.py",
        "cell_slstm.py",
        "schemes.py",
        "masking.py",
        "dropout.py",
        "char_encoder.py",
        "tokenization_rnn.py",
    }
    assert expected <= set(files)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # nothing to unpickle


def test_unchanged_repush_makes_no_new_commit(pushed):
    hub, info = pushed
    repository = hub.repository("me/tagger")
    assert info["commits"][0] == info["commits"][1] == repository.branches["main"]
    assert len(repository.commits) == 2  # the creation commit and one upload


def test_model_card_metadata_and_metrics(pushed, tmp_path):
    hub, _ = pushed
    (tmp_path / "README.md").write_bytes(hub.files("me/tagger")["README.md"])
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "token-classification"
    assert "bilstm-crf" in card.data.tags and card.data.datasets == ["hf_rnn-sample-pos"]
    result = card.data.eval_results[0]
    assert (result.metric_type, result.metric_value) == ("accuracy", 0.9876)
    assert "trust_remote_code=True" in card.text and "| learning_rate | 0.02 |" in card.text


@pytest.mark.parametrize("with_hf_rnn", [True, False])
def test_fresh_process_loads_the_same_model(pushed, tmp_path, with_hf_rnn):
    hub, info = pushed
    args = ["load", "me/tagger", str(tmp_path / "out.json")] + ([] if with_hf_rnn else ["--without-hf-rnn"])
    result = client(hub.url, tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads((tmp_path / "out.json").read_text())
    assert loaded["predictions"] == info["predictions"]
    assert loaded["module"].startswith("hf_rnn.") == with_hf_rnn
    assert loaded["tokenizer"].startswith("hf_rnn.") == with_hf_rnn  # the char tokenizer travels as code too
    labels = json.loads(hub.files("me/tagger")["config.json"])["id2label"]
    tags = [[labels[str(t)] for t in row if t != -100] for row in info["predictions"]]
    assert (
        loaded["standard_pipeline"] == tags
    )  # pipeline(model=repo_id), no task: Viterbi tags, with or without hf_rnn
    if with_hf_rnn:  # hf_rnn's pipeline from the repo id gives the same Viterbi tags
        assert loaded["pipeline"] == tags


def test_branch_push_and_load(pushed, tmp_path):
    hub, info = pushed
    repository = hub.repository("me/tagger-branch")
    assert set(repository.branches) == {"main", "v2"} and repository.branches["main"] != repository.branches["v2"]
    assert "model.safetensors" not in hub.files("me/tagger-branch", "main")
    result = client(hub.url, tmp_path, "load", "me/tagger-branch", str(tmp_path / "out.json"), "v2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text())["predictions"] == info["predictions"]


def test_hub_down_gives_a_clear_error_and_a_retry_succeeds(tmp_path):
    hub = LoopbackHub()
    url, port = hub.url, hub._server.server_address[1]
    hub._server.server_close()  # nothing listens on the port now
    (tmp_path / "keep.txt").write_text("local files stay as they are")
    result = client(url, tmp_path, "push", "me/down", str(tmp_path), "--no-backoff")
    assert result.returncode != 0
    assert "ConnectError" in result.stderr or "Connection refused" in result.stderr
    assert (
        not (tmp_path / "pushed.json").exists()
        and (tmp_path / "keep.txt").read_text() == "local files stay as they are"
    )
    with LoopbackHub(port=port) as revived:  # the Hub is back: the same command now works
        result = client(url, tmp_path, "push", "me/down", str(tmp_path))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "model.safetensors" in revived.files("me/down")


def test_push_dying_mid_commit_then_retry(tmp_path):
    with LoopbackHub() as hub:
        hub.fail_next_commit()
        result = client(hub.url, tmp_path, "push", "me/flaky", str(tmp_path), "--no-backoff")
        files = hub.files("me/flaky")
        if result.returncode != 0:  # the error surfaced: nothing half-written, and a retry succeeds
            assert "model.safetensors" not in files
            result = client(hub.url, tmp_path, "push", "me/flaky", str(tmp_path))
            assert result.returncode == 0, result.stderr[-3000:]
            files = hub.files("me/flaky")
        assert "model.safetensors" in files  # either way the model ends up complete, in one commit
        assert len(hub.repository("me/flaky").commits) == 2


def test_missing_repo_and_missing_weights_surface_the_clients_errors(tmp_path):
    with LoopbackHub() as hub:
        result = client(hub.url, tmp_path, "try-load", "me/nothing-here", str(tmp_path / "missing.json"))
        assert result.returncode == 0, result.stderr[-3000:]
        missing = json.loads((tmp_path / "missing.json").read_text())
        assert missing["error"] == "OSError" and "me/nothing-here" in missing["message"]
        assert "valid model identifier" in missing["message"] or "not found" in missing["message"].lower()

        repository_files = {
            "config.json": json.dumps(
                {"model_type": "hf_rnn", "architectures": ["RnnForTokenClassification"]}
            ).encode(),
            "pytorch_model.bin": b"a pickle would be here",
        }
        hub.repositories["model:me/no-weights"] = repository = Repository("model")
        repository.branches["main"] = hub._new_commit(repository, repository_files, "config and a pickle only")
        result = client(hub.url, tmp_path, "try-load", "me/no-weights", str(tmp_path / "no_weights.json"))
        no_weights = json.loads((tmp_path / "no_weights.json").read_text())
        assert no_weights["error"] == "OSError" and "model.safetensors" in no_weights["message"]


def test_run_tagging_push_to_hub(tmp_path):
    root = HERE.parent
    with LoopbackHub() as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
        command = [
            sys.executable,
            str(root / "examples" / "run_tagging.py"),
            "--train_file",
            str(root / "hf_rnn" / "samples" / "sample_pos.train.tsv"),
            "--validation_file",
            str(root / "hf_rnn" / "samples" / "sample_pos.dev.tsv"),
            "--output_dir",
            str(tmp_path / "out"),
            "--max_steps",
            "5",
            "--embedding_size",
            "16",
            "--hidden_size",
            "16",
            "--use_crf",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--use_cpu",
            "true",
            "--disable_tqdm",
            "true",
            "--no_plots",
            "--push_to_hub",
            "--hub_model_id",
            "me/pos-tagger",
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.files("me/pos-tagger")
        assert {"model.safetensors", "tokenizer.json", "crf.py", "README.md"} <= set(files)
        (tmp_path / "README.md").write_bytes(files["README.md"])
        card = ModelCard.load(tmp_path / "README.md")
        accuracy = json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"]
        assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == pytest.approx(
            accuracy, abs=1e-4
        )
        assert len(hub.repository("me/pos-tagger").commits) == 2  # one push, at the end
        # the card tells what the run did: 5 steps (not the 3.0 epochs the arguments planned), the optimizer's name
        assert "| steps | 5 |" in card.text and "| epochs | 0.07 |" in card.text
        assert "| optimizer | adamw_torch" in card.text and "OptimizerNames" not in card.text


def test_model_info_refs_and_commits_through_the_client(pushed, tmp_path):
    hub, _ = pushed
    repository = hub.repository("me/tagger-branch")
    result = client(hub.url, tmp_path, "inspect", "me/tagger-branch", str(tmp_path / "out.json"), "v2")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads((tmp_path / "out.json").read_text())
    assert seen["pipeline_tag"] == "token-classification" and seen["library_name"] == "transformers"  # from the card
    assert "bilstm-crf" in seen["tags"] and seen["card_datasets"] == ["hf_rnn-sample-pos"]
    assert seen["branches"] == repository.branches and seen["tags_refs"] == [] and seen["pull_requests"] == {}
    creation = repository.branches["main"]
    assert [commit for commit, _ in seen["commits"]] == [repository.branches["v2"], creation]  # newest first
    assert seen["commits"][-1][1] == "initial commit"


def test_create_pr_opens_a_pull_request_and_leaves_main_alone(tmp_path):
    with LoopbackHub() as hub:
        result = client(hub.url, tmp_path, "pull-request", "me/proposals", str(tmp_path / "out.json"))
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads((tmp_path / "out.json").read_text())
        repository = hub.repository("me/proposals")
        assert seen["first"][:2] == ["refs/pr/1", 1] and seen["second"][:2] == ["refs/pr/2", 2]
        assert seen["first"][2] == repository.resolve("refs/pr/1") != repository.branches["main"]
        assert seen["pr_content"] == "proposed" and seen["main_content"] == "v1"
        assert hub.files("me/proposals", "refs/pr/1")["notes.txt"] == b"proposed"
        assert hub.files("me/proposals")["notes.txt"] == b"v1" and "extra.txt" not in hub.files("me/proposals")
        assert seen["pull_requests"] == {"refs/pr/1": seen["first"][2], "refs/pr/2": seen["second"][2]}
        assert set(seen["branches"]) == {"main"}


# --- requests sent byte by byte: every malformed one gets a 4xx with a JSON message, and changes nothing ---------

COMMIT = "/api/models/me/x/commit/main"


def exchange(
    hub: LoopbackHub, path: str, body: bytes, headers: dict | None = None, method: str = "POST"
) -> tuple[int, dict, http.client.HTTPMessage]:
    """Send exactly these bytes on a fresh connection, half-close it, and read the one answer."""
    head = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{key}: {value}" for key, value in head.items() if value is not None]
    with socket.create_connection(hub._server.server_address[:2], timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read()), response.headers


def post(*args, **kwargs) -> tuple[int, dict]:
    return exchange(*args, **kwargs)[:2]


def line(key: str, **value) -> dict:
    return {"key": key, "value": value}


def add(path: str, content: bytes = b"x") -> dict:
    return line("file", path=path, content=base64.b64encode(content).decode(), encoding="base64")


def ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(entry).encode() + b"\n" for entry in lines)


HEADER = line("header", summary="a change", description="")


@pytest.fixture
def small_hub():
    """A hub holding `me/x` with config.json and a/b.txt on main."""
    with LoopbackHub() as hub:
        assert post(hub, "/api/repos/create", b'{"name": "x", "organization": "me"}')[0] == 200
        assert post(hub, COMMIT, ndjson(HEADER, add("config.json", b"{}"), add("a/b.txt")))[0] == 200
        yield hub


def state(hub: LoopbackHub) -> dict:
    return {key: (dict(r.branches), len(r.commits)) for key, r in hub.repositories.items()}


def bad(name: str, path: str, body: bytes, status: int, says: str, headers: dict | None = None, method: str = "POST"):
    return pytest.param(path, body, headers, method, status, says, id=name)


def commit_of(*lines: dict) -> bytes:
    return ndjson(HEADER, *lines)


CREATE = "/api/repos/create"
CHUNKED = {"Content-Length": None, "Transfer-Encoding": "chunked"}
PREUPLOAD = "/api/models/me/x/preupload/main"
BAD_REQUESTS = [
    bad("create-not-json", CREATE, b'{"name": "y"', 400, "not JSON"),
    bad("create-empty-body", CREATE, b"", 400, "empty"),
    bad("create-not-an-object", CREATE, b"[]", 400, "JSON object"),
    bad("create-no-name", CREATE, b"{}", 400, "'name'"),
    bad("create-name-not-a-string", CREATE, b'{"name": 3}', 400, "'name'"),
    bad("create-name-escapes", CREATE, b'{"name": "../y"}', 400, "'../y'"),
    bad("create-unknown-type", CREATE, b'{"name": "y", "type": "kernel"}', 400, "'kernel'"),
    bad("create-nested-too-deep", CREATE, b"[" * 100_000, 400, "not JSON"),
    bad("content-length-absurd", CREATE, b"", 413, "Content-Length", {"Content-Length": str(10**12)}),
    bad("content-length-negative", CREATE, b"", 400, "Content-Length", {"Content-Length": "-1"}),
    bad("content-length-not-a-number", CREATE, b"", 400, "Content-Length", {"Content-Length": "ten"}),
    bad("body-shorter-than-content-length", CREATE, b'{"name"', 400, "ended after 7 of 50", {"Content-Length": "50"}),
    bad("chunked-body", CREATE, b"5\r\n{}{}{\r\n0\r\n\r\n", 411, "Content-Length", CHUNKED),
    bad("method-not-served", "/api/repos/delete", b'{"name": "x"}', 404, "no route for DELETE", method="DELETE"),
    bad("branch-not-json", "/api/models/me/x/branch/v2", b"{", 400, "not JSON"),
    bad("branch-from-nowhere", "/api/models/me/x/branch/v2", b'{"startingPoint": "nope"}', 404, "nope"),
    bad("branch-named-like-a-pull-request", "/api/models/me/x/branch/refs/pr/1", b"{}", 400, "'refs/pr/1' starts"),
    bad("branch-under-refs", "/api/models/me/x/branch/refs%2Fheads%2Fmain", b"{}", 400, "'refs/heads/main'"),
    bad("branch-named-like-a-commit", "/api/models/me/x/branch/" + "a" * 40, b"{}", 400, "a commit id"),
    bad("branch-with-dotdot", "/api/models/me/x/branch/a..b", b"{}", 400, "'..'"),
    bad("branch-with-space", "/api/models/me/x/branch/a%20b", b"{}", 400, "a space"),
    bad("branch-with-colon", "/api/models/me/x/branch/a:b", b"{}", 400, "a space"),
    bad("branch-ending-in-lock", "/api/models/me/x/branch/v2.lock", b"{}", 400, "'.lock'"),
    bad("branch-hidden-component", "/api/models/me/x/branch/a/.b", b"{}", 400, "starts with '.'"),
    bad("branch-trailing-slash", "/api/models/me/x/branch/v2/", b"{}", 400, "empty component"),
    bad("validate-yaml-not-json", "/api/validate-yaml", b"", 400, "empty"),
    bad("preupload-empty-body", PREUPLOAD, b"", 400, "empty"),
    bad("preupload-file-without-path", PREUPLOAD, b'{"files": [{"size": 1}]}', 400, "'path'"),
    bad("preupload-unsafe-path", PREUPLOAD, b'{"files": [{"path": "../x"}]}', 400, "'..'"),
    bad("preupload-unknown-revision", "/api/models/me/x/preupload/nope", b'{"files": []}', 404, "nope"),
    bad("commit-empty-body", COMMIT, b"", 400, "header"),
    bad("commit-truncated", COMMIT, commit_of(add("new.txt"))[:-20], 400, "line 2"),
    bad("commit-line-not-json", COMMIT, commit_of() + b"{file}\n", 400, "line 2"),
    bad("commit-line-not-an-object", COMMIT, commit_of() + b"[1]\n", 400, "line 2"),
    bad("commit-header-missing", COMMIT, ndjson(add("new.txt")), 400, "header"),
    bad("commit-two-headers", COMMIT, commit_of(HEADER), 400, "header"),
    bad("commit-summary-not-a-string", COMMIT, ndjson(line("header", summary=1)), 400, "'summary'"),
    bad("commit-unknown-entry", COMMIT, commit_of(line("copyFile", path="a")), 400, "'copyFile'"),
    bad("commit-unknown-line-key", COMMIT, commit_of({**add("new.txt"), "extra": 1}), 400, "'extra'"),
    bad("commit-unknown-value-key", COMMIT, commit_of(line("file", path="n", contents="eA==")), 400, "'contents'"),
    bad("commit-header-unknown-key", COMMIT, ndjson(line("header", summary="s", parent="0" * 40)), 400, "'parent'"),
    bad("commit-value-not-an-object", COMMIT, commit_of({"key": "file", "value": "new.txt"}), 400, "'value'"),
    bad("commit-base64-bad-chars", COMMIT, commit_of(line("file", path="n", content="!!!!")), 400, "base64"),
    bad("commit-base64-bad-padding", COMMIT, commit_of(line("file", path="n", content="abc")), 400, "base64"),
    bad(
        "commit-unknown-encoding",
        COMMIT,
        commit_of(line("file", path="n", content="x", encoding="utf-8")),
        400,
        "'utf-8'",
    ),
    bad("commit-dotdot", COMMIT, commit_of(add("a/../../etc/passwd")), 400, "'..'"),
    bad("commit-absolute", COMMIT, commit_of(add("/etc/passwd")), 400, "absolute"),
    bad("commit-backslash", COMMIT, commit_of(add("a\\..\\b")), 400, "backslash"),
    bad("commit-empty-component", COMMIT, commit_of(add("a//b")), 400, "empty"),
    bad("commit-trailing-slash", COMMIT, commit_of(add("a/")), 400, "empty"),
    bad("commit-empty-path", COMMIT, commit_of(add("")), 400, "empty"),
    bad("commit-dot", COMMIT, commit_of(add("./a.txt")), 400, "'.'"),
    bad("commit-git-folder", COMMIT, commit_of(add(".git/config")), 400, "'.git'"),
    bad("commit-git-folder-upper-case", COMMIT, commit_of(add("a/.GIT/config")), 400, "'.git'"),
    bad("commit-git-folder-mixed-case", COMMIT, commit_of(add(".Git/hooks/post-checkout")), 400, "'.git'"),
    bad("commit-git-folder-trailing-dot", COMMIT, commit_of(add(".git./config")), 400, "'.git'"),
    bad("commit-git-folder-trailing-space", COMMIT, commit_of(add("a/.git /config")), 400, "'.git'"),
    bad("commit-git-folder-ntfs-stream", COMMIT, commit_of(add(".git::$INDEX_ALLOCATION/config")), 400, "'.git'"),
    bad("commit-git-folder-short-name", COMMIT, commit_of(add("GIT~1/config")), 400, "'.git'"),
    bad("commit-delete-git-folder", COMMIT, commit_of(line("deletedFolder", path=".GIT/")), 400, "'.git'"),
    bad("preupload-git-folder", PREUPLOAD, b'{"files": [{"path": "x/.GiT/config"}]}', 400, "'.git'"),
    bad("commit-nul", COMMIT, commit_of(add("a\0b")), 400, "control"),
    bad("commit-under-a-file", COMMIT, commit_of(add("config.json/x")), 400, "both a file and a folder"),
    bad("commit-over-a-folder", COMMIT, commit_of(add("a")), 400, "both a file and a folder"),
    bad("commit-file-and-folder-at-once", COMMIT, commit_of(add("n"), add("n/m")), 400, "both a file and a folder"),
    bad("commit-delete-missing", COMMIT, commit_of(line("deletedFile", path="nope.txt")), 404, "doesn't exist"),
    bad("commit-delete-folder-escapes", COMMIT, commit_of(line("deletedFolder", path="../")), 400, "'..'"),
    bad("commit-unknown-parent", COMMIT, ndjson(line("header", summary="s", parentCommit="0" * 40)), 400, "0" * 40),
]


@pytest.mark.parametrize("path, body, headers, method, status, says", BAD_REQUESTS)
def test_malformed_request_gets_a_4xx_json_message_and_changes_nothing(
    small_hub, capsys, path, body, headers, method, status, says
):
    before = state(small_hub)
    answer_status, answer = post(small_hub, path, body, headers, method)
    assert answer_status == status and says in answer["error"], answer
    assert state(small_hub) == before
    assert "Traceback" not in capsys.readouterr().err
    assert post(small_hub, COMMIT, commit_of(add("after.txt")))[0] == 200  # the hub still serves


def test_an_error_message_stays_one_header_line(small_hub):
    status, answer, headers = exchange(small_hub, "/api/models/me/x/commit/ma%0D%0Ain", commit_of())
    assert status == 404 and answer["error"] == "Revision ma\r\nin not found"
    assert (
        headers["X-Error-Message"] == "Revision ma\\r\\nin not found" and headers["X-Error-Code"] == "RevisionNotFound"
    )


def test_datasets_get_dataset_urls(small_hub):
    status, answer = post(small_hub, CREATE, b'{"name": "d", "organization": "me", "type": "dataset"}')
    assert status == 200 and answer["url"] == f"{small_hub.url}/datasets/me/d"
    status, answer = post(small_hub, "/api/datasets/me/d/commit/main", commit_of(add("data.csv")))
    assert status == 200 and answer["commitUrl"].startswith(f"{small_hub.url}/datasets/me/d/commit/")


def test_git_like_names_that_are_not_git_are_kept(small_hub):
    files = (".gitattributes", ".github/workflows/ci.yml", "a.git/x", "b/.gitkeep", "git~2")
    assert post(small_hub, COMMIT, commit_of(*map(add, files)))[0] == 200
    assert set(files) <= set(small_hub.files("me/x"))
    for branch in ("v2", "release/1.0", "feature-x_y"):
        assert post(small_hub, f"/api/models/me/x/branch/{branch}", b"{}")[0] == 200


def test_a_branch_cannot_shadow_a_pull_request(small_hub):
    status, answer = post(small_hub, COMMIT + "?create_pr=1", commit_of(add("proposed.txt")))
    assert status == 200 and answer["pullRequestUrl"].endswith("/discussions/1")
    pull_request = small_hub.repository("me/x").resolve("refs/pr/1")
    status, answer = post(small_hub, "/api/models/me/x/branch/refs/pr/1", b'{"startingPoint": "main"}')
    assert status == 400 and "refs/pr/1" in answer["error"]
    assert small_hub.repository("me/x").resolve("refs/pr/1") == pull_request
    assert "proposed.txt" in small_hub.files("me/x", "refs/pr/1")


def yaml_bomb(levels: int, width: int = 10) -> str:
    """A card whose aliases expand to width ** levels strings ("billion laughs")."""
    lines = ["---", f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines + ["tags: [bomb]", "---", "text"]) + "\n"


def test_a_yaml_alias_bomb_in_a_card_is_refused_and_never_expanded(small_hub, monkeypatch):
    """validate-yaml refuses it; a commit that carries it anyway is read once, bounded, and shows no metadata."""
    bomb = yaml_bomb(6)  # 10**6 strings, past the 100,000 nodes a card may expand to
    status, answer = post(small_hub, "/api/validate-yaml", json.dumps({"content": bomb}).encode())
    assert status == 400 and "expands to more than 100000 nodes" in answer["errors"][0]["message"]
    recursive = "---\na: &a [*a, *a]\n---\n"  # an alias of itself: infinite
    status, answer = post(small_hub, "/api/validate-yaml", json.dumps({"content": recursive}).encode())
    assert status == 400 and "expands" in answer["errors"][0]["message"]
    assert post(small_hub, COMMIT, commit_of(add("README.md", bomb.encode())))[0] == 200
    import hf_rnn.testing.loopback_store as store

    calls = []
    monkeypatch.setattr(store, "card_metadata", lambda *args: calls.append(args) or {})
    for _ in range(3):
        status, info, _ = exchange(small_hub, "/api/models/me/x", b"", method="GET")
        assert status == 200 and "cardData" not in info and info["tags"] == []
    assert not calls  # read at the commit, not at every model_info
    monkeypatch.undo()
    fine = "---\nbase: &base [a, b]\ntags: *base\n---\n"  # a few aliases are fine
    assert post(small_hub, COMMIT, commit_of(add("README.md", fine.encode())))[0] == 200
    assert exchange(small_hub, "/api/models/me/x", b"", method="GET")[1]["tags"] == ["a", "b"]


def test_a_client_that_stops_reading_a_download_holds_up_no_other_request(small_hub):
    """A raw socket asks for a 64 MiB file and reads nothing (its window fills, the hub's write blocks): another
    client is still answered at once."""
    repository = small_hub.repository("me/x")
    files = {**small_hub.files("me/x"), "big.bin": bytes(64 << 20)}
    big = small_hub._new_commit(repository, files, "big", repository.branches["main"])
    repository.branches["main"] = big
    host, port = small_hub._server.server_address[:2]
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(10)
        stalled.connect((host, port))
        stalled.sendall(b"GET /me/x/resolve/main/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stalled.recv(1)  # the answer has started: its writer now waits for this socket to read
        for path in ("/api/models/me/x", "/me/x/resolve/main/config.json"):
            connection = http.client.HTTPConnection(host, port, timeout=5)  # before the fix: a timeout here
            connection.request("GET", path)
            assert connection.getresponse().status == 200
            connection.close()


def test_kept_alive_requests_answer_without_the_delayed_ack_wait(small_hub):
    """Headers and body in two writes waited for the client's delayed ACK (Nagle): 40 ms per request."""
    connection = http.client.HTTPConnection(*small_hub._server.server_address[:2], timeout=10)
    times = []
    for _ in range(11):
        start = time.perf_counter()
        connection.request("GET", "/api/models/me/x")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["id"] == "me/x"
        times.append(time.perf_counter() - start)
    connection.close()
    assert sorted(times)[len(times) // 2] < 0.03, times  # the delayed ACK alone is 40 ms on Linux


def test_stop_returns_at_once():
    hub = LoopbackHub(redirect_client=False).start()
    assert post(hub, CREATE, b'{"name": "y"}')[0] == 200
    start = time.perf_counter()
    hub.stop()
    assert time.perf_counter() - start < 0.2  # the serving loop polled for it every 0.5 s


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_a_hub_on_a_non_loopback_address_is_refused_unless_allowed(host):
    with pytest.raises(ValueError, match="not only on loopback: it has no authentication.*allow_remote=True"):
        LoopbackHub(host=host, redirect_client=False)
    with pytest.warns(UserWarning, match="no authentication"):
        _check_host(host, allow_remote=True)  # (what LoopbackHub checks before it binds: not bound here)
    with LoopbackHub(host="localhost", redirect_client=False) as hub:  # a loopback name is fine
        assert post(hub, CREATE, b'{"name": "y"}')[0] == 200


def test_a_commit_on_a_stale_parent_is_refused(small_hub):
    repository = small_hub.repository("me/x")
    head = repository.branches["main"]
    (creation,) = set(repository.commits) - {head}
    status, answer = post(small_hub, COMMIT, ndjson(line("header", summary="s", parentCommit=creation), add("n")))
    assert status == 412 and "commit has happened since" in answer["error"] and repository.branches["main"] == head
    status, _ = post(small_hub, COMMIT, ndjson(line("header", summary="s", parentCommit=head[:7]), add("n")))
    assert status == 200 and repository.branches["main"] != head  # a short id of the head is fine


def test_a_pull_request_starts_from_its_parent_commit(small_hub):
    repository = small_hub.repository("me/x")
    head = repository.branches["main"]
    (creation,) = set(repository.commits) - {head}
    body = ndjson(line("header", summary="s", parentCommit=creation), add("n"))
    status, answer = post(small_hub, COMMIT + "?create_pr=1", body)
    assert status == 200 and answer["pullRequestUrl"] == f"{small_hub.url}/me/x/discussions/1"
    assert small_hub.files("me/x", "refs/pr/1") == {"n": b"x"} and repository.branches["main"] == head
    assert repository.commits[answer["commitOid"]].parent == creation


def test_invalid_card_yaml_is_refused_with_the_errors_the_client_reads(small_hub):
    status, answer = post(small_hub, "/api/validate-yaml", json.dumps({"content": "---\ntags: [a\n---\n"}).encode())
    assert status == 400 and answer["errors"][0]["message"]
    assert post(small_hub, "/api/validate-yaml", json.dumps({"content": "---\ntags: [a]\n---\n"}).encode()) == (
        200,
        {},
    )


def test_a_server_bug_answers_500_with_a_message(small_hub, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(small_hub, "_new_commit", broken)
    status, answer = post(small_hub, COMMIT, commit_of(add("n")))
    assert status == 500 and "RuntimeError: boom" in answer["error"]
    assert "boom" in capsys.readouterr().err  # the traceback is for whoever debugs the hub
    monkeypatch.undo()
    assert post(small_hub, COMMIT, commit_of(add("n")))[0] == 200


# --- the client in this process, pointed at the hub inside the `with` ------------------------------------------


def test_in_process_client_pushes_and_loads_inside_the_with_and_is_restored_after(tmp_path):
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import list_repo_commits, model_info
    from transformers import AutoModelForTokenClassification, PreTrainedModel

    import hf_rnn
    from hf_rnn.hub import push_model

    names = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_URL_HOSTS", "HF_HUB_OFFLINE", "HF_HUB_CACHE")
    before = {name: getattr(constants, name) for name in names}
    before_api = hf_api.api.endpoint, transformers_hub._hf_api
    # (conftest makes the test process offline; a module-scoped fixture's hub may be serving already: nested)
    model = hf_rnn.RnnForTokenClassification(hf_rnn.RnnConfig(vocab_size=20, hidden_size=4, embedding_size=4))
    with LoopbackHub() as hub:
        assert constants.ENDPOINT == hub.url and not constants.HF_HUB_OFFLINE
        cache = Path(constants.HF_HUB_CACHE)
        PreTrainedModel.push_to_hub(model, "me/in-process")  # transformers' own push, through its shared HfApi
        push_model(model, None, "me/in-process")  # huggingface_hub's HfApi(), made inside the `with`
        loaded = AutoModelForTokenClassification.from_pretrained("me/in-process")
        assert type(loaded).__module__ == "hf_rnn.modeling_tagger"
        assert model_info("me/in-process").pipeline_tag == "token-classification"  # module-level api
        assert len(list_repo_commits("me/in-process")) == 3
        assert any(cache.glob("models--me--in-process"))  # downloads went to the temporary cache
        with LoopbackHub() as inner:  # nested: the inner one wins until it stops
            assert constants.ENDPOINT == inner.url
            model.push_to_hub("me/inner")
        assert constants.ENDPOINT == hub.url and "me/inner" not in {k.split(":")[1] for k in hub.repositories}
        assert "model:me/inner" in inner.repositories
    assert {name: getattr(constants, name) for name in names} == before
    assert hf_api.api.endpoint == before_api[0]
    assert transformers_hub._hf_api is before_api[1] or transformers_hub._hf_api is None
    assert not cache.exists()
    assert ("POST", "/api/models/me/in-process/commit/main") in hub.requests


def test_redirect_client_false_leaves_the_process_alone():
    import huggingface_hub.constants as constants

    endpoint = constants.ENDPOINT
    with LoopbackHub(redirect_client=False) as hub:
        assert constants.ENDPOINT == endpoint != hub.url


def test_model_push_to_hub_writes_hf_rnns_card_and_takes_transformers_arguments():
    import hf_rnn

    config = hf_rnn.RnnConfig(
        vocab_size=20, hidden_size=4, embedding_size=4, use_crf=True, id2label={0: "O", 1: "B-X", 2: "I-X"}
    )
    model = hf_rnn.RnnForTokenClassification(config)
    with LoopbackHub() as hub:
        model.push_to_hub("me/card", tags=["my-tag"], commit_message="first")
        card = ModelCard(hub.files("me/card")["README.md"].decode())
        assert "made with hf_rnn" in card.text and "linear-chain CRF" in card.text  # not transformers' template
        assert "automatically generated" not in card.text
        assert {"hf_rnn", "crf", "my-tag"} <= set(card.data.tags) and card.data.pipeline_tag == "token-classification"
        main = hub.repository("me/card").branches["main"]
        model.crf.transitions.data += 1.0
        info = model.push_to_hub("me/card", create_pr=True)
        assert info.pr_url and hub.repository("me/card").branches["main"] == main  # a pull request, main untouched
        assert set(hub.files("me/card", "refs/pr/1")) >= {"config.json", "model.safetensors", "README.md"}


TRAINER_PUSH = """
    import json, os, sys
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, Trainer, TrainingArguments, pipeline

    folder, out, trust = sys.argv[1], sys.argv[2], sys.argv[3] == "remote"
    if not trust:
        import hf_rnn
    else:
        sys.modules["hf_rnn"] = None  # any `import hf_rnn` now fails
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=trust)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    rows = [dict(input_ids=torch.tensor([3, 4, 5]), labels=torch.tensor([0, 1, 2]))] * 4
    args = TrainingArguments(
        output_dir=folder + "/run", push_to_hub=True, hub_model_id="me/trained-" + sys.argv[3], max_steps=1,
        per_device_train_batch_size=2, report_to="none", use_cpu=True, save_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    trainer.train()
    trainer.push_to_hub()
    model.push_to_hub("me/repushed-" + sys.argv[3])
    tagger = pipeline(model="me/trained-" + sys.argv[3], trust_remote_code=trust)  # no task: the card names it
    model.eval()
    with torch.no_grad():
        expected = model(**tokenizer("Jean went to Paris", return_tensors="pt")).predictions[0].tolist()
    json.dump({"task": tagger.task, "tags": [e["entity"] for e in tagger("Jean went to Paris", ignore_labels=[])],
               "expected": [model.config.id2label[i] for i in expected]}, open(out, "w"))
"""


@pytest.mark.parametrize("where", ["hf_rnn", "remote"])
def test_trainer_and_remote_code_pushes_carry_hf_rnns_card(where, tmp_path):
    """`Trainer(push_to_hub=True)` and the model's own `push_to_hub`, with hf_rnn or by remote code: the card is
    hf_rnn's, with the `pipeline_tag` that `pipeline(model=repo_id)` needs to find the task."""
    import textwrap

    import hf_rnn
    from hf_rnn.vocabulary import build_word_tokenizer

    tokenizer = build_word_tokenizer([["Jean", "went", "to", "Paris"]])
    labels = ["O", "B-X", "I-X"]
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=4,
        hidden_size=4,
        use_crf=True,
        crf_constraints="BIO",
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    hf_rnn.RnnForTokenClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    script = textwrap.dedent(TRAINER_PUSH)
    with LoopbackHub() as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        if where == "remote":
            env.pop("PYTHONPATH", None)
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path), str(tmp_path / "out.json"), where],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        for repo in ("me/trained-" + where, "me/repushed-" + where):
            card = ModelCard(hub.files(repo)["README.md"].decode())
            assert card.data.pipeline_tag == "token-classification", repo
            assert "made with hf_rnn" in card.text and "automatically generated" not in card.text, repo
    answer = json.loads((tmp_path / "out.json").read_text())
    assert answer["task"] == "token-classification" and answer["tags"] == answer["expected"]
