"""`--model_revision`: a model pushed by a script to a branch (`--hub_revision`) is continued or tagged from that
branch, over HTTP against hf_rnn's loopback Hub (`hf_rnn.loopback_hub.LoopbackHub`)."""

import pytest
from example_scripts import SAMPLE, TINY_TAGGER, run_script

from hf_rnn.loopback_hub import LoopbackHub


@pytest.mark.slow  # two script runs (~30 s)
def test_run_tagging_loads_the_branch_it_pushed_to(tmp_path):
    with LoopbackHub() as hub:
        env = dict(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
        test = ["--test_file", str(SAMPLE / "sample_pos.dev.tsv"), "--max_predict_samples", "10", "--no_plots"]
        pushed, loaded = tmp_path / "pushed", tmp_path / "loaded"
        train = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--max_steps", "5", *TINY_TAGGER]
        hub_flags = ["--push_to_hub", "--hub_model_id", "me/pos", "--hub_revision", "v2"]
        run_script("run_tagging.py", *train, *test, *hub_flags, "--output_dir", str(pushed), env=env)
        assert "model.safetensors" not in hub.files("me/pos")  # main: the model is on the branch only
        checkpoint = ["--model_name_or_path", "me/pos", "--model_revision", "v2", "--do_train", "false"]
        run_script("run_tagging.py", *checkpoint, *test, "--output_dir", str(loaded), env=env)
    assert (loaded / "predictions.conll").read_text() == (pushed / "predictions.conll").read_text()
