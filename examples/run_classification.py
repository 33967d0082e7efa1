"""Sentence classification with an RNN encoder and the Trainer, from CSV/TSV/JSON files.

    python examples/run_classification.py --train_file train.csv --validation_file dev.csv --output_dir runs/cls \
        --text_column text --label_column label --pooling max
    python examples/run_classification.py --dataset_name path/to/dataset --text_column_names premise,hypothesis ...

Labels are read as the strings in the file and mapped to ids sorted by name (a label seen only in validation is an
error that names it). Texts are split on whitespace by a word-level tokenizer built from the training texts. An empty
cell, a missing column or a table without rows is refused before training, naming the file and the line.
As in transformers' run_ner.py: `--do_train`, `--do_eval`, `--do_predict` choose the steps (by default: train,
evaluate when a validation file is given, predict when a test file is), `--max_{train,eval,predict}_samples` keep the
first rows of a file, `--dataset_name` (with `--dataset_config_name`) reads a Hub dataset or a local dataset folder
instead of files, `--text_column_names a,b` joins several text columns with a space (transformers' flag; also
`--label_column_name`), and `--model_name_or_path` (at `--model_revision`) continues from an hf_rnn classifier (its
architecture, tokenizer and labels), or starts a new classifier on an hf_rnn language model's encoder and tokenizer,
with the training file's labels and `--pooling` (ULMFiT; `--layer_lr_decay 2.6 --gradual_unfreezing` are its
fine-tuning schedules, hf_rnn.training.finetuning). `--do_predict` writes the test metrics (predict_results.json) and
predictions.csv (text, label, predicted: each row's own, whatever the batching).
Every `TrainingArguments` flag works; the defaults differ from the Trainer's where those do not train an RNN from
scratch: lr 2e-3, a loss logged every 2 % of the steps, one checkpoint per epoch with only the newest kept unless a
--save_* flag is given, one CPU thread unless OMP_NUM_THREADS is set (hf_rnn.scripts.launch).
"""

import argparse
import csv
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, load_dataset
from transformers import DataCollatorWithPadding, HfArgumentParser, TrainingArguments

import hf_rnn
from hf_rnn.hub import push_trained
from hf_rnn.metrics import load_metric
from hf_rnn.scripts.launch import (
    TRAINING_DEFAULTS,
    RowOrderTrainer,
    RunArguments,
    card_dataset,
    check_labels,
    check_steps,
    data_sources,
    default_steps,
    first,
    is_language_model,
    load_pretrained,
    parse_args,
    print_metrics,
    refuse_fixed,
    refuse_stored_tables,
    start,
    start_from_language_model,
    train_and_save,
)
from hf_rnn.tables import read_labelled_texts
from hf_rnn.training.finetuning import FinetuningArguments
from hf_rnn.vocabulary import build_word_tokenizer

logger = logging.getLogger(__name__)
# what a checkpoint fixes: its architecture and tokenizer
ARCHITECTURE = ("lowercase", "min_frequency", "cell_type", "embedding_size", "hidden_size", "num_layers")
ARCHITECTURE += ("unidirectional", "dropout")
HEAD = ("pooling",)  # what a classifier checkpoint fixes too, but a language model's leaves open


@dataclass
class ClassificationArguments:
    train_file: str | None = field(default=None, metadata={"help": "CSV, TSV or JSON lines: text and label columns."})
    validation_file: str | None = None
    test_file: str | None = field(default=None, metadata={"help": "--do_predict: classify it and score the labels."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue from an hf_rnn classifier (folder or Hub id): its architecture, tokenizer, labels; or"
            " start one on an hf_rnn language model's encoder and tokenizer."
        },
    )
    model_revision: str = field(
        default="main",
        metadata={
            "help": "The revision of --model_name_or_path to load: a branch (e.g. a --hub_revision), tag or commit."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N rows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Predict the first N rows."})
    text_column: str = field(
        default="text",
        metadata={
            "aliases": ["--text_column_names"],
            "help": "The text column; several, comma-separated (transformers' --text_column_names), are joined with a"
            " space into one text.",
        },
    )
    label_column: str = field(default="label", metadata={"aliases": ["--label_column_name"]})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Instead of files: a Hub dataset or a local dataset folder (splits train/validation/test)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "--dataset_name's configuration."})
    lowercase: bool = True
    min_frequency: int = 1
    max_length: int = 256
    cell_type: str = "lstm"
    embedding_size: int = 100
    hidden_size: int = 128
    num_layers: int = 1
    unidirectional: bool = False
    dropout: float = 0.3
    pooling: str = field(default="last", metadata={"help": "last, mean or max over the recurrent outputs."})


def load_table(path: str, text_column: str, label_column: str) -> Dataset:
    """The text and label columns (hf_rnn.tables), every value a non-blank string; errors name the file and line."""
    return Dataset.from_dict(read_labelled_texts(path, text_column, label_column))


def read_splits(args: ClassificationArguments, steps: dict[str, bool]) -> dict[str, Dataset]:
    """The splits given (files, or those of --dataset_name that `steps` asks for), each a table of the text (its columns joined with a space, as
    transformers' run_classification.py joins --text_column_names) under the name --text_column, and the label."""
    columns = args.text_column.split(",")
    if args.dataset_name:
        data = load_dataset(args.dataset_name, args.dataset_config_name)
        for split, wanted in steps.items():
            if wanted and split not in data:
                raise ValueError(f"--dataset_name {args.dataset_name} has no {split!r} split (it has {list(data)})")
        return {split: dataset_table(args, split, data[split], columns) for split in steps if steps[split]}
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    splits = {}
    for split, path in files.items():
        if path:
            tables = [load_table(path, column, args.label_column) for column in columns]
            texts = [" ".join(row) for row in zip(*(table[column] for table, column in zip(tables, columns)))]
            splits[split] = Dataset.from_dict(
                {args.text_column: texts, args.label_column: tables[0][args.label_column]}
            )
    return splits


def dataset_table(args: ClassificationArguments, split: str, part: Dataset, columns: list[str]) -> Dataset:
    """One split of --dataset_name as `read_splits` makes it: class ids read as their names; an empty or non-text
    value is an error naming the split, the row and the column."""
    where = f"--dataset_name {args.dataset_name}: split {split!r}"
    missing = [column for column in [*columns, args.label_column] if column not in part.column_names]
    if missing:
        raise ValueError(
            f"{where} has no column {missing} (--text_column, --label_column); it has {part.column_names}"
        )
    label_feature = part.features[args.label_column]
    names = label_feature.names if isinstance(label_feature, ClassLabel) else None
    texts, labels = [], []
    for row, record in enumerate(part):
        for column in columns:
            if not isinstance(record[column], str) or not record[column].strip():
                raise ValueError(f"{where} row {row}: {column!r} is {record[column]!r}, not text")
        label = record[args.label_column]
        if label is None or isinstance(label, (list, dict)) or not str(label).strip() or (names and label < 0):
            raise ValueError(f"{where} row {row}: {args.label_column!r} is {label!r}, not a label")
        texts.append(" ".join(record[column] for column in columns))
        labels.append(names[label] if names else str(label))
    return Dataset.from_dict({args.text_column: texts, args.label_column: labels})


def defaults(given: argparse.Namespace) -> dict:
    evaluation = bool(given.validation_file or given.dataset_name)
    return {**TRAINING_DEFAULTS, **default_steps(evaluation, bool(given.test_file))}


def parse(args: list[str] | None = None) -> tuple[ClassificationArguments, FinetuningArguments, TrainingArguments]:
    """The flags (hf_rnn.scripts.launch's defaults where the Trainer's do not train an RNN); contradictions: usage errors."""
    parser = HfArgumentParser((ClassificationArguments, FinetuningArguments, RunArguments))
    arguments, finetuning_args, training_args = parse_args(parser, defaults, args)
    given = {f"--{split}_file": getattr(arguments, f"{split}_file") for split in ("train", "validation", "test")}
    refuse_stored_tables(parser, given)
    data, flags = data_sources(parser, arguments)
    checkpoint = arguments.model_name_or_path
    from_lm = bool(checkpoint) and is_language_model(checkpoint, arguments.model_revision)
    check_steps(parser, training_args, checkpoint, data, flags, new_head=from_lm)
    refuse_fixed(parser, checkpoint, (arguments, ARCHITECTURE if from_lm else ARCHITECTURE + HEAD))
    return arguments, finetuning_args, training_args


def head_config(args: ClassificationArguments, train: Dataset) -> dict:
    """The classifier head's config: the training file's labels (sorted), `--pooling`."""
    labels = sorted(set(train[args.label_column]))
    return dict(
        classifier_pooling=args.pooling,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )


def build_model(args: ClassificationArguments, train: Dataset):
    """A new classifier and its word tokenizer, for the training file's words and labels."""
    tokenizer = build_word_tokenizer(
        train[args.text_column],
        args.min_frequency,
        lowercase=args.lowercase,  # raw texts, split as encoding splits
    )
    config = hf_rnn.RnnConfig(
        cell_type=args.cell_type,
        vocab_size=tokenizer.vocab_size,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        bidirectional=not args.unidirectional,
        dropout=args.dropout,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **head_config(args, train),
    )
    return hf_rnn.RnnForSequenceClassification(config), tokenizer


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, finetuning_args, training_args = parse()
    resume, push = start(training_args)

    steps = {"train": training_args.do_train, "validation": training_args.do_eval, "test": training_args.do_predict}
    splits = read_splits(args, steps)
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    files = {split: files[split] or f"--dataset_name {args.dataset_name} split {split!r}" for split in splits}
    checkpoint = args.model_name_or_path
    if checkpoint and not is_language_model(checkpoint, args.model_revision):  # a classifier to continue
        model, tokenizer = load_pretrained(checkpoint, hf_rnn.RnnForSequenceClassification, args.model_revision)
        seen = {label for part in splits.values() for label in part[args.label_column]}
        check_labels(checkpoint, model.config.label2id, seen)
    else:  # a new classifier: on a language model's encoder (ULMFiT), or from scratch
        if checkpoint:
            head = head_config(args, splits["train"])
            model, tokenizer = start_from_language_model(
                checkpoint, hf_rnn.RnnForSequenceClassification, head, args.model_revision
            )
        else:
            model, tokenizer = build_model(args, splits["train"])
        for split, part in splits.items():  # the training file's labels are the model's
            unknown = sorted(set(part[args.label_column]) - set(model.config.label2id))
            if unknown:
                raise ValueError(
                    f"{files[split]}: labels {unknown} do not occur in the training"
                    f" {'file' if args.train_file else 'data'} {files['train']}"
                )
    label_ids, labels = model.config.label2id, model.config.id2label
    limits = {"train": args.max_train_samples, "validation": args.max_eval_samples, "test": args.max_predict_samples}
    splits = {split: first(part, limits[split]) for split, part in splits.items() if steps[split]}

    def encode(batch: dict) -> dict:
        encoding = tokenizer(batch[args.text_column], truncation=True, max_length=args.max_length)
        encoding["labels"] = [label_ids[label] for label in batch[args.label_column]]
        return encoding

    data = {name: split.map(encode, batched=True, remove_columns=split.column_names) for name, split in splits.items()}
    accuracy = load_metric("token_accuracy")

    def compute_metrics(prediction) -> dict:
        predicted = np.asarray(prediction.predictions).argmax(-1)
        return accuracy.compute(predictions=predicted.tolist(), references=prediction.label_ids.tolist())

    trainer = RowOrderTrainer(
        model=model,
        args=training_args,
        train_dataset=data.get("train"),
        eval_dataset=data.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    if training_args.do_train:
        train_and_save(trainer, finetuning_args, resume)
    metrics = None
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)
        print_metrics(trainer, metrics)
    if training_args.do_predict:
        output = trainer.predict(data["test"], metric_key_prefix="predict")
        trainer.log_metrics("predict", output.metrics)
        trainer.save_metrics("predict", output.metrics)
        print_metrics(trainer, output.metrics)
        if trainer.is_world_process_zero():
            predicted = np.asarray(output.predictions).argmax(-1)
            with open(Path(training_args.output_dir) / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow([args.text_column, args.label_column, "predicted"])
                for text, label, guess in zip(
                    splits["test"][args.text_column], splits["test"][args.label_column], predicted
                ):
                    writer.writerow([text, label, labels[int(guess)]])
    if push:
        push_trained(trainer, metrics, dataset=card_dataset(args.dataset_name, args.train_file))
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
