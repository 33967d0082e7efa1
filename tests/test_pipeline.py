"""`pipeline("rnn-token-classification")` reports the model's Viterbi tags and CRF marginals, with spans in any scheme,
decoding once."""

import pytest
import torch
from transformers import pipeline

import hf_rnn
import hf_rnn.crf as hf_crf
from hf_rnn.vocabulary import build_word_tokenizer

seqeval_scheme = pytest.importorskip("seqeval.scheme")

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [
    "Jean went to Paris with Marie Curie",
    "the river near Oslo is cold",
    "Anna Maria Berlin Paris Oslo Jean",
    "to with near is the cold went",
]


def make(use_crf: bool, seed: int = 0, extra_words: tuple[str, ...] = (), labels=LABELS, scheme="BIO"):
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer([s.split() for s in SENTENCES] + [list(extra_words)])
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=8,
        hidden_size=8,
        bidirectional=True,
        initializer_range=1.0,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        use_crf=use_crf,
        crf_constraints=scheme if use_crf else None,
    )
    model = hf_rnn.RnnForTokenClassification(config).eval()
    return model, tokenizer


def model_tags(model, tokenizer, sentence: str):
    inputs = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    probabilities = model.tag_probabilities(output.emissions, inputs["attention_mask"].bool())
    return output.predictions[0].tolist(), output.emissions[0].argmax(-1).tolist(), probabilities[0]


@pytest.mark.parametrize("task", ["rnn-token-classification", "token-classification"])
def test_crf_pipeline_equals_viterbi_and_marginals(task):
    """transformers' own task reads `logits`: for a CRF those are max-marginals, whose argmax is the Viterbi path;
    hf_rnn's task also scores each tag by its posterior marginal."""
    model, tokenizer = make(use_crf=True)
    tagger = pipeline(task, model=model, tokenizer=tokenizer)
    differs = False
    for sentence in SENTENCES:
        tags, argmax, probabilities = model_tags(model, tokenizer, sentence)
        tokens = tagger(sentence, ignore_labels=[])
        assert [t["entity"] for t in tokens] == [LABELS[i] for i in tags]
        for t in tokens if task == "rnn-token-classification" else ():
            assert t["score"] == pytest.approx(probabilities[t["index"], LABELS.index(t["entity"])].item(), rel=1e-5)
            assert sentence[t["start"] : t["end"]] == t["word"]
        differs |= tags != argmax
    assert differs, "emission argmax never differed from Viterbi: the test would not catch a pipeline using argmax"


def bio_spans(words: list[str], tags: list[int]) -> list[tuple[str, str]]:
    """(type, text) spans read from BIO tags, independently of the pipeline: an I- without its B- opens a span."""
    spans, current = [], None
    for word, tag in zip(words, (LABELS[i] for i in tags)):
        if tag == "O":
            current = None
        elif tag.startswith("B-") or current is None or current[0] != tag[2:]:
            current = [tag[2:], [word]]
            spans.append(current)
        else:
            current[1].append(word)
    return [(kind, " ".join(w)) for kind, w in spans]


def test_crf_pipeline_groups_bio_spans_with_offsets():
    model, tokenizer = make(use_crf=True, seed=3)
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    found = 0
    for sentence in SENTENCES:
        tags, _, _ = model_tags(model, tokenizer, sentence)
        spans = tagger(sentence)
        assert [(s["entity_group"], s["word"]) for s in spans] == bio_spans(sentence.split(), tags)
        for span in spans:
            assert sentence[span["start"] : span["end"]] == span["word"]
        found += len(spans)
    assert found > 0


@pytest.mark.parametrize("scheme", ["BIOES", "BILOU"])
def test_spans_of_a_bioes_or_bilou_model_are_the_chunks_seqeval_reads(scheme):
    """transformers' grouping knows B-/I- only: it would cut a BIOES entity before its E- and keep S- as a type."""
    labels = ["O"] + [f"{prefix}-{kind}" for kind in ("PER", "LOC") for prefix in scheme.replace("O", "")]
    model, tokenizer = make(use_crf=True, seed=3, labels=labels, scheme=scheme)
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    reference = {"BIOES": seqeval_scheme.IOBES, "BILOU": seqeval_scheme.BILOU}[scheme]
    lengths = []
    for sentence in SENTENCES + [" ".join(reversed(s.split())) for s in SENTENCES]:
        words = sentence.split()
        tags = [labels[i] for i in model_tags(model, tokenizer, sentence)[0]]
        chunks = seqeval_scheme.Entities([tags], reference).entities[0]
        expected = [(chunk.tag, " ".join(words[chunk.start : chunk.end])) for chunk in chunks]
        assert [(span["entity_group"], span["word"]) for span in tagger(sentence)] == expected, tags
        lengths += [chunk.end - chunk.start for chunk in chunks]
    assert max(lengths) > 1 and min(lengths) == 1, "the model tagged no multi-word or no one-word entity"


def test_a_pipeline_call_decodes_each_batch_once(monkeypatch):
    """One Viterbi per batch, and no max-marginal `logits` (which cost as much again): the pipeline scores tags by
    their marginals."""
    calls = {"_viterbi": 0, "_max_product": 0}
    for name in calls:
        original = getattr(hf_crf, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(hf_crf, name, counted)
    model, tokenizer = make(use_crf=True)
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    tagger(SENTENCES, batch_size=2)
    assert calls == {"_viterbi": 2, "_max_product": 0}


def test_pre_split_words_and_word_aggregation():
    model, tokenizer = make(use_crf=True, seed=1)
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    words = SENTENCES[0].split()
    tags, _, _ = model_tags(model, tokenizer, SENTENCES[0])
    out = tagger([words], is_split_into_words=True, aggregation_strategy="first")[0]
    assert [(s["entity_group"], s["word"]) for s in out] == bio_spans(words, tags)


def test_softmax_tagger_matches_transformers_own_pipeline():
    model, tokenizer = make(use_crf=False)
    ours = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    theirs = pipeline("token-classification", model=model, tokenizer=tokenizer)
    for sentence in SENTENCES:
        a, b = ours(sentence, ignore_labels=[]), theirs(sentence, ignore_labels=[])
        assert [(e["entity"], e["start"], e["end"]) for e in a] == [(e["entity"], e["start"], e["end"]) for e in b]
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], rel=1e-5)


def test_tag_takes_words_raw_text_or_a_batch_and_answers_like_the_model():
    model, tokenizer = make(use_crf=True)
    words = SENTENCES[0].split()
    tags, _, probabilities = model_tags(model, tokenizer, SENTENCES[0])
    expected = [
        (w, LABELS[t], pytest.approx(probabilities[i, t].item(), rel=1e-5))
        for i, (w, t) in enumerate(zip(words, tags))
    ]
    assert model.tag(words, tokenizer) == expected
    assert model.tag(SENTENCES[0], tokenizer) == expected
    batch = model.tag([words, SENTENCES[1].split()], tokenizer)
    assert batch[0] == expected and len(batch[1]) == len(SENTENCES[1].split())
    with pytest.raises(ValueError, match="word 1 of sentence 0"):
        model.tag(["Jean", "", "Paris"], tokenizer)


def test_word_aggregation_of_raw_text_keeps_punctuation_a_word_of_its_own():
    """The tokenizer splits "Paris." like the training files; the parent pipeline would glue "." to "Paris" by its
    spacing, and the merged word would keep only Paris's tag and score."""
    model, tokenizer = make(use_crf=True, extra_words=(".",))  # a known "." (an unknown one is never merged)
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    for sentence in SENTENCES:
        text = sentence + "."
        words = model.tag(text, tokenizer)
        assert words[-1][0] == "."
        # the last group holds the last words; its score is the mean over its words, "." included
        last = tagger(text, aggregation_strategy="first", ignore_labels=[])[-1]
        members = [p for (w, _, p), start in zip(words, _starts(text, words)) if start >= last["start"]]
        assert last["score"] == pytest.approx(sum(members) / len(members), rel=1e-5)


def _starts(text: str, words: list) -> list[int]:
    """Character offset of each tagged word in `text`."""
    starts, position = [], 0
    for word, _, _ in words:
        position = text.index(word, position)
        starts.append(position)
        position += len(word)
    return starts


PUNCTUATED = [
    "Jean went to Paris.",
    "Marie Curie, near Oslo, is cold.",
    "the river near Berlin.Anna Maria went to Oslo",
    "Paris Oslo. Jean, Marie Curie.",
]


def _entities(tagger, text: str, strategy: str) -> list[tuple]:
    return [(e["entity_group"], e["word"], e["start"], e["end"]) for e in tagger(text, aggregation_strategy=strategy)]


@pytest.mark.parametrize("use_crf", [True, False])
def test_transformers_token_classification_pipeline_gives_hf_rnns_entities_on_raw_text(use_crf):
    """transformers' own pipeline with word aggregation on raw text: each token is a word (the tokenizer says so), so
    "Paris." stays two words and no entity is dropped, as in hf_rnn's pipeline, whose spans read the model's tags."""
    compared = 0
    for seed in range(4):
        model, tokenizer = make(use_crf, seed=seed, extra_words=(".", ","))
        own = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
        standard = pipeline("token-classification", model=model, tokenizer=tokenizer)
        for text in PUNCTUATED:
            expected = _entities(own, text, "simple")
            for strategy in ("first", "average", "max"):
                assert _entities(standard, text, strategy) == expected, (seed, text, strategy)
                assert _entities(own, text, strategy) == expected
            compared += len(expected)
    assert compared >= 20
