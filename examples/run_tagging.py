"""Train a (Bi)RNN tagger — POS tagging, NER, chunking — with the Trainer, from CoNLL/CoNLL-U files or JSON lines of a
text and its entities' character spans (doccano's export: hf_rnn.data.READERS lists the formats).

    python examples/run_tagging.py --train_file en_ewt-ud-train.conllu --validation_file en_ewt-ud-dev.conllu \
        --output_dir runs/pos --head_type crf --num_train_epochs 10
    python examples/run_tagging.py --model_name_or_path runs/pos --do_train false --test_file test.conllu \
        --output_dir runs/pos-test                        # scores it; predictions.conll
    python examples/run_tagging.py --model_name_or_path runs/pos --do_train false --test_file words.txt \
        --output_dir runs/tagged                          # a file of words, one per line: tags it
    accelerate launch examples/run_tagging.py ...        # several processes / GPUs

Every `TrainingArguments` flag works (learning rate, batch size, bf16, gradient accumulation, push_to_hub, ...). The
defaults differ from the Trainer's where those do not train an RNN from scratch: lr 2e-3, a
loss logged every 2 % of the steps, one checkpoint per epoch with only the newest kept unless a --save_* flag is
given, one CPU thread unless OMP_NUM_THREADS is set (hf_rnn.scripts.launch).
`--resume_from_checkpoint True` (or a folder of checkpoints) resumes from the last complete checkpoint in it, skipping
one that a killed run left half-saved (hf_rnn.scripts.checkpoints); `--resume_from_checkpoint path/checkpoint-N` resumes from
that one.
`--forward_lm` and `--backward_lm` (character LMs from run_lm.py --char_level [--reverse], folders or Hub ids) add
contextual string embeddings (Akbik et al. 2018) to the word features; the LMs stay frozen unless --fine_tune_lms, and
their features are computed once per training and dev sentence. `--contextual_pooling mean|min|max` appends each
word's features pooled over every occurrence seen (Akbik et al. 2019; a memory of `--contextual_memory_size` words,
saved with the model).
Evaluation reports token accuracy and, for BIO/IOB1/BIOES/BILOU labels, span precision/recall/F1 (conlleval rules).
The training file's label scheme is detected (hf_rnn.schemes) and becomes the CRF's constraints. `--tag_scheme BIOES`
(or BILOU, BIO, IOB1) trains on labels converted to that scheme, and converts the predicted tags back to the files'
scheme for the metrics and predictions.conll, so the scores compare against the files' own gold tags.

A file's format is told by its name (hf_rnn.data.format_of) or named by `--data_format` (conll, conllu, jsonl, table).
`.jsonl` lines such as `{"text": "Jean lives in Paris.", "label": [[0, 4, "PER"], [14, 19, "LOC"]]}` (flair names the
text "data") are split into words as the tokenizer splits text and tagged BIO; a span that starts or ends inside a word
is refused at its line.
As in transformers' run_ner.py: files may also be JSON (lines) or CSV with a tokens and a tags column; `--do_train`,
`--do_eval`, `--do_predict` choose the steps (by default: train, evaluate when evaluation data is named, predict when
a test file is), `--max_{train,eval,predict}_samples` keep the first sentences of a split, `--dataset_name` (with
`--dataset_config_name`) reads a Hub dataset or a local dataset folder instead of files, and `--model_name_or_path`
(at `--model_revision`) continues from an hf_rnn tagger (its architecture, tokenizer and labels), or starts a new tagger on an hf_rnn word
language model's encoder and tokenizer (its architecture: left to right, no character encoder), with the training
file's labels, `--head_type` (`--use_crf` is `--head_type crf`), `--crf_constraints` and `--max_segment_length` (ULMFiT; `--layer_lr_decay 2.6 --gradual_unfreezing` are its
fine-tuning schedules, hf_rnn.training.finetuning). `--do_predict` writes the test metrics
(predict_results.json) and predictions.conll: token, gold and predicted tag (- for a word cut by --max_length),
TAB-separated, a blank line after each sentence (`conlleval -d '\t'` reads it), each sentence's own tags whatever
the batching (`--train_sampling_strategy group_by_length` included). A test file of words only (one column) is
tagged: predictions.conll holds each word and its tag, and no metrics are written.
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, load_dataset
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
)

import hf_rnn
from hf_rnn.configuration_rnn import CONTEXTUAL_POOLINGS
from hf_rnn.data import (
    READERS,
    TaggedSentence,
    encode_for_tagging,
    format_of,
    read_tagged,
    read_words,
    standardize_tagging_dataset,
    tagging_dataset,
)
from hf_rnn.embeddings import load_word_vectors
from hf_rnn.heads import HEADS
from hf_rnn.hub import push_trained
from hf_rnn.metrics import TaggingMetrics, predicted_tags
from hf_rnn.schemes import SCHEMES, chunks, convert, detect_scheme
from hf_rnn.scripts.labels import (
    Where,
    at_position,
    foreign_scheme,
    map_unknown,
    model_labels,
    model_scheme,
    relabel,
    scheme_labels,
    tag_names,
)
from hf_rnn.scripts.launch import (
    TRAINING_DEFAULTS,
    RowOrderTrainer,
    RunArguments,
    card_dataset,
    check_steps,
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
from hf_rnn.training.finetuning import FinetuningArguments
from hf_rnn.vocabulary import build_word_tokenizer, lm_char_vocab

logger = logging.getLogger(__name__)
# what a checkpoint fixes besides ModelArguments: its tokenizer
TOKENIZER_FLAGS = ("lowercase", "normalize_digits", "min_frequency", "char_min_frequency", "max_word_length")
# fixed by a tagger checkpoint, left open by a language model
HEAD = ("head_type", "use_crf", "crf_constraints", "max_segment_length", "tag_scheme")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None,
        metadata={"help": "CoNLL (token ... tag), CoNLL-U (.conllu), JSON lines of text and spans, JSON or CSV file."},
    )
    data_format: str | None = field(
        default=None,
        metadata={"help": f"The files' format, one of {', '.join(READERS)} (hf_rnn.data.READERS); default: by name."},
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Instead of files: a Hub dataset (e.g. wnut_17) or a local dataset folder."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "--dataset_name's configuration."})
    tokens_column: str = field(default="tokens", metadata={"help": "JSON/CSV, --dataset_name: the words' column."})
    tags_column: str = field(default="ner_tags", metadata={"help": "JSON/CSV, --dataset_name: the tags' column."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation file; see validation_fraction."})
    test_file: str | None = field(default=None, metadata={"help": "--do_predict: tag it and score the tags."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N sentences."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N sentences."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Predict the first N sentences."})
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
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Also report precision/recall/F1 per entity type (run_ner.py's flag)."}
    )


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue from an hf_rnn tagger (folder or Hub id): its architecture, tokenizer and labels; or"
            " start one on an hf_rnn word language model's encoder and tokenizer."
        },
    )
    model_revision: str = field(
        default="main",
        metadata={
            "help": "The revision of --model_name_or_path to load: a branch (e.g. a --hub_revision), tag or commit."
        },
    )
    cell_type: str = field(default="lstm", metadata={"help": "rnn, gru, lstm, mingru or minlstm."})
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
    head_type: str | None = field(
        default=None,
        metadata={
            "help": f"The output layer: {', '.join(HEADS)} (softmax: per-token decisions; crf: the BiLSTM-CRF; semicrf: "
            "a semi-Markov CRF over chunks). Default: softmax, or crf with --use_crf."
        },
    )
    use_crf: bool = field(default=False, metadata={"help": "--head_type crf: CRF loss and Viterbi decoding."})
    max_segment_length: int | None = field(
        default=None,
        metadata={
            "help": "--head_type semicrf: the longest chunk in words (default: the longest in the training data)."
        },
    )
    crf_constraints: str | None = field(
        default="auto",
        metadata={"help": "BIO, IOB1, BIOES, BILOU, none, or auto: the scheme of the labels trained on (detected)."},
    )
    tag_scheme: str = field(
        default="none",
        metadata={
            "help": "Train on chunk labels converted to BIO, IOB1, BIOES or BILOU (BIOES often helps NER); the "
            "predictions are converted back to the files' scheme. none: keep the files' labels."
        },
    )
    word_vectors: str | None = field(
        default=None, metadata={"help": "GloVe/word2vec text file to initialise the word embeddings from."}
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the (pretrained) embeddings fixed."})
    forward_lm: str | None = field(
        default=None,
        metadata={
            "help": "Contextual string embeddings: a forward character LM (run_lm.py --char_level; folder or id)."
        },
    )
    backward_lm: str | None = field(
        default=None, metadata={"help": "... and a backward one (run_lm.py --char_level --reverse), same characters."}
    )
    fine_tune_lms: bool = field(default=False, metadata={"help": "Train the LMs too (default: frozen, flair's)."})
    contextual_pooling: str | None = field(
        default=None,
        metadata={
            "help": "Pooled contextual string embeddings (Akbik et al. 2019): mean, min or max of each word's LM "
            "features over every occurrence seen, appended to them (a memory saved with the model)."
        },
    )
    contextual_memory_size: int | None = field(
        default=None,
        metadata={
            "help": "--contextual_pooling: the most words its memory keeps (default 2**15; least recently seen out)."
        },
    )


def read_data(
    data_args: DataArguments, seed: int, own_labels: bool
) -> tuple[DatasetDict, list[TaggedSentence] | None, Where]:
    """The splits named (files or --dataset_name) as `tokens` and `tags` (a ClassLabel sequence) in their own labels:
    the training split's (`own_labels`: every split's, for a checkpoint's labels to be matched against); a test file
    of words only, to tag (`read_words`); and where each tag was read, for error messages."""
    if data_args.dataset_name:
        name = data_args.dataset_name
        dataset = load_dataset(name, data_args.dataset_config_name)
        raw = standardize_tagging_dataset(dataset, data_args.tokens_column, data_args.tags_column)
        return raw, None, lambda split, row, position: f"{name}: {at_position(split, row, position)}"
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    test, data_format = data_args.test_file, data_args.data_format
    words = read_words(test) if test and (data_format or format_of(test, data_args.tokens_column)) == "conll" else None
    options = {option.name: getattr(data_args, option.name) for option in fields(DataArguments)}  # each reader's own
    splits = {
        split: read_tagged(path, data_format, **options)
        for split, path in files.items()
        if path and not (words and split == "test")
    }
    if data_args.validation_fraction > 0:
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
    label_names = None
    if own_labels:
        label_names = sorted({tag for part in splits.values() for s in part for tag in s.tags})
    elif data_args.validation_fraction > 0:
        # a dev split carved from the training file shares its label set (rare tags may fall on either side)
        label_names = sorted({t for split in ("train", "validation") for s in splits[split] for t in s.tags})
    unknown_tag = None if own_labels else data_args.unknown_tag  # against a checkpoint's labels: `checkpoint_data`
    raw = tagging_dataset(splits, label_names=label_names, unknown_tag=unknown_tag) if splits else DatasetDict()
    return raw, words, lambda split, row, position: f"{splits[split][row].path}:{splits[split][row].lines[position]}"


def checkpoint_data(
    raw: DatasetDict, config: hf_rnn.RnnConfig, unknown_tag: str | None, where: Where
) -> tuple[DatasetDict, DatasetDict, str | None]:
    """The splits in a checkpoint's labels: as written (with `unknown_tag` in place of what the labels cannot
    express), and as the model reads them, converted into its scheme where the data's differs (that scheme is returned
    too: the predictions are converted back to it)."""
    if not raw:  # only words to tag
        return raw, raw, None
    labels = model_labels(config)
    files_scheme = foreign_scheme(config, [tags for part in raw.values() for tags in tag_names(part)])
    if unknown_tag is not None:
        raw = map_unknown(raw, labels, unknown_tag, by_type=files_scheme is not None)
    target = model_scheme(config) if files_scheme else None
    return raw, relabel(raw, labels, files_scheme, target, where), files_scheme


def training_labels(raw: DatasetDict, tag_scheme: str) -> tuple[DatasetDict, str | None, str | None]:
    """The splits to train on, their label scheme (None: not chunk tags), and the files' scheme when the two differ
    (`--tag_scheme`), to which the predictions are converted back."""
    files = detect_scheme(tag_names(raw["train"]))
    if tag_scheme in ("none", files):
        return raw, files, None
    if files is None:
        raise ValueError(f"--tag_scheme {tag_scheme}: the training labels are not chunk tags (<prefix>-<TYPE> and O)")
    labels = scheme_labels(raw["train"].features["tags"].feature.names, tag_scheme)
    return relabel(raw, labels, files, tag_scheme), tag_scheme, files


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
    if model.crf is not None:  # a linear-chain CRF's transitions are between these labels
        plot_transitions(model.crf, labels, folder / "crf_transitions.png")


def defaults(given: argparse.Namespace) -> dict:
    evaluation = bool(given.validation_file or given.validation_fraction or given.dataset_name)
    return {**TRAINING_DEFAULTS, **default_steps(evaluation, bool(given.test_file))}


def parse(
    args: list[str] | None = None,
) -> tuple[DataArguments, ModelArguments, FinetuningArguments, TrainingArguments]:
    """The flags (hf_rnn.scripts.launch's defaults where the Trainer's do not train an RNN); contradictions: usage errors."""
    parser = HfArgumentParser((DataArguments, ModelArguments, FinetuningArguments, RunArguments))
    data_args, model_args, finetuning_args, training_args = parse_args(parser, defaults, args)
    given = {f"--{split}_file": getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
    refuse_stored_tables(parser, given)
    files = data_args.train_file or data_args.validation_file or data_args.test_file
    if data_args.dataset_name and files:
        parser.error("pass --dataset_name or files (--train_file, --validation_file, --test_file), not both")
    if data_args.data_format not in (None, *READERS):
        parser.error(f"--data_format {data_args.data_format}: give one of {', '.join(READERS)}")
    if data_args.data_format and not files:
        parser.error("--data_format says how to read --train_file, --validation_file and --test_file: pass one")
    data = {
        "train": data_args.train_file or data_args.dataset_name,
        "eval": data_args.validation_file or data_args.validation_fraction or data_args.dataset_name,
        "predict": data_args.test_file or data_args.dataset_name,
    }
    flags = {
        "train": "--train_file or --dataset_name",
        "eval": "--validation_file, --validation_fraction or --dataset_name",
        "predict": "--test_file or --dataset_name (its 'test' split)",
    }
    checkpoint = model_args.model_name_or_path
    from_lm = bool(checkpoint) and is_language_model(checkpoint, model_args.model_revision)
    check_steps(parser, training_args, checkpoint, data, flags, new_head=from_lm)
    if not 0 <= data_args.validation_fraction < 1:
        parser.error(f"--validation_fraction {data_args.validation_fraction}: give a share in [0, 1)")
    if data_args.validation_fraction and (data_args.validation_file or data_args.dataset_name):
        parser.error(
            "--validation_fraction splits --train_file; it would be ignored with --validation_file or --dataset_name"
        )
    if data_args.validation_fraction and not data_args.train_file:
        parser.error("--validation_fraction splits --train_file: pass one")
    if model_args.head_type is not None and model_args.head_type not in HEADS:
        parser.error(f"--head_type {model_args.head_type}: give one of {', '.join(HEADS)}")
    if model_args.use_crf and model_args.head_type not in (None, "crf"):
        parser.error(f"--use_crf is --head_type crf: it contradicts --head_type {model_args.head_type}")
    if model_args.max_segment_length is not None and model_args.head_type != "semicrf":
        parser.error("--max_segment_length is for --head_type semicrf")
    if model_args.contextual_pooling is not None:
        if model_args.contextual_pooling not in CONTEXTUAL_POOLINGS:
            parser.error(f"--contextual_pooling {model_args.contextual_pooling}: give mean, min or max")
        if not (model_args.forward_lm or model_args.backward_lm):
            parser.error("--contextual_pooling pools the LMs' features: pass --forward_lm and/or --backward_lm")
    size = model_args.contextual_memory_size
    if size is not None and model_args.contextual_pooling is None:
        parser.error("--contextual_memory_size is for --contextual_pooling")
    if size is not None and not 0 < size <= 2**31 - 1:
        parser.error(f"--contextual_memory_size {size}: give a number of words in [1, 2**31 - 1]")
    if model_args.tag_scheme not in ("none", *SCHEMES):
        parser.error(f"--tag_scheme {model_args.tag_scheme}: give none or one of {', '.join(SCHEMES)}")
    if model_args.tag_scheme != "none" and model_args.crf_constraints not in ("auto", "none", model_args.tag_scheme):
        parser.error(
            f"--crf_constraints {model_args.crf_constraints}: the model's labels are written in --tag_scheme"
            f" {model_args.tag_scheme}; leave it auto"
        )
    unfixed = (
        "model_name_or_path",
        "model_revision",
        *(HEAD if from_lm else ()),
    )  # what the checkpoint leaves to the flags
    fixed = [f.name for f in fields(ModelArguments) if f.name not in unfixed]
    refuse_fixed(parser, checkpoint, (model_args, fixed), (data_args, TOKENIZER_FLAGS))
    return data_args, model_args, finetuning_args, training_args


def head_config(model_args: ModelArguments, trained: DatasetDict, scheme: str | None) -> dict:
    """The tagger head's config: the training labels (written in `scheme`), `--head_type`, a CRF's constraints
    (`auto`: the labels' scheme), a semi-CRF's longest segment (by default the longest chunk of the labelled splits)."""
    labels = trained["train"].features["tags"].feature.names
    head_type = model_args.head_type or ("crf" if model_args.use_crf else "softmax")
    constraints = scheme if model_args.crf_constraints == "auto" else model_args.crf_constraints
    longest = model_args.max_segment_length
    if head_type == "semicrf" and longest is None:
        # the labelled splits' longest chunk: an evaluation chunk longer than the limit would have no likelihood
        rows = (tags for split in trained.values() if "tags" in split.column_names for tags in split["tags"])
        spans = (chunks([labels[tag] for tag in tags]) for tags in rows)
        longest = max((last - first + 1 for found in spans for _, first, last in found), default=1)
    return dict(
        head_type=head_type,
        crf_constraints=constraints if head_type == "crf" and constraints not in (None, "none") else None,
        max_segment_length=longest,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )


def build_model(model_args: ModelArguments, data_args: DataArguments, raw: DatasetDict, scheme: str | None):
    """A new tagger and its word tokenizer, for the training split's words and labels, written in `scheme`."""
    lms = {name: getattr(model_args, name) for name in ("forward_lm", "backward_lm") if getattr(model_args, name)}
    tokenizer = build_word_tokenizer(
        raw["train"]["tokens"],
        min_frequency=data_args.min_frequency,
        lowercase=data_args.lowercase,
        normalize_digits=data_args.normalize_digits,
        char_min_frequency=data_args.char_min_frequency if model_args.char_encoder else None,
        max_word_length=data_args.max_word_length,
        lm_char_vocab=shared_lm_vocab(lms) if lms else None,
    )
    config = dict(
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
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **head_config(model_args, raw, scheme),
    )
    if lms:
        model = hf_rnn.RnnForTokenClassification.from_language_models(
            **lms,
            fine_tune_lms=model_args.fine_tune_lms,
            contextual_pooling=model_args.contextual_pooling,
            contextual_memory_size=model_args.contextual_memory_size,
            **config,
        )
        for name, lm in model.config.language_models.items():
            if lm.pad_token_id != tokenizer.lm_spelling.pad_id:
                raise ValueError(
                    f"--{name} {lms[name]}: its config pads with pad_token_id={lm.pad_token_id}, its tokenizer with "
                    f"id {tokenizer.lm_spelling.pad_id}"
                )
    else:
        model = hf_rnn.RnnForTokenClassification(hf_rnn.RnnConfig(fine_tune_lms=model_args.fine_tune_lms, **config))
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
    return model, tokenizer


def shared_lm_vocab(lms: dict[str, str]) -> list[str]:
    """The character vocabulary of the LMs' tokenizers, which must be one: the tagger's tokenizer spells each word once
    for both."""
    vocabs = {path: lm_char_vocab(AutoTokenizer.from_pretrained(path)) for path in lms.values()}
    first, *others = vocabs.items()
    for path, vocab in others:
        if vocab != first[1]:
            raise ValueError(
                f"--forward_lm {first[0]} and --backward_lm {path} have different character vocabularies; train "
                "both on the same text (run_lm.py --char_level, then --char_level --reverse)"
            )
    return first[1]


def encode_words(sentences: Dataset, tokenizer, max_length: int | None) -> tuple[Dataset, list[list[int]]]:
    """Sentences' words as the model reads them (no labels), and the position of each word's first token (a word cut
    by --max_length has none): where its predicted tag is read."""
    encoding = tokenizer(
        list(sentences["tokens"]), is_split_into_words=True, truncation=max_length is not None, max_length=max_length
    )
    starts = []
    for row in range(len(sentences)):
        words = encoding.word_ids(row)
        starts.append([i for i, word in enumerate(words) if word is not None and (i == 0 or words[i - 1] != word)])
    return Dataset.from_dict(dict(encoding)), starts


def write_predictions(trainer: Trainer, sentences: Dataset, test: Dataset, starts: list[list[int]], labels, scheme):
    """Tag the test split (`test`, encoded; `starts`: each word's first token) and write predictions.conll: each word
    of `sentences`, its gold tag if it has one, and the tag predicted (converted to `scheme`, that of the data a model
    trained on converted labels was given). With gold tags, returns the metrics (predict_results.json, as run_ner.py),
    computed on the same tags."""
    output = trainer.predict(test, metric_key_prefix="predict")
    tagged = "tags" in sentences.column_names
    if tagged:
        trainer.log_metrics("predict", output.metrics)
        trainer.save_metrics("predict", output.metrics)
    if trainer.is_world_process_zero():
        predicted = predicted_tags(output)
        gold = tag_names(sentences) if tagged else [[] for _ in range(len(sentences))]
        with open(Path(trainer.args.output_dir) / "predictions.conll", "w", encoding="utf-8") as handle:
            for row, (tokens, tags) in enumerate(zip(sentences["tokens"], gold)):
                guesses = [labels[tag] for tag in predicted[row][starts[row]]]  # one per word, but for words cut by
                guesses = convert(guesses, scheme) if scheme else guesses  # --max_length (converting keeps the length)
                for position, token in enumerate(tokens):
                    columns = [
                        token,
                        *tags[position : position + 1],
                        guesses[position] if position < len(guesses) else "-",
                    ]
                    handle.write("\t".join(columns) + "\n")
                handle.write("\n")
    return output.metrics if tagged else None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_args, model_args, finetuning_args, training_args = parse()
    resume, push = start(training_args)

    checkpoint, revision = model_args.model_name_or_path, model_args.model_revision
    continued = bool(checkpoint) and not is_language_model(checkpoint, revision)
    raw, words, where = read_data(data_args, training_args.seed, own_labels=continued)
    if continued:  # a tagger to continue: its architecture, tokenizer and labels
        model, tokenizer = load_pretrained(checkpoint, hf_rnn.RnnForTokenClassification, revision)
        labels = model_labels(model.config)
        raw, trained, files_scheme = checkpoint_data(raw, model.config, data_args.unknown_tag, where)
        if files_scheme:
            logger.info(
                "the data is written in %s, the checkpoint's labels in %s: tags converted, predictions back",
                files_scheme,
                model_scheme(model.config),
            )
    else:  # a new tagger: on a language model's encoder (ULMFiT), or from scratch
        trained, scheme, files_scheme = training_labels(raw, model_args.tag_scheme)
        labels = trained["train"].features["tags"].feature.names
        if checkpoint:
            if AutoConfig.from_pretrained(checkpoint, revision=revision).char_level:
                raise ValueError(
                    f"--model_name_or_path {checkpoint}: a character language model, whose encoder reads characters,"
                    " not words: give it as --forward_lm (or --backward_lm if reversed) for contextual string"
                    " embeddings, or start the tagger from a word language model"
                )
            head = head_config(model_args, trained, scheme)
            model, tokenizer = start_from_language_model(checkpoint, hf_rnn.RnnForTokenClassification, head, revision)
        else:
            model, tokenizer = build_model(model_args, data_args, trained, scheme)
    steps = {"train": training_args.do_train, "validation": training_args.do_eval, "test": training_args.do_predict}
    for split, wanted in steps.items():
        if wanted and split not in raw and not (split == "test" and words):  # parse() checked the files
            raise ValueError(f"{data_args.dataset_name} has no {split!r} split (it has {list(raw)})")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    limits["test"] = data_args.max_predict_samples
    raw, trained = (
        DatasetDict({split: first(part, limits[split]) for split, part in d.items() if steps.get(split)})
        for d in (raw, trained)
    )
    data = encode_for_tagging(trained, tokenizer, max_length=data_args.max_length)
    if words:  # a file of words only: tagged, not scored
        raw["test"] = first(Dataset.from_dict({"tokens": [s.tokens for s in words]}), limits["test"])
        data["test"] = encode_words(raw["test"], tokenizer, data_args.max_length)[0]
    if model.model.contextual is not None:
        model.model.contextual.cache_eval = True  # a dev set evaluated each epoch: through frozen LMs once
    logger.info(
        "%s: %d parameters, %d words in the vocabulary, %d tags, %s",
        type(model).__name__,
        model.num_parameters(),
        tokenizer.vocab_size,
        len(labels),
        ", ".join(f"{len(part)} {split} sentences" for split, part in data.items()),
    )

    trainer = RowOrderTrainer(
        model=model,
        args=training_args,
        train_dataset=data.get("train"),
        eval_dataset=data.get("validation"),
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=TaggingMetrics(labels, data_args.return_entity_level_metrics, scheme=files_scheme),
    )
    if training_args.do_train:
        train_and_save(trainer, finetuning_args, resume)
    metrics = None
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        print_metrics(trainer, metrics)
        if not data_args.no_plots:
            save_plots(trainer, data["validation"], labels)
    if training_args.do_predict:
        starts = encode_words(raw["test"], tokenizer, data_args.max_length)[1]
        scores = write_predictions(trainer, raw["test"], data["test"], starts, labels, files_scheme)
        if scores is not None:
            print_metrics(trainer, scores)
    if push:
        push_trained(trainer, metrics, dataset=card_dataset(data_args.dataset_name, data_args.train_file))
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
