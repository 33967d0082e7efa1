"""Hostile input to the models, generate() and the pipeline: a correct result or a ValueError naming the value."""

import pytest
import torch
from conftest import CELLS, tiny_config
from transformers import pipeline

import hf_rnn
from hf_rnn.vocabulary import build_word_tokenizer

HEADS = (hf_rnn.RnnModel, hf_rnn.RnnForTokenClassification, hf_rnn.RnnForSequenceClassification, hf_rnn.RnnForCausalLM)
BIO = {0: "O", 1: "B-X", 2: "I-X"}


def tagger(use_crf: bool, **overrides) -> hf_rnn.RnnForTokenClassification:
    return hf_rnn.RnnForTokenClassification(tiny_config(use_crf=use_crf, **overrides))


@pytest.mark.parametrize("use_crf", [False, True])
@pytest.mark.parametrize("bad", [-1, 3, -7, 100])
def test_labels_outside_the_label_set_name_the_value(use_crf, bad):
    """-1 is what datasets' ClassLabel stores for a missing label: the CRF head used to train it as tag 0."""
    model = tagger(use_crf)
    labels = torch.tensor([[0, bad, 1, -100], [2, 2, 2, 2]])
    with pytest.raises(ValueError, match=rf"labels\[0, 1\] = {bad} .*num_labels=3"):
        model(input_ids=torch.randint(1, 37, (2, 4)), labels=labels)


@pytest.mark.parametrize("use_crf", [False, True])
def test_a_batch_without_labelled_tokens_gives_zero_loss_and_zero_gradients(use_crf):
    """The Trainer passes num_items_in_batch=0 for such a batch: 0/0 used to make every parameter NaN."""
    model = tagger(use_crf)
    labels = torch.full((2, 4), -100)
    for count in (None, 0, torch.tensor(0)):
        model.zero_grad()
        loss = model(input_ids=torch.randint(1, 37, (2, 4)), labels=labels, num_items_in_batch=count).loss
        loss.backward()
        assert loss.item() == 0
        assert all(p.grad is None or torch.all(p.grad == 0) for p in model.parameters())


def test_a_gold_path_that_breaks_the_crf_constraints_names_the_sequence_and_the_move():
    model = tagger(True, id2label=BIO, label2id={v: k for k, v in BIO.items()}, crf_constraints="BIO")
    ids = torch.randint(1, 37, (2, 5))
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    allowed = torch.tensor([[1, 2, 0, 1, 2], [-100, 0, 1, -100, 2]])  # -100 pieces are skipped by the chain
    assert torch.isfinite(model(input_ids=ids, attention_mask=attention_mask, labels=allowed).loss)
    with pytest.raises(ValueError, match=r"labels\[1\] at position 3: 'I-X' after 'O' .*crf_constraints='BIO'"):
        model(input_ids=ids, attention_mask=attention_mask, labels=torch.tensor([[1, 2, 0, 1, 2], [-100, 1, 0, 2, 2]]))
    with pytest.raises(ValueError, match=r"labels\[0\] at position 0: 'I-X' as the first tag"):
        model(input_ids=ids, attention_mask=attention_mask, labels=torch.tensor([[2, 2, 0, 1, 2], [-100, 0, 1, 2, 2]]))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("bad", [37, 1000, -1])
def test_input_ids_outside_the_vocabulary_name_the_id_and_the_size(head, bad):
    model = head(tiny_config())
    with pytest.raises(ValueError, match=rf"input_ids\[0, 2\] = {bad} .*vocab_size=37"):
        model(input_ids=torch.tensor([[1, 2, bad], [3, 4, 5]]))


def test_char_ids_outside_the_character_vocabulary_name_the_id_and_the_size():
    model = tagger(False, char_encoder="cnn", char_vocab_size=10)
    char_ids = torch.zeros(1, 2, 4, dtype=torch.long)
    char_ids[0, :, 0] = 3
    char_ids[0, 1, 1] = 10
    with pytest.raises(ValueError, match=r"char_ids\[0, 1\] = \[3, 10, 0, 0\] .*char_vocab_size=10"):
        model(input_ids=torch.tensor([[1, 2]]), char_ids=char_ids)
    with pytest.raises(ValueError, match="char_ids must hold integer ids"):
        model(input_ids=torch.tensor([[1, 2]]), char_ids=char_ids.float())


@pytest.mark.parametrize("use_crf", [False, True])
@pytest.mark.parametrize("shape", [(2, 0), (0, 3), (0, 0)])
def test_empty_batches_and_zero_length_sequences_give_empty_outputs(use_crf, shape):
    model = tagger(use_crf, bidirectional=True).eval()
    ids = torch.zeros(shape, dtype=torch.long)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros_like(ids))
    assert out.logits.shape == (*shape, 3) and out.predictions.shape == shape
    assert out.loss.item() == 0
    encoder = hf_rnn.RnnModel(tiny_config(bidirectional=True))
    assert encoder(input_ids=ids).last_hidden_state.shape == (*shape, 10)


@pytest.mark.parametrize("cell_type", CELLS)
def test_a_zero_length_window_keeps_the_carried_state(cell_type):
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type)).eval()
    state = model(input_ids=torch.tensor([[3, 4, 5]])).cache
    after = model(input_ids=torch.zeros(1, 0, dtype=torch.long), cache=state).cache
    assert torch.equal(after.hidden, state.hidden)


def test_generate_refuses_an_empty_prompt_by_name():
    model = hf_rnn.RnnForCausalLM(tiny_config()).eval()
    with pytest.raises(ValueError, match="empty prompt"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=2, do_sample=False)


@pytest.mark.parametrize("cell_type", CELLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_runs_every_cell(cell_type, dtype):
    """oneDNN has no low-precision LSTM under CPU autocast ("could not create a primitive descriptor"): the LSTM
    recurrence runs in float32 there, and gives the float32 result."""
    model = tagger(True, cell_type=cell_type, bidirectional=True)
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    attention_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    labels = torch.tensor([[0, 1, 2], [2, 1, -100]])
    with torch.autocast("cpu", dtype=dtype):
        loss = model(input_ids=ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    if cell_type == "lstm":  # embeddings and the recurrence in float32: the encoder's outputs are unchanged
        encoder = model.model.eval()
        with torch.autocast("cpu", dtype=dtype):
            low = encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        torch.testing.assert_close(low, encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state)


def word_tagger(use_crf: bool):
    sentences = [["Jean", "went", "to", "Paris"], ["the", "river", "near", "Oslo"]]
    tokenizer = build_word_tokenizer(sentences)
    labels = ["O", "B-PER", "I-PER"]
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=8,
        hidden_size=8,
        bidirectional=True,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        use_crf=use_crf,
    )
    return hf_rnn.RnnForTokenClassification(config).eval(), tokenizer


@pytest.mark.parametrize("use_crf", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_an_empty_string_in_a_pipeline_batch_gives_no_entities_and_keeps_the_others(use_crf, batch_size):
    model, tokenizer = word_tagger(use_crf)
    tag = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    texts = ["Jean went", "", "to Paris"]
    alone = [tag(text, ignore_labels=[]) for text in texts]
    assert alone[1] == [] and [len(a) for a in alone] == [2, 0, 2]
    assert same_entities(tag(texts, ignore_labels=[], batch_size=batch_size), alone)
    if not use_crf and batch_size == 1:  # transformers' own pipeline pads an empty text's offsets wrongly
        own = pipeline("token-classification", model=model, tokenizer=tokenizer)
        assert same_entities(own(texts, ignore_labels=[]), alone)


def same_entities(batch: list[list[dict]], alone: list[list[dict]]) -> bool:
    """Equal entities; scores equal up to float noise (a padded batch sums in another order)."""
    drop = lambda entity: {k: v for k, v in entity.items() if k != "score"}  # noqa: E731
    return [[drop(e) for e in row] for row in batch] == [[drop(e) for e in row] for row in alone] and all(
        e["score"] == pytest.approx(a["score"], rel=1e-5) for row, arow in zip(batch, alone) for e, a in zip(row, arow)
    )


def test_an_empty_pre_split_word_is_refused_by_position():
    model, tokenizer = word_tagger(True)
    tag = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"word 1 .*empty"):
        tag(["Jean", "", "Paris"], is_split_into_words=True)
    with pytest.raises(ValueError, match=r"word 2 .*empty"):
        tag(["Jean", "went", "  "], is_split_into_words=True)


@pytest.mark.parametrize(
    "inputs, message",
    [
        (dict(input_ids=torch.tensor([1, 2, 3])), "input_ids must be"),
        (dict(input_ids=torch.ones(2, 4)), "input_ids must hold integer ids, got torch.float32"),
        (dict(input_ids=torch.ones(2, 4, dtype=torch.bool)), "input_ids must hold integer ids, got torch.bool"),
        (dict(attention_mask=torch.ones(2, 5)), r"attention_mask must be \(2, 4\)"),
        (dict(attention_mask=torch.tensor([[1, 2, 1, 0], [1, 1, 1, 1]])), r"attention_mask\[0, 1\] = 2 is not 0 or 1"),
        (dict(attention_mask=torch.tensor([[1, 1, 0.5, 0], [1, 1, 1, 1]])), r"attention_mask\[0, 2\] = 0.5"),
        (dict(labels=torch.zeros(2, 5, dtype=torch.long)), r"labels must be integer tag ids of shape \(2, 4\)"),
        (dict(labels=torch.zeros(2, 4)), "labels must be integer tag ids"),
    ],
)
@pytest.mark.parametrize("use_crf", [False, True])
def test_malformed_tensors_are_named(use_crf, inputs, message):
    model = tagger(use_crf)
    with pytest.raises(ValueError, match=message):
        model(**{"input_ids": torch.randint(1, 37, (2, 4)), **inputs})


def test_a_cache_of_another_batch_size_is_named():
    model = hf_rnn.RnnForCausalLM(tiny_config())
    state = model(input_ids=torch.tensor([[3, 4]])).cache
    with pytest.raises(ValueError, match="cache holds the state of 1 sequences, the batch has 2"):
        model(input_ids=torch.tensor([[5], [6]]), cache=state)


@pytest.mark.parametrize("labels", [torch.tensor([[3]]), torch.full((2, 4), -100), torch.tensor([[3, -100, -100]])])
@pytest.mark.parametrize("count", [None, 0])
def test_a_language_model_batch_with_nothing_to_predict_gives_zero_loss(labels, count):
    """One token predicts nothing (labels shift by one): the mean over zero targets used to be NaN."""
    model = hf_rnn.RnnForCausalLM(tiny_config())
    loss = model(input_ids=torch.ones_like(labels).clamp(min=1), labels=labels, num_items_in_batch=count).loss
    loss.backward()
    assert loss.item() == 0 and all(p.grad is None or torch.all(p.grad == 0) for p in model.parameters())


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_sequence_classification_of_zero_length_input_gives_the_all_padding_summary(pooling):
    model = hf_rnn.RnnForSequenceClassification(tiny_config(classifier_pooling=pooling, bidirectional=True)).eval()
    empty = model(input_ids=torch.zeros(2, 0, dtype=torch.long)).logits
    padded = model(input_ids=torch.ones(2, 3, dtype=torch.long), attention_mask=torch.zeros(2, 3)).logits
    torch.testing.assert_close(empty, padded)


def test_bf16_training_through_the_trainer_runs_the_lstm(tmp_path):
    """`TrainingArguments(bf16=True)` on a CPU is autocast: the LSTM must train, not fail inside oneDNN."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = tagger(True, cell_type="lstm", bidirectional=True)
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [0, 1, 2, 0]}] * 8
    args = TrainingArguments(
        output_dir=str(tmp_path), bf16=True, use_cpu=True, max_steps=2, per_device_train_batch_size=4, report_to=[]
    )
    before = model.crf.transitions.detach().clone()
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows)).train()
    assert torch.isfinite(model.crf.transitions).all() and not torch.equal(model.crf.transitions, before)
