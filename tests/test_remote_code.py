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
