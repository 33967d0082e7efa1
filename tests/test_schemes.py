"""Label schemes: the CRF constraints and the conversions against a brute-force writing of every chunking, repairs and
readings against seqeval, and detection."""

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_rnn.data import read_conll
from hf_rnn.schemes import (
    SCHEMES,
    chunks,
    convert,
    detect_scheme,
    label_scheme,
    scheme_constraints,
    split_tag,
)

seqeval_scheme = pytest.importorskip("seqeval.scheme")
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PREFIXES = {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BILOU": "BILU"}
SEQEVAL = {
    "BIO": seqeval_scheme.IOB2,
    "IOB1": seqeval_scheme.IOB1,
    "BIOES": seqeval_scheme.IOBES,
    "BILOU": seqeval_scheme.BILOU,
}
TYPES = ("X", "Y")


def chunkings(length: int):
    """Every way to lay typed chunks over `length` tokens: lists of (type, first, last)."""
    if length == 0:
        yield []
        return
    for rest in chunkings(length - 1):  # the last token is O ...
        yield rest
    for first in range(length):  # ... or ends a chunk starting at `first`
        for rest in chunkings(first):
            for kind in TYPES:
                yield [*rest, (kind, first, length - 1)]


def write(chunking, length: int, scheme: str) -> tuple[str, ...]:
    """The textbook writing of a chunking in a scheme (independent of hf_rnn.schemes)."""
    tags = ["O"] * length
    for kind, first, last in chunking:
        for position in range(first, last + 1):
            tags[position] = "I-" + kind
        if scheme == "BIO":
            tags[first] = "B-" + kind
        elif scheme == "IOB1":
            if any(k == kind and end == first - 1 for k, _, end in chunking):
                tags[first] = "B-" + kind
        else:
            single, begin, end = ("S", "B", "E") if scheme == "BIOES" else ("U", "B", "L")
            if first == last:
                tags[first] = f"{single}-{kind}"
            else:
                tags[first], tags[last] = f"{begin}-{kind}", f"{end}-{kind}"
    return tuple(tags)


def labels_of(scheme: str) -> list[str]:
    return ["O"] + [f"{prefix}-{kind}" for kind in TYPES for prefix in PREFIXES[scheme]]


def allowed_by(constraints, labels, tags) -> bool:
    transitions, start, end = constraints
    ids = [labels.index(tag) for tag in tags]
    moves = all(transitions[a][b] for a, b in zip(ids, ids[1:]))
    return start[ids[0]] and end[ids[-1]] and moves


@pytest.mark.parametrize("scheme", SCHEMES)
def test_constraints_allow_exactly_the_valid_sequences(scheme):
    labels = labels_of(scheme)
    constraints = scheme_constraints(labels, scheme)
    for length in range(1, 5):
        valid = {write(chunking, length, scheme) for chunking in chunkings(length)}
        allowed = {tags for tags in itertools.product(labels, repeat=length) if allowed_by(constraints, labels, tags)}
        assert allowed == valid, (length, sorted(allowed ^ valid)[:5])


@pytest.mark.parametrize("source, target", list(itertools.product(SCHEMES, SCHEMES)))
def test_conversions_between_schemes_keep_every_chunking(source, target):
    for length in range(1, 6):
        for chunking in chunkings(length):
            tags = write(chunking, length, source)
            assert tuple(convert(tags, target)) == write(chunking, length, target), tags
            assert chunks(tags) == sorted(chunking, key=lambda chunk: chunk[1])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from(["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"]), min_size=1, max_size=10)
)
def test_invalid_sequences_are_repaired_the_way_seqeval_reads_them(tags):
    """Any mix of prefixes (an I- after O, an E- without its B-, ...): the converted tags, read strictly in their
    scheme, hold the chunks seqeval's default (conlleval) mode reads in the input."""
    expected = [(kind, first, last) for kind, first, last in get_entities(tags)]
    assert chunks(tags) == expected
    for scheme in SCHEMES:
        converted = convert(tags, scheme)
        assert allowed_by(scheme_constraints(labels_of(scheme), scheme), labels_of(scheme), converted)
        strict = seqeval_scheme.Entities([converted], SEQEVAL[scheme]).entities[0]
        assert [(e.tag, e.start, e.end - 1) for e in strict] == expected
        assert convert(converted, "BIO") == convert(tags, "BIO")  # a round trip changes nothing further


def test_split_tag_and_its_errors():
    assert split_tag("B-PER") == ("B", "PER") and split_tag("U-LOC") == ("U", "LOC") and split_tag("O") == ("O", None)
    assert split_tag("I-B-X") == ("I", "B-X")  # the type is everything after the first hyphen
    for bad in ("NOUN", "PER", "B-", "-LRB-", "X-PER", "BI-PER", ""):
        with pytest.raises(ValueError, match=repr(bad)):
            split_tag(bad)


def test_constraints_refuse_labels_outside_the_scheme():
    with pytest.raises(ValueError, match="'NOUN'"):
        scheme_constraints(["O", "NOUN"], "BIO")
    with pytest.raises(ValueError, match="'E-X'.*BIO"):
        scheme_constraints(["O", "B-X", "E-X"], "BIO")
    with pytest.raises(ValueError, match="'L-X'.*BIOES"):
        scheme_constraints(["O", "B-X", "L-X"], "BIOES")
    with pytest.raises(ValueError, match="scheme"):
        scheme_constraints(["O"], "BIOLU")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_detection_reads_the_scheme_of_written_sequences(scheme):
    sequences = [write(chunking, 5, scheme) for chunking in itertools.islice(chunkings(5), 0, None, 7)]
    assert detect_scheme(sequences) == scheme
    # the label set alone tells BIOES and BILOU, not BIO from IOB1
    assert label_scheme(labels_of(scheme)) == ("BIO" if scheme == "IOB1" else scheme)


def test_detection_of_other_tags_and_of_mixtures():
    assert detect_scheme([["NOUN", "VERB", "PRON"], ["-LRB-", "X"]]) is None
    assert detect_scheme([["O", "O"]]) is None
    assert label_scheme([]) is None
    with pytest.raises(ValueError, match=r"\['NOUN'\] are not 'O' or <prefix>-<TYPE>"):
        detect_scheme([["B-PER", "NOUN", "O"]])
    with pytest.raises(ValueError, match="mix BIOES's E-/S- with BILOU's L-/U-"):
        label_scheme(["O", "S-X", "U-X"])
    # a BIO file with a few annotation slips (I- after O) is still BIO; IOB1 opens most chunks with I-
    assert detect_scheme([["B-X", "I-X", "O", "B-Y"], ["O", "I-X"]]) == "BIO"
    assert detect_scheme([["I-X", "B-X", "O", "I-Y"], ["B-X"]]) == "IOB1"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (real corpora, not shipped) is absent")
@pytest.mark.parametrize("path", ["wnut17/emerging.dev.conll", "conll2000/train.txt"])
def test_real_bio_files_are_detected_and_survive_a_round_trip(path):
    gold = [s.tags for s in read_conll(SHARED / path)]
    assert detect_scheme(gold) == "BIO"
    for scheme in SCHEMES:
        assert [convert(convert(tags, scheme), "BIO") for tags in gold] == [convert(tags, "BIO") for tags in gold]
    assert sum(convert(tags, "BIO") == list(tags) for tags in gold) == len(gold)  # valid BIO as written


@pytest.mark.parametrize("scheme", SCHEMES)
def test_convert_refuses_tags_that_are_not_chunk_tags(scheme):
    """`chunks` reads 'NOUN' leniently as a one-word chunk (conlleval's way of scoring); converting it would write POS
    labels as 'S-NOUN' / 'B-NOUN' chunks."""
    for tags in (["DET", "NOUN"], ["B-PER", "NOUN"], ["B-PER", ""]):
        with pytest.raises(ValueError, match=r"tag '\w*' at position \d is not a chunk tag"):
            convert(tags, scheme)
