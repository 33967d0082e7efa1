import json

import pytest
from conftest import CELLS, tiny_config
from transformers import AutoConfig

import hf_rnn


def test_defaults_and_derived_dropouts():
    config = hf_rnn.RnnConfig(dropout=0.3, output_dropout=0.1)
    assert config.cell_type == "lstm" and config.embedding_dropout == 0.3 and config.output_dropout == 0.1
    assert hf_rnn.RnnConfig(bidirectional=True, hidden_size=7).output_size == 14


def test_json_round_trip(tmp_path):
    config = tiny_config(cell_type="gru", bidirectional=True, dropout=0.25, classifier_pooling="max", use_crf=True)
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model_type"] == "hf_rnn" and stored["cell_type"] == "gru"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, hf_rnn.RnnConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.id2label == {0: "A", 1: "B", 2: "C"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("cell_type", "transformer"),
        ("cell_type", "LSTM"),
        ("vocab_size", 0),
        ("embedding_size", -3),
        ("hidden_size", 2.5),
        ("hidden_size", True),
        ("num_layers", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("embedding_dropout", 1.5),
        ("output_dropout", "0.2"),
        ("word_dropout", 1.0),
        ("nonlinearity", "sigmoid"),
        ("classifier_pooling", "first"),
        ("initializer_range", 0.0),
        ("bidirectional", "yes"),
        ("locked_dropout", 1),
        ("pad_token_id", 37),
        ("pad_token_id", -1),
        ("eos_token_id", 99),
        ("char_level", "yes"),
        ("reverse", 1),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_cross_field_rules():
    for cell_type in set(CELLS) - {"rnn"}:  # fixed activations
        with pytest.raises(ValueError, match="nonlinearity"):
            tiny_config(cell_type=cell_type, nonlinearity="relu")
    tiny_config(cell_type="rnn", nonlinearity="relu")  # valid for the Elman cell
    with pytest.raises(ValueError, match="use_crf"):
        hf_rnn.RnnConfig(use_crf=True, num_labels=1)
    with pytest.raises(ValueError, match="label2id"):
        hf_rnn.RnnConfig(id2label={0: "A", 1: "B"}, label2id={"A": 0, "C": 5})
    with pytest.raises(ValueError, match="char_level"):
        tiny_config(char_level=True, char_encoder="lstm", char_vocab_size=10)


def test_label2id_is_derived_from_id2label():
    config = hf_rnn.RnnConfig(id2label={0: "O", 1: "B-X"})
    assert config.label2id == {"O": 0, "B-X": 1} and config.num_labels == 2


def test_invalid_json_value_is_reported_on_load(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    stored["cell_type"] = "lstn"
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="cell_type"):
        AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "labels, field",
    [
        (dict(id2label={0: "A", 2: "B"}), "id2label"),  # a gap: id 1 would have no name
        (dict(id2label={1: "A", 2: "B"}), "id2label"),
        (dict(id2label={"x": "A", "y": "B"}), "id2label"),
        (dict(id2label={0: "A", 1: 5}), "id2label"),
        (dict(id2label={0: "A", 1: ""}), "id2label"),
        (dict(id2label={0: "A", 1: "A"}), "id2label"),
        (dict(id2label={}), "num_labels"),
        (dict(num_labels=0), "num_labels"),
        (dict(num_labels=-1), "num_labels"),
        (dict(id2label={0: "A", 1: "B"}, label2id={"A": 1, "B": 0}), "label2id"),  # same ids, swapped
        (dict(label2id={"A": 0, "B": 1}), "label2id"),  # the base class would replace it with LABEL_0, LABEL_1
    ],
)
def test_inconsistent_label_maps_raise_naming_the_field(labels, field):
    with pytest.raises(ValueError, match=rf"RnnConfig\.{field}"):
        hf_rnn.RnnConfig(**labels)


@pytest.mark.parametrize("field", ["forget_bias", "initializer_range"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"RnnConfig\.{field}"):
        hf_rnn.RnnConfig(**{field: value})


def test_an_unknown_problem_type_raises():
    with pytest.raises(ValueError, match=r"RnnConfig\.problem_type"):
        hf_rnn.RnnConfig(problem_type="multi_label")


def test_label_ids_stored_as_json_strings_still_load():
    config = hf_rnn.RnnConfig(id2label={"0": "O", "1": "B-X"}, label2id={"O": 0, "B-X": 1})
    assert config.id2label == {0: "O", 1: "B-X"} and config.num_labels == 2


def test_an_unknown_key_warns_naming_the_nearest_field(tmp_path):
    with pytest.warns(UserWarning, match="'hiden_size'.*did you mean 'hidden_size'"):
        hf_rnn.RnnConfig(hiden_size=512)
    tiny_config().save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**stored, "num_layer": 3}))
    with pytest.warns(UserWarning, match="'num_layer'.*did you mean 'num_layers'"):
        AutoConfig.from_pretrained(tmp_path)


def test_a_saved_config_loads_without_warnings(tmp_path, recwarn):
    hf_rnn.RnnForCausalLM(tiny_config(tie_word_embeddings=True)).save_pretrained(tmp_path)
    hf_rnn.RnnForCausalLM.from_pretrained(tmp_path)
    AutoConfig.from_pretrained(tmp_path)
    assert not [w for w in recwarn if "unknown key" in str(w.message)]


def test_num_labels_resets_the_label_maps_as_transformers_does(tmp_path):
    """`from_pretrained(path, num_labels=N)` is how transformers loads a checkpoint with a new head."""
    tiny_config().save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path, num_labels=5)
    assert config.num_labels == 5 and config.id2label == {i: f"LABEL_{i}" for i in range(5)}


def test_num_hidden_layers_is_an_alias_of_num_layers():
    config = hf_rnn.RnnConfig(num_hidden_layers=3)
    assert config.num_layers == 3 and config.num_hidden_layers == 3


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("vocab_size", 2**63, r"RnnConfig\.vocab_size must be a positive integer up to 2\*\*31 - 1"),
        ("hidden_size", 2**40, r"RnnConfig\.hidden_size must be a positive integer up to"),
        ("char_kernel_size", 2**63 + 1, r"RnnConfig\.char_kernel_size must be a positive integer up to"),
        ("num_labels", "3", r"RnnConfig\.num_labels must be a positive integer up to 2\*\*20, got '3'"),
        ("num_labels", 3.0, r"RnnConfig\.num_labels must be a positive integer up to 2\*\*20, got 3\.0"),
        ("num_labels", True, r"RnnConfig\.num_labels must be a positive integer up to 2\*\*20, got True"),
        ("num_labels", -1, r"RnnConfig\.num_labels must be a positive integer up to 2\*\*20, got -1"),
        ("num_labels", 2**40, r"RnnConfig\.num_labels must be a positive integer up to 2\*\*20, got 1099511627776"),
        ("torch_dtype", "float99", r"RnnConfig\.torch_dtype must be None or a floating-point torch dtype"),
        ("dtype", "float99", r"RnnConfig\.dtype must be None or a floating-point torch dtype"),
        ("dtype", "int8", r"RnnConfig\.dtype must be None or a floating-point torch dtype"),
        ("dtype", 5, r"RnnConfig\.dtype must be None or a floating-point torch dtype"),
        ("char_vocab_size", 50, r"RnnConfig\.char_vocab_size must be 0 without a char_encoder"),
        (
            {"char_encoder": "cnn", "char_vocab_size": 2**63},
            None,
            r"RnnConfig\.char_vocab_size must be an integer in \[3,",
        ),
        (
            "max_length",
            -5,
            r"RnnConfig\.max_length=-5: a generation parameter, .*model\.generation_config\.max_length",
        ),
        ("num_beams", 4, r"RnnConfig\.num_beams=4: a generation parameter"),
        ("forget_bias", 1e308, r"RnnConfig\.forget_bias must be a number in \[-65504\.0, 65504\.0\]"),
        ("forget_bias", -1e5, r"RnnConfig\.forget_bias must be a number in"),
        ("initializer_range", 1e308, r"RnnConfig\.initializer_range must be None or a number in"),
    ],
)
def test_values_that_failed_at_build_or_were_dropped_are_refused_naming_the_field(tmp_path, key, value, message):
    """Each passed the config before, then failed inside torch or transformers at model build (`vocab_size=2**63`,
    `forget_bias=1e308`), inside the base class (`num_labels="3"`, `dtype="float99"`), or was silently dropped or
    ignored (`max_length=-5`, `char_vocab_size` without a character encoder, `num_labels=True`). The same from a
    hand-edited config.json."""
    overrides = key if isinstance(key, dict) else {key: value}
    with pytest.raises(ValueError, match=message):
        hf_rnn.RnnConfig(**overrides)
    tiny_config().save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    stored.pop("id2label", None), stored.pop("label2id", None)  # num_labels alone
    (tmp_path / "config.json").write_text(json.dumps({**stored, **overrides}))
    with pytest.raises(ValueError, match=message):
        AutoConfig.from_pretrained(tmp_path)


def test_the_largest_accepted_values_build(tmp_path):
    """The bounds' other side: the defaults of GenerationConfig, a named float dtype and a float16-sized bias pass."""
    config = tiny_config(forget_bias=65504.0, dtype="bfloat16", max_length=20, num_labels=2)
    model = hf_rnn.RnnForTokenClassification(config)
    assert model.config.dtype is not None and model.config.num_labels == 2
    model.save_pretrained(tmp_path)
    assert hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path).config.forget_bias == 65504.0


def test_new_labels_given_to_from_pretrained_are_checked_and_saved_loadable(tmp_path):
    """Before: `from_pretrained(path, id2label=new)` kept the saved label2id (the saved checkpoint then failed to load:
    "label2id must be the inverse of id2label"), and id2label with a gap or a name twice was taken unchecked."""
    from transformers import AutoModelForTokenClassification

    hf_rnn.RnnForTokenClassification(tiny_config(num_layers=1)).save_pretrained(tmp_path / "old")
    new = {0: "O", 1: "B-LOC"}
    model = AutoModelForTokenClassification.from_pretrained(
        tmp_path / "old", id2label=new, ignore_mismatched_sizes=True
    )
    assert model.config.label2id == {name: index for index, name in new.items()}
    model.save_pretrained(tmp_path / "new")
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "new").config.id2label == new
    only_label2id = AutoConfig.from_pretrained(tmp_path / "old", label2id={"O": 0, "X": 1})
    assert (only_label2id.id2label, only_label2id.num_labels) == ({0: "O", 1: "X"}, 2)
    for labels, message in (
        ({0: "O", 5: "B-LOC"}, "be keyed by the ids 0 .. 1"),
        ({0: "O", 1: "O"}, "name distinct labels"),
    ):
        with pytest.raises(ValueError, match=f"RnnConfig.id2label must {message}"):
            AutoModelForTokenClassification.from_pretrained(tmp_path / "old", id2label=labels)


@pytest.mark.parametrize("field, value", [("hidden_size", -1), ("dropout", float("nan")), ("cell_type", "foo")])
def test_a_value_given_to_from_pretrained_is_checked_as_in_init(field, value, tmp_path):
    """transformers sets from_pretrained's keyword arguments after `__init__`: they must meet the same checks."""
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"RnnConfig.{field} must be"):
        AutoConfig.from_pretrained(tmp_path, **{field: value})
    with pytest.raises(ValueError, match=f"RnnConfig.{field} must be"):
        hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path, **{field: value})


BIO = {"id2label": {0: "O", 1: "B-X", 2: "I-X"}, "label2id": {"O": 0, "B-X": 1, "I-X": 2}}


@pytest.mark.parametrize("saved", [{"use_crf": True, "crf_constraints": "BIO"}, {}, {"head_type": "semicrf"}])
@pytest.mark.parametrize(
    "new, head",
    [
        ({"use_crf": False}, None),  # None: the saved head, unless it was the CRF (then the softmax)
        ({"use_crf": True}, "crf"),
        ({"head_type": "softmax"}, "softmax"),
        ({"head_type": "crf"}, "crf"),
        ({"head_type": "semicrf"}, "semicrf"),
    ],
)
def test_a_head_given_to_from_pretrained_is_the_head_built(saved, new, head, tmp_path):
    """`from_pretrained(path, use_crf=False)` / `head_type=...`: the config and the tagger agree with a config built
    with that head (was: `head_type` and `use_crf` disagreeing, the saved head built)."""
    hf_rnn.RnnForTokenClassification(tiny_config(**BIO, **saved)).save_pretrained(tmp_path)
    saved_head = hf_rnn.RnnConfig(**BIO, **saved).head_type
    head = head or ("softmax" if saved_head == "crf" else saved_head)
    reference = hf_rnn.RnnConfig(**BIO, head_type=head)
    loaded = AutoConfig.from_pretrained(tmp_path, **new)
    assert (loaded.head_type, loaded.use_crf, loaded.max_segment_length) == (
        reference.head_type,
        reference.use_crf,
        reference.max_segment_length,
    )
    assert loaded.crf_constraints is None or head == "crf"
    model = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path, ignore_mismatched_sizes=True, **new)
    assert type(model.head) is type(hf_rnn.RnnForTokenClassification(reference).head)
