"""A saved checkpoint carries its code: it loads with `trust_remote_code=True` where hf_rnn cannot be imported."""

import json
import math
import subprocess
import sys
import textwrap
import warnings

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


BIO_SEMICRF = dict(
    head_type="semicrf", max_segment_length=3, id2label=BIO_CRF["id2label"], label2id=BIO_CRF["label2id"]
)


HEADS = [
    (hf_rnn.RnnForTokenClassification, "AutoModelForTokenClassification", {}),
    (hf_rnn.RnnForTokenClassification, "AutoModelForTokenClassification", BIO_CRF),
    (hf_rnn.RnnForTokenClassification, "AutoModelForTokenClassification", BIO_SEMICRF),
    (hf_rnn.RnnForCausalLM, "AutoModelForCausalLM", {}),
    (hf_rnn.RnnForSequenceClassification, "AutoModelForSequenceClassification", {}),
    (hf_rnn.RnnModel, "AutoModel", {}),
]


@pytest.mark.parametrize(
    "head, auto, extra, cell_type",
    [(*case, "gru") for case in HEADS]
    + [(*HEADS[i], cell) for cell in ("mingru", "minlstm", "slstm") for i in (1, 3)],
)
def test_remote_code_load_without_hf_rnn(head, auto, extra, cell_type, tmp_path):
    model = head(tiny_config(cell_type=cell_type, bidirectional=head is not hf_rnn.RnnForCausalLM, **extra)).eval()
    model.save_pretrained(tmp_path)
    module = head.__module__.split(".")[-1]  # modeling_rnn, or the head's own modeling_lm/_classifier/_tagger
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"][auto] == f"{module}.{head.__name__}"
    assert {"cells.py", "cell_torch.py", "cell_min.py", "cell_slstm.py"} <= {
        path.name for path in tmp_path.glob("*.py")
    }
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
    [
        (hf_rnn.RnnForCausalLM, False),
        (hf_rnn.RnnForTokenClassification, True),
        (hf_rnn.RnnForSequenceClassification, False),
        (hf_rnn.RnnModel, True),
    ],
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


PER_LOC = dict(
    id2label=dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
    label2id={label: i for i, label in enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])},
)
RUN_NER_LINES = """
    import json, sys, warnings
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, PretrainedConfig
    folder, out, trust = sys.argv[1], sys.argv[2], sys.argv[3] == "remote"
    if not trust:
        import hf_rnn
    label_list = ["O", "B-X", "I-X"]
    num_labels = len(label_list)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # transformers' examples/pytorch/token-classification/run_ner.py, as it loads a model for new labels
        config = AutoConfig.from_pretrained(
            folder, num_labels=num_labels, finetuning_task="ner", trust_remote_code=trust
        )
        model = AutoModelForTokenClassification.from_pretrained(
            folder, config=config, trust_remote_code=trust, ignore_mismatched_sizes=True
        )
    if model.config.label2id != PretrainedConfig(num_labels=num_labels).label2id:
        raise AssertionError(model.config.label2id)
    model.config.label2id = {l: i for i, l in enumerate(label_list)}
    model.config.id2label = dict(enumerate(label_list))
    ids = torch.tensor([[5, 6, 7, 8]])
    labels = torch.tensor([[1, 2, 0, 1]])
    output = model(ids, labels=labels)
    output.loss.backward()
    json.dump({
        "warnings": [str(w.message) for w in caught if "crf_constraints" in str(w.message)],
        "constraints": model.config.crf_constraints,
        "crf": [p.tolist() for p in (model.crf.transitions, model.crf.start_transitions, model.crf.end_transitions)],
        "encoder": model.model.embeddings.weight.tolist(),
        "loss": output.loss.item(),
        "module": type(model).__module__,
    }, open(out, "w"))
"""


@pytest.mark.parametrize("where", ["hf_rnn", "remote"])
def test_run_ner_loads_a_crf_checkpoint_for_new_labels(where, tmp_path):
    """run_ner.py's lines on a BIO CRF tagger with other labels: a new CRF (transitions re-initialised at the new size)
    on the checkpoint's encoder. The placeholder labels (LABEL_0, ...) are no scheme, so the constraints go, with a
    warning, as with hf_rnn installed."""
    model = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=True, crf_constraints="BIO", **PER_LOC))
    model.save_pretrained(tmp_path)
    out = tmp_path / "out.json"
    if where == "remote":
        run_without_hf_rnn(RUN_NER_LINES, str(tmp_path), str(out), where, cwd=tmp_path)
    else:
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(RUN_NER_LINES), str(tmp_path), str(out), where], check=True
        )
    result = json.loads(out.read_text())
    assert result["module"].startswith("transformers_modules" if where == "remote" else "hf_rnn")
    assert result["constraints"] is None and len(result["warnings"]) == 1 and "unconstrained" in result["warnings"][0]
    assert [torch.tensor(p).shape for p in result["crf"]] == [(3, 3), (3,), (3,)]
    assert all(torch.tensor(p).isfinite().all() for p in result["crf"]) and math.isfinite(result["loss"])
    assert torch.equal(torch.tensor(result["encoder"]), model.model.embeddings.weight.detach())


@pytest.mark.parametrize(
    "new_labels, scheme",
    [
        (["O", "B-X", "I-X"], "BIO"),  # written in the saved scheme: kept
        (["O", "S-X", "B-X", "I-X", "E-X"], "BIOES"),  # another scheme: followed, with a warning
        (["NOUN", "VERB", "ADJ"], None),  # no scheme: unconstrained, with a warning
    ],
)
def test_new_labels_for_a_crf_checkpoint_bring_their_own_constraints(new_labels, scheme, tmp_path):
    from transformers import AutoConfig, AutoModelForTokenClassification

    hf_rnn.RnnForTokenClassification(tiny_config(use_crf=True, crf_constraints="BIO", **PER_LOC)).save_pretrained(
        tmp_path
    )
    id2label = dict(enumerate(new_labels))
    label2id = {label: i for i, label in id2label.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AutoConfig.from_pretrained(tmp_path, num_labels=len(new_labels), id2label=id2label, label2id=label2id)
        model = AutoModelForTokenClassification.from_pretrained(tmp_path, config=config, ignore_mismatched_sizes=True)
    said = [str(w.message) for w in caught if "crf_constraints" in str(w.message)]
    assert (config.id2label, config.crf_constraints) == (id2label, scheme)
    assert len(said) == (scheme != "BIO")
    fresh = hf_rnn.RnnForTokenClassification(
        tiny_config(use_crf=True, crf_constraints=scheme, id2label=id2label, label2id=label2id)
    )
    for name in ("allowed_transitions", "allowed_start", "allowed_end"):
        assert torch.equal(getattr(model.crf, name), getattr(fresh.crf, name)), name


def test_a_crf_config_whose_own_labels_break_its_scheme_is_still_refused(tmp_path):
    """Only new labels passed to `from_pretrained` adapt the constraints: a config.json edited into contradicting
    itself fails, as a config built that way does."""
    hf_rnn.RnnConfig(use_crf=True, crf_constraints="BIO", **PER_LOC).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["id2label"]["1"], saved["label2id"]["S-PER"] = "S-PER", saved["label2id"].pop("B-PER")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="crf_constraints='BIO' does not fit id2label: label 'S-PER'"):
        hf_rnn.RnnConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="crf_constraints='BIO' does not fit id2label: label 'S-PER'"):
        hf_rnn.RnnConfig(use_crf=True, crf_constraints="BIO", id2label=saved["id2label"], label2id=saved["label2id"])


STANDARD_PIPELINE = """
    import json, sys
    from transformers import pipeline
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    tagger = pipeline("token-classification", model=folder, trust_remote_code=True)
    answers = {}
    for strategy in ("first", "average", "max"):
        answers[strategy] = [
            [[e["entity_group"], e["word"], e["start"], e["end"]] for e in tagger(text, aggregation_strategy=strategy)]
            for text in texts
        ]
    json.dump(answers, open(folder + "/answers.json", "w"))
"""


def test_transformers_token_classification_pipeline_without_hf_rnn_gives_hf_rnns_entities(tmp_path):
    """The standard pipeline with word aggregation, where hf_rnn cannot be imported, tags raw text with attached
    punctuation as hf_rnn's own pipeline does (the tokenizer.json says every token is a word)."""
    from test_pipeline import PUNCTUATED, make
    from transformers import pipeline

    model, tokenizer = make(use_crf=True, seed=1, extra_words=(".", ","))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    run_without_hf_rnn(STANDARD_PIPELINE, str(tmp_path), json.dumps(PUNCTUATED), cwd=tmp_path)
    answers = json.loads((tmp_path / "answers.json").read_text())
    own = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    expected = [[[e["entity_group"], e["word"], e["start"], e["end"]] for e in own(text)] for text in PUNCTUATED]
    assert sum(map(len, expected)) >= 4
    assert answers == {strategy: expected for strategy in ("first", "average", "max")}


TOKENIZER_WITHOUT_TORCH = """
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from transformers import AutoTokenizer
    folder, words = sys.argv[1], json.loads(sys.argv[2])
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    assert type(tokenizer).__module__.startswith("transformers_modules"), type(tokenizer).__module__
    encoding = tokenizer(words, is_split_into_words=True)
    json.dump({name: encoding[name] for name in tokenizer.model_input_names}, open(folder + "/answers.json", "w"))
"""


def test_a_checkpoints_tokenizer_loads_and_encodes_without_torch(tmp_path):
    """The tokenizer file shipped with a checkpoint imports no torch (nor any sibling): its character ids and the
    character LMs' spelling (`LmSpelling`) come out the same where only transformers and tokenizers are installed."""
    from hf_rnn.vocabulary import build_char_tokenizer, build_word_tokenizer, lm_char_vocab

    words = ["Jean", "went", "to", "Zürich", "."]
    lm = build_char_tokenizer(["Jean went to Paris .\n"])
    tokenizer = build_word_tokenizer([words], char_min_frequency=1, lm_char_vocab=lm_char_vocab(lm))
    tokenizer.save_pretrained(tmp_path)
    assert {path.name for path in tmp_path.glob("*.py")} == {"tokenization_rnn.py"}
    run_without_hf_rnn(TOKENIZER_WITHOUT_TORCH, str(tmp_path), json.dumps(words), cwd=tmp_path)
    answers = json.loads((tmp_path / "answers.json").read_text())
    expected = tokenizer(words, is_split_into_words=True)
    assert set(answers) == {"input_ids", "attention_mask", "char_ids", "lm_char_ids", "lm_char_lengths"}
    assert answers == {name: expected[name] for name in answers}
