"""transformers' own tools driven as a transformers user would: they give the model's answer or refuse loudly."""

import numpy as np
import pytest
import torch
from conftest import tiny_config
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LabelSmoother

import hf_rnn

BIO = dict(id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})


def rows(head: str, count: int = 8, length: int = 6) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    data = []
    for _ in range(count):
        ids = torch.randint(1, 37, (length,), generator=generator).tolist()
        tags = [0, 1, 2, 0, 1, 0][:length] if head != "lm" else ids
        data.append({"input_ids": ids, "labels": tags})
    return Dataset.from_list(data)


def args(tmp_path, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, report_to=[])
    return TrainingArguments(**{**values, "use_cpu": True, **overrides})


def run_ner_metrics(eval_prediction) -> dict:
    """What examples/pytorch/token-classification/run_ner.py does, unchanged."""
    predictions = np.argmax(eval_prediction.predictions, axis=2)
    labels = eval_prediction.label_ids
    kept = labels != -100
    return {"accuracy": float((predictions[kept] == labels[kept]).mean())}


@pytest.mark.parametrize("use_crf", [False, True])
def test_a_run_ner_style_compute_metrics_scores_the_model_s_own_tags(use_crf, tmp_path):
    model = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=use_crf, initializer_range=1.0, **BIO))
    with torch.no_grad():  # transitions that matter, so Viterbi and the emission argmax part ways
        if use_crf:
            model.crf.transitions.copy_(torch.randn(3, 3) * 3)
    data = rows("tagger")
    metrics = Trainer(model=model, args=args(tmp_path), eval_dataset=data, compute_metrics=run_ner_metrics).evaluate()
    model.eval()
    batch = torch.tensor(data["input_ids"])
    with torch.no_grad():
        out = model(input_ids=batch)
    gold = torch.tensor(data["labels"])
    assert metrics["eval_accuracy"] == pytest.approx((out.predictions == gold).float().mean().item())
    if use_crf:
        assert not torch.equal(out.predictions, out.emissions.argmax(-1)), "the test could not tell argmax apart"


def test_label_smoothing_on_a_crf_tagger_is_refused_by_name(tmp_path):
    model = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=True, **BIO))
    trainer = Trainer(
        model=model, args=args(tmp_path, label_smoothing_factor=0.1, max_steps=1), train_dataset=rows("t")
    )
    with pytest.raises(ValueError, match="label_smoothing_factor"):
        trainer.train()


@pytest.mark.parametrize("head", ["lm", "tagger"])
def test_label_smoothing_trains_the_smoothed_loss_of_the_model_s_own_targets(head, tmp_path):
    """The causal LM's targets are the next tokens (the Trainer must shift), the tagger's the tags themselves."""
    config = tiny_config(**BIO)
    model = hf_rnn.RnnForCausalLM(config) if head == "lm" else hf_rnn.RnnForTokenClassification(config)
    data = rows(head, count=4)
    trainer = Trainer(model=model, args=args(tmp_path, label_smoothing_factor=0.2), train_dataset=data)
    inputs = {"input_ids": torch.tensor(data["input_ids"]), "labels": torch.tensor(data["labels"])}
    loss = trainer.compute_loss(model.train(), dict(inputs))
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"]).logits
    labels = inputs["labels"]
    if head == "lm":
        logits, labels = logits[:, :-1], labels[:, 1:]
    expected = LabelSmoother(epsilon=0.2)({"logits": logits}, labels)
    model.train()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("use_crf", [False, True])
def test_a_model_in_training_mode_gives_its_tags_to_the_pipeline(use_crf):
    """A tagger fresh from its constructor is in training mode, and transformers' pipeline does not call `eval()`: with
    no labels to train on, it still decodes (before, a CRF tagger's `logits` were None and the pipeline's
    `output["logits"]` raised KeyError)."""
    from transformers import pipeline

    from hf_rnn.vocabulary import build_word_tokenizer

    words = [["Anna", "reads", "a", "book", "."], ["The", "dog", "sat"]]
    tokenizer = build_word_tokenizer(words)
    labels = {0: "O", 1: "B-X", 2: "I-X"}
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=6,
        hidden_size=5,
        dropout=0.0,
        output_dropout=0.0,
        use_crf=use_crf,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = hf_rnn.RnnForTokenClassification(config)
    if use_crf:
        model.crf.transitions.data.normal_(0, 3)  # transitions that change the decision
    assert model.training
    batch = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    trained = model(**batch)
    expected = model.eval()(**batch)
    model.train()
    assert torch.equal(trained.predictions, expected.predictions)
    torch.testing.assert_close(trained.logits, expected.logits)
    entities = pipeline("token-classification", model=model, tokenizer=tokenizer)("Anna reads a book .")
    tags = [labels[t] for t in expected.predictions[0].tolist()]
    assert [e["entity"] for e in entities] == [t for t in tags if t != "O"]
    assert model(**batch, labels=expected.predictions.clamp(min=0)).predictions is None  # a training step: no decode
