"""Train a (Bi)RNN tagger — POS tagging, NER, chunking — with the Trainer, from CoNLL/CoNLL-U files.

    python examples/run_tagging.py --train_file en_ewt-ud-train.conllu --validation_file en_ewt-ud-dev.conllu \
        --output_dir runs/pos --use_crf --num_train_epochs 10
    accelerate launch examples/run_tagging.py ...        # several processes / GPUs

Every `TrainingArguments` flag works (learning rate, batch size, bf16, gradient accumulation, push_to_hub, ...). The
defaults differ from the Trainer's where those do not train an RNN from scratch: lr 2e-3, a
loss logged every 2 % of the steps, one CPU thread unless OMP_NUM_THREADS is set (hf_rnn.launch).
`--resume_from_checkpoint True` (or a folder of checkpoints) resumes from the last complete checkpoint in it, skipping
one that a killed run left half-saved (hf_rnn.checkpoints); `--resume_from_checkpoint path/checkpoint-N` resumes from
that one.
Evaluation reports token accuracy and, for BIO/IOB1/BIOES labels, span precision/recall/F1 (conlleval rules).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import (
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

import hf_rnn
from hf_rnn.checkpoints import resolve_resume
from hf_rnn.data import encode_for_tagging, read_conll, read_conllu, standardize_tagging_dataset, tagging_dataset
from hf_rnn.embeddings import load_word_vectors
from hf_rnn.hub import push_trained
from hf_rnn.launch import TRAINING_DEFAULTS, parse_args
from hf_rnn.metrics import TaggingMetrics, is_chunk_scheme, predicted_tags
from hf_rnn.tokenization import build_word_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "CoNLL (token ... tag) or CoNLL-U (.conllu) file."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Instead of files: a Hub dataset (e.g. wnut_17) or a local dataset folder."}
    )
    tokens_column: str = field(default="tokens", metadata={"help": "With --dataset_name: the words' column."})
    tags_column: str = field(default="ner_tags", metadata={"help": "With --dataset_name: the tags' column."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation file; see validation_fraction."})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Without a validation file, hold out this share of training sentences."}
    )
    token_column: int = field(default=0, metadata={"help": "CoNLL: the token's column."})
    tag_column: int = field(default=-1, metadata={"help": "CoNLL: the tag's column (-1: the last)."})
    tag_field: str = field(default="upos", metadata={"help": "CoNLL-U: 'upos' or 'xpos'."})
    unknown_tag: str | None = field(
        default=None, metadata={"help": "Map tags unseen in training to this label (e.g. O) instead of failing."}
    )
    lowercase: bool = field(default=False, metadata={"help": "Lower-case words in the vocabulary."})
    normalize_digits: bool = field(default=False, metadata={"help": "Map every digit to 0 in the vocabulary."})
    min_frequency: int = field(default=1, metadata={"help": "Keep words seen at least this often in training."})
    char_min_frequency: int = field(
        default=1, metadata={"help": "With --char_encoder: keep characters seen at least this often in training."}
    )
    max_word_length: int = field(
        default=24, metadata={"help": "With --char_encoder: characters kept per word (its first and last halves)."}
    )
    max_length: int | None = field(default=None, metadata={"help": "Truncate sentences to this many tokens."})
    no_plots: bool = field(default=False, metadata={"help": "Skip the PNG plots saved next to the model."})


@dataclass
class ModelArguments:
    cell_type: str = field(default="lstm", metadata={"help": "rnn, gru or lstm."})
    embedding_size: int = 100
    hidden_size: int = 256
    num_layers: int = 1
    char_encoder: str | None = field(
        default=None, metadata={"help": "Character-level word features: lstm (Lample et al.) or cnn (Ma & Hovy)."}
    )
    char_embedding_size: int = 25
    char_hidden_size: int = field(default=25, metadata={"help": "Char-BiLSTM state per direction, or CNN filters."})
    unidirectional: bool = field(default=False, metadata={"help": "Left-to-right only (default: bidirectional)."})
    dropout: float = 0.5
    locked_dropout: bool = field(
        default=False, metadata={"help": "One dropout mask per sequence, reused at every step (variational)."}
    )
    word_dropout: float = field(default=0.0, metadata={"help": "Zero a token's whole input vector (flair: 0.05)."})
    use_crf: bool = field(default=False, metadata={"help": "BiLSTM-CRF: CRF loss and Viterbi decoding."})
    crf_constraints: str | None = field(
        default="auto", metadata={"help": "BIO, IOB1, BIOES, BILOU, none, or auto (BIO when the labels are chunks)."}
    )
    word_vectors: str | None = field(
        default=None, metadata={"help": "GloVe/word2vec text file to initialise the word embeddings from."}
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the (pretrained) embeddings fixed."})


def read_split(path: str, data: DataArguments):
    if path.endswith(".conllu"):
        return read_conllu(path, data.tag_field)
    return read_conll(path, data.token_column, data.tag_column)


def read_files(data_args: DataArguments, seed: int):
    splits = {"train": read_split(data_args.train_file, data_args)}
    if data_args.validation_file:
        splits["validation"] = read_split(data_args.validation_file, data_args)
    elif data_args.validation_fraction > 0:
        sentences, fraction = len(splits["train"]), data_args.validation_fraction
        held_out = max(1, int(sentences * fraction))
        if held_out == sentences:
            raise ValueError(
                f"{data_args.train_file} has {sentences} sentence(s): --validation_fraction {fraction} holds out"
                f" {held_out} and leaves none to train on"
            )
        order = torch.randperm(sentences, generator=torch.Generator().manual_seed(seed)).tolist()
        splits["validation"] = [splits["train"][i] for i in order[:held_out]]
        splits["train"] = [splits["train"][i] for i in sorted(order[held_out:])]
    # a dev split carved from the training file shares its label set (rare tags may fall on either side)
    carved = data_args.validation_file is None and "validation" in splits
    label_names = sorted({t for part in splits.values() for s in part for t in s.tags}) if carved else None
    return tagging_dataset(splits, label_names=label_names, unknown_tag=data_args.unknown_tag)


def save_plots(trainer: Trainer, dataset, labels: list[str]) -> None:
    """Learning curves, the dev confusion matrix and (with a CRF) the transition heatmap, as PNGs in output_dir."""
    if not trainer.is_world_process_zero():
        return
    from hf_rnn.plots import plot_confusion_matrix, plot_learning_curves, plot_transitions

    folder = Path(trainer.args.output_dir)
    try:  # the first plot imports matplotlib, an optional extra: the model is saved already
        plot_learning_curves(trainer.state.log_history, folder / "learning_curves.png")
    except ImportError as error:
        logger.warning("plots skipped: %s", error)
        return
    output = trainer.predict(dataset)
    predictions, gold = predicted_tags(output), output.label_ids
    scored = gold != -100
    plot_confusion_matrix(gold[scored], predictions[scored], labels, folder / "confusion_matrix.png")
    model = trainer.accelerator.unwrap_model(trainer.model)
    if model.crf is not None:
        plot_transitions(model.crf, labels, folder / "crf_transitions.png")


def parse(args: list[str] | None = None) -> tuple[DataArguments, ModelArguments, TrainingArguments]:
    """The flags (hf_rnn.launch's defaults where the Trainer's do not train an RNN); contradictions: usage errors."""
    parser = HfArgumentParser((DataArguments, ModelArguments, TrainingArguments))
    data_args, model_args, training_args = parse_args(parser, TRAINING_DEFAULTS, args)
    if (data_args.train_file is None) == (data_args.dataset_name is None):
        parser.error("pass exactly one of --train_file and --dataset_name")
    if not 0 <= data_args.validation_fraction < 1:
        parser.error(f"--validation_fraction {data_args.validation_fraction}: give a share in [0, 1)")
    if data_args.validation_fraction and (data_args.validation_file or data_args.dataset_name):
        parser.error(
            "--validation_fraction splits --train_file; it would be ignored with --validation_file or --dataset_name"
        )
    return data_args, model_args, training_args


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_args, model_args, training_args = parse()
    set_seed(training_args.seed)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    # hf_rnn pushes once at the end, with its own model card (the Trainer's push would write another card)
    push, training_args.push_to_hub = training_args.push_to_hub, False

    if data_args.dataset_name:
        raw = standardize_tagging_dataset(
            load_dataset(data_args.dataset_name), data_args.tokens_column, data_args.tags_column
        )
    else:
        raw = read_files(data_args, training_args.seed)
    labels = raw["train"].features["tags"].feature.names
    tokenizer = build_word_tokenizer(
        raw["train"]["tokens"],
        min_frequency=data_args.min_frequency,
        lowercase=data_args.lowercase,
        normalize_digits=data_args.normalize_digits,
        char_min_frequency=data_args.char_min_frequency if model_args.char_encoder else None,
        max_word_length=data_args.max_word_length,
    )
    data = encode_for_tagging(raw, tokenizer, max_length=data_args.max_length)

    constraints = model_args.crf_constraints
    if constraints == "auto":
        constraints = "BIO" if is_chunk_scheme(labels) else None
    config = hf_rnn.RnnConfig(
        cell_type=model_args.cell_type,
        vocab_size=tokenizer.vocab_size,
        embedding_size=model_args.embedding_size,
        char_encoder=model_args.char_encoder,
        char_vocab_size=tokenizer.char_vocab_size if model_args.char_encoder else 0,
        char_embedding_size=model_args.char_embedding_size,
        char_hidden_size=model_args.char_hidden_size,
        hidden_size=model_args.hidden_size,
        num_layers=model_args.num_layers,
        bidirectional=not model_args.unidirectional,
        dropout=model_args.dropout,
        locked_dropout=model_args.locked_dropout,
        word_dropout=model_args.word_dropout,
        use_crf=model_args.use_crf,
        crf_constraints=constraints if model_args.use_crf and constraints not in (None, "none") else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    model = hf_rnn.RnnForTokenClassification(config)
    if model_args.word_vectors:
        stats = load_word_vectors(model, tokenizer, model_args.word_vectors, freeze=model_args.freeze_embeddings)
        logger.info(
            "word vectors: %d of %d words found (%d only lower-cased), %.1f %% coverage, %d missing",
            stats.exact + stats.lowercased,
            stats.vocabulary,
            stats.lowercased,
            100 * stats.coverage,
            stats.missing,
        )
    logger.info(
        "%s: %d parameters, %d words in the vocabulary, %d tags, %d training sentences",
        type(model).__name__,
        model.num_parameters(),
        tokenizer.vocab_size,
        len(labels),
        len(data["train"]),
    )

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=TaggingMetrics(labels),
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if "validation" in data:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if trainer.is_world_process_zero():
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
        if not data_args.no_plots:
            save_plots(trainer, data["validation"], labels)
    if push:
        dataset = data_args.dataset_name or Path(data_args.train_file).parent.name or None
        push_trained(trainer, metrics if "validation" in data else None, dataset=dataset)
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
