"""push_to_hub -> from_pretrained over real HTTP through the real huggingface_hub client, against hf_rnn's loopback
Hub (`hf_rnn.testing.LoopbackHub`). Every client runs in a fresh process with an empty cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_rnn.testing import LoopbackHub, Repository

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
        "crf.py",
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
    if with_hf_rnn:  # the pipeline from the repo id gives the same Viterbi tags
        labels = json.loads(hub.files("me/tagger")["config.json"])["id2label"]
        assert loaded["pipeline"] == [[labels[str(t)] for t in row if t != -100] for row in info["predictions"]]


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
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="2")
        command = [
            sys.executable,
            str(root / "examples" / "run_tagging.py"),
            "--train_file",
            str(root / "hf_rnn" / "samples" / "sample_pos.train.tsv"),
            "--validation_file",
            str(root / "hf_rnn" / "samples" / "sample_pos.dev.tsv"),
            "--output_dir",
            str(tmp_path / "out"),
            "--num_train_epochs",
            "1",
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
