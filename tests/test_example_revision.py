"""A script's push and reload over HTTP against hf_rnn's loopback Hub (`hf_rnn.testing.loopback_hub.LoopbackHub`):
`--model_revision` continues or tags from the branch `--hub_revision` pushed to, and the card names the dataset, not
this machine's path to it."""

import json

import pytest
from example_scripts import SAMPLE, TINY_TAGGER, run_script
from huggingface_hub import ModelCard

from hf_rnn.data import read_conll
from hf_rnn.testing.loopback_hub import LoopbackHub


@pytest.mark.slow  # two script runs (~30 s)
def test_run_tagging_loads_the_branch_it_pushed_to_and_its_card_names_the_dataset(tmp_path):
    folder = tmp_path / "pos-sample"  # --dataset_name: an absolute path to a local dataset folder
    folder.mkdir()
    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    for split, part in (("train", sentences[:200]), ("test", sentences[200:210])):
        rows = [json.dumps({"tokens": s.tokens, "ner_tags": s.tags}) for s in part]
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    data = ["--dataset_name", str(folder), "--do_eval", "false", "--do_predict", "--no_plots"]
    with LoopbackHub() as hub:
        env = dict(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
        pushed, loaded = tmp_path / "pushed", tmp_path / "loaded"
        hub_flags = ["--push_to_hub", "--hub_model_id", "me/pos", "--hub_revision", "v2"]
        run_script(
            "run_tagging.py", *data, "--max_steps", "5", *TINY_TAGGER, *hub_flags, "--output_dir", str(pushed), env=env
        )
        assert "model.safetensors" not in hub.files("me/pos")  # main: the model is on the branch only
        (tmp_path / "README.md").write_bytes(hub.files("me/pos", revision="v2")["README.md"])
        checkpoint = ["--model_name_or_path", "me/pos", "--model_revision", "v2", "--do_train", "false"]
        run_script("run_tagging.py", *checkpoint, *data, "--output_dir", str(loaded), env=env)
    assert (loaded / "predictions.conll").read_text() == (pushed / "predictions.conll").read_text()
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.datasets == ["pos-sample"] and str(tmp_path) not in card.content
