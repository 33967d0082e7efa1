"""A saved checkpoint carries its code: it loads with `trust_remote_code=True` where hf_rnn cannot be imported."""

import json
import subprocess

import pytest
import torch
from conftest import run_without_hf_rnn, tiny_config

import hf_rnn

LOADER = """
    import sys
    import torch
    from transformers import {auto}
    folder, trust = sys.argv[1], sys.argv[2] == "trust"
    model = {auto}.from_pretrained(folder, trust_remote_code=trust).eval()
    assert "hf_rnn" not in type(model).__module__.split(".")[0], type(model).__module__
    ids = torch.load(folder + "/ids.pt")
    with torch.no_grad():
        output = model(ids, attention_mask=(ids != 0).long())
        torch.save((output[0], output.get("predictions")), folder + "/out.pt")
    print(type(model).__module__)
"""


def _load_elsewhere(folder, auto: str, trust: bool) -> subprocess.CompletedProcess:
    return run_without_hf_rnn(
        LOADER.format(auto=auto), str(folder), "trust" if trust else "no", cwd=folder, check=trust
    )


BIO_CRF = dict(
    use_crf=True, crf_constraints="BIO", id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2}
)


HEADS = [
    (hf_rnn.RnnForTokenClassification, "AutoModelForTokenClassification", {}),
    (hf_rnn.RnnForTokenClassification, "AutoModelForTokenClassification", BIO_CRF),
    (hf_rnn.RnnForCausalLM, "AutoModelForCausalLM", {}),
    (hf_rnn.RnnForSequenceClassification, "AutoModelForSequenceClassification", {}),
    (hf_rnn.RnnModel, "AutoModel", {}),
]


@pytest.mark.parametrize(
    "head, auto, extra, cell_type",
    [(*case, "gru") for case in HEADS] + [(*HEADS[i], cell) for cell in ("mingru", "minlstm") for i in (1, 2)],
)
def test_remote_code_load_without_hf_rnn(head, auto, extra, cell_type, tmp_path):
    model = head(tiny_config(cell_type=cell_type, bidirectional=head is not hf_rnn.RnnForCausalLM, **extra)).eval()
    model.save_pretrained(tmp_path)
    module = head.__module__.split(".")[-1]  # modeling_rnn, or modeling_tagger for the tagger
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"][auto] == f"{module}.{head.__name__}"
    assert {"cells.py", "cell_torch.py", "cell_min.py"} <= {path.name for path in tmp_path.glob("*.py")}
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    torch.save(ids, tmp_path / "ids.pt")
    result = _load_elsewhere(tmp_path, auto, trust=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("transformers_modules")
    with torch.no_grad():
        output = model(ids, attention_mask=(ids != 0).long())
        expected = (output[0], output.get("predictions"))  # predictions: Viterbi tags with the CRF
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=1e-5, atol=1e-6)


def test_remote_code_needs_consent(tmp_path):
    hf_rnn.RnnForTokenClassification(tiny_config()).save_pretrained(tmp_path)
    torch.save(torch.tensor([[1, 2]]), tmp_path / "ids.pt")
    result = _load_elsewhere(tmp_path, "AutoModelForTokenClassification", trust=False)
    assert result.returncode != 0 and "trust_remote_code" in result.stderr


EVERY_AUTO = """
    import json, sys
    import torch
    import transformers
    from transformers import pipeline
    folder = sys.argv[1]
    ids = torch.load(folder + "/ids.pt")
    answers = {}
    for auto in ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
                 "AutoModelForTokenClassification"):
        try:
            model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
        except ValueError as error:  # a head the config cannot have (a bidirectional causal LM)
            answers[auto] = str(error).splitlines()[0]
            continue
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        encoder = model if auto == "AutoModel" else model.model
        with torch.no_grad():
            answers[auto] = encoder(ids, attention_mask=(ids != 0).long()).last_hidden_state.tolist()
    features = pipeline("feature-extraction", model=folder, trust_remote_code=True)
    answers["feature-extraction"] = features("a b c")
    json.dump(answers, open(folder + "/answers.json", "w"))
"""


@pytest.mark.parametrize(
    "head, bidirectional",
    [(hf_rnn.RnnForCausalLM, False), (hf_rnn.RnnForTokenClassification, True)],
)
def test_every_auto_class_loads_every_checkpoint_without_hf_rnn(head, bidirectional, tmp_path):
    """As with `import hf_rnn`: the base model and every head from any head's checkpoint (a new head gets new weights,
    the encoder is the checkpoint's), and the feature-extraction pipeline; a head the config rules out fails alike."""
    from transformers import AutoModel, AutoModelForCausalLM, pipeline

    from hf_rnn.vocabulary import build_word_tokenizer

    tokenizer = build_word_tokenizer([["a", "b", "c", "d"]])
    config = tiny_config(vocab_size=tokenizer.vocab_size, bidirectional=bidirectional, **BIO_CRF)
    head(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ids = torch.tensor([[2, 3, 4, 5], [0, 0, 4, 6]])
    torch.save(ids, tmp_path / "ids.pt")
    run_without_hf_rnn(EVERY_AUTO, str(tmp_path), cwd=tmp_path)
    answers = json.loads((tmp_path / "answers.json").read_text())
    with torch.no_grad():
        expected = AutoModel.from_pretrained(tmp_path)(ids, attention_mask=(ids != 0).long()).last_hidden_state
    for auto in ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification"):
        torch.testing.assert_close(torch.tensor(answers[auto]), expected, msg=auto)
    if bidirectional:
        with pytest.raises(ValueError) as error:
            AutoModelForCausalLM.from_pretrained(tmp_path)
        assert answers["AutoModelForCausalLM"] == str(error.value).splitlines()[0]
    else:
        torch.testing.assert_close(torch.tensor(answers["AutoModelForCausalLM"]), expected)
    features = pipeline("feature-extraction", model=str(tmp_path))("a b c")
    torch.testing.assert_close(torch.tensor(answers["feature-extraction"]), torch.tensor(features))
