"""Sentence classification with an RNN encoder and the Trainer, from CSV/TSV/JSON files.

    python examples/run_classification.py --train_file train.csv --validation_file dev.csv --output_dir runs/cls \
        --text_column text --label_column label --pooling max

Labels are read as strings and mapped to ids sorted by name (a label seen only in validation is an error that names
it). Texts are split on whitespace by a word-level tokenizer built from the training texts.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed

import hf_rnn
from hf_rnn.checkpoints import resolve_resume
from hf_rnn.hub import push_trained
from hf_rnn.metrics import load_metric
from hf_rnn.tokenization import build_word_tokenizer

logger = logging.getLogger(__name__)
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass
class ClassificationArguments:
    train_file: str = field(metadata={"help": "CSV, TSV or JSON lines with a text and a label column."})
    validation_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
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


def load_table(path: str):
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {sorted(FORMATS)}")
    options = {"delimiter": "\t"} if suffix == ".tsv" else {}
    return load_dataset(FORMATS[suffix], data_files=path, split="train", **options)


def main() -> None:
    parser = HfArgumentParser((ClassificationArguments, TrainingArguments))
    args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    # hf_rnn pushes once at the end, with its own model card (the Trainer's push would write another card)
    push, training_args.push_to_hub = training_args.push_to_hub, False

    splits = {"train": load_table(args.train_file)}
    if args.validation_file:
        splits["validation"] = load_table(args.validation_file)
    for name, split in splits.items():
        missing = {args.text_column, args.label_column} - set(split.column_names)
        if missing:
            raise ValueError(f"{name} file has no column(s) {sorted(missing)}; it has {split.column_names}")
    labels = sorted({str(label) for label in splits["train"][args.label_column]})
    label_ids = {label: index for index, label in enumerate(labels)}
    tokenizer = build_word_tokenizer(
        (text.split() for text in splits["train"][args.text_column]), args.min_frequency, lowercase=args.lowercase
    )

    def encode(batch: dict) -> dict:
        encoding = tokenizer(batch[args.text_column], truncation=True, max_length=args.max_length)
        unknown = sorted({str(label) for label in batch[args.label_column]} - set(label_ids))
        if unknown:
            raise ValueError(f"labels {unknown} do not occur in the training file {args.train_file}")
        encoding["labels"] = [label_ids[str(label)] for label in batch[args.label_column]]
        return encoding

    data = {name: split.map(encode, batched=True, remove_columns=split.column_names) for name, split in splits.items()}
    config = hf_rnn.RnnConfig(
        cell_type=args.cell_type,
        vocab_size=tokenizer.vocab_size,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        bidirectional=not args.unidirectional,
        dropout=args.dropout,
        classifier_pooling=args.pooling,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label=dict(enumerate(labels)),
        label2id=label_ids,
    )
    model = hf_rnn.RnnForSequenceClassification(config)
    accuracy = load_metric("token_accuracy")

    def compute_metrics(prediction) -> dict:
        predicted = np.asarray(prediction.predictions).argmax(-1)
        return accuracy.compute(predictions=predicted.tolist(), references=prediction.label_ids.tolist())

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    if "validation" in data:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)
        if trainer.is_world_process_zero():
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    if push:
        push_trained(
            trainer, metrics if "validation" in data else None, dataset=Path(args.train_file).parent.name or None
        )
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
