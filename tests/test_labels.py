"""hf_rnn.scripts.labels: a dataset's tags in a tagger's labels, converted between schemes exactly or refused where they are."""

import pytest

import hf_rnn
from hf_rnn.data import TaggedSentence, tagging_dataset
from hf_rnn.scripts.labels import (
    at_position,
    foreign_scheme,
    map_unknown,
    model_labels,
    model_scheme,
    relabel,
    scheme_labels,
    tag_names,
)

BIO = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "I-LOC", "I-LOC"]]
BIOES = [["B-PER", "E-PER", "O", "S-LOC"], ["O", "B-LOC", "I-LOC", "E-LOC"]]  # written by hand


def dataset(*splits: list[list[str]], labels: list[str] | None = None):
    names = ("train", "validation", "test")
    sentences = {
        name: [TaggedSentence([f"w{i}" for i in range(len(tags))], tags, "f", list(range(len(tags)))) for tags in part]
        for name, part in zip(names, splits)
    }
    own = sorted({tag for part in splits for tags in part for tag in tags})
    return tagging_dataset(sentences, label_names=labels or own)


def tagger_config(labels: list[str], constraints: str | None = None) -> hf_rnn.RnnConfig:
    crf = {"use_crf": True, "crf_constraints": constraints} if constraints else {}
    return hf_rnn.RnnConfig(
        vocab_size=10,
        embedding_size=4,
        hidden_size=4,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **crf,
    )


def test_relabel_converts_between_schemes_exactly_and_back():
    raw = dataset(BIO, [["B-PER"]])
    labels = scheme_labels(raw["train"].features["tags"].feature.names, "BIOES")
    assert labels == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]
    converted = relabel(raw, labels, "BIO", "BIOES")
    assert tag_names(converted["train"]) == BIOES and tag_names(converted["validation"]) == [["S-PER"]]
    assert converted["train"]["tokens"] == raw["train"]["tokens"]
    assert tag_names(relabel(converted, sorted({t for tags in BIO for t in tags}), "BIOES", "BIO")["train"]) == BIO
    assert tag_names(relabel(raw, ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])["train"]) == BIO  # no conversion


def test_relabel_refuses_a_tag_converting_would_change_or_the_labels_lack_where_it_is():
    broken = dataset([["O", "I-PER"]])  # BIO that converting reads as B-PER
    labels = scheme_labels(["O", "B-PER", "I-PER"], "BIOES")
    with pytest.raises(ValueError, match=r"split 'train' row 0, position 1: tag 'I-PER' is not valid BIO here"):
        relabel(broken, labels, "BIO", "BIOES")
    where = lambda split, row, position: f"file.tsv:{10 * row + position}"  # noqa: E731
    with pytest.raises(ValueError, match=r"file.tsv:3: tag 'B-LOC' \('S-LOC' in the checkpoint's BIOES\) is not"):
        relabel(dataset(BIO), labels, "BIO", "BIOES", where)
    with pytest.raises(ValueError, match=r"position 3: tag 'B-LOC' is not among the checkpoint's labels"):
        relabel(dataset(BIO), ["O", "B-PER", "I-PER"])
    assert at_position("test", 2, 5) == "split 'test' row 2, position 5"


def test_map_unknown_replaces_what_the_labels_cannot_express_before_any_conversion():
    raw = dataset(BIO)
    by_type = map_unknown(raw, ["O", "B-PER", "E-PER", "I-PER", "S-PER"], "O", by_type=True)  # no LOC type
    assert tag_names(by_type["train"]) == [["B-PER", "I-PER", "O", "O"], ["O", "O", "O", "O"]]
    by_label = map_unknown(raw, ["O", "B-LOC", "B-PER", "I-PER"], "O", by_type=False)  # no I-LOC label
    assert tag_names(by_label["train"]) == [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "O", "O"]]


def test_a_checkpoints_labels_scheme_and_the_datas_own():
    bioes = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert model_labels(tagger_config(bioes)) == bioes
    assert model_scheme(tagger_config(bioes)) == "BIOES"
    assert model_scheme(tagger_config(["O", "B-PER", "I-PER"], "IOB1")) == "IOB1"  # the CRF's constraints tell
    assert model_scheme(tagger_config(["NOUN", "VERB"])) is None
    assert foreign_scheme(tagger_config(bioes, "BIOES"), BIO) == "BIO"
    assert foreign_scheme(tagger_config(bioes, "BIOES"), BIOES) is None
    iob1 = [["I-PER", "I-PER", "O"], ["I-PER", "B-PER"]]
    assert foreign_scheme(tagger_config(["O", "B-PER", "I-PER"]), iob1) is None  # a softmax B-/I- model reads IOB1 too
    assert foreign_scheme(tagger_config(["O", "B-PER", "I-PER"], "BIO"), iob1) == "IOB1"
    assert foreign_scheme(tagger_config(["NOUN", "VERB"]), [["NOUN"]]) is None
