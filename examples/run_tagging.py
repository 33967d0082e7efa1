"""Train a (Bi)RNN tagger — POS tagging, NER, chunking — with the Trainer, from CoNLL/CoNLL-U files.

    python examples/run_tagging.py --train_file en_ewt-ud-train.conllu --validation_file en_ewt-ud-dev.conllu \
        --output_dir runs/pos --use_crf --num_train_epochs 10
    python examples/run_tagging.py --model_name_or_path runs/pos --do_train false --test_file test.conllu
    accelerate launch examples/run_tagging.py ...        # several processes / GPUs

Every `TrainingArguments` flag works (learning rate, batch size, bf16, gradient accumulation, push_to_hub, ...). The
defaults differ from the Trainer's where those do not train an RNN from scratch: lr 2e-3, a
loss logged every 2 % of the steps, one CPU thread unless OMP_NUM_THREADS is set (hf_rnn.launch).
`--resume_from_checkpoint True` (or a folder of checkpoints) resumes from the last complete checkpoint in it, skipping
one that a killed run left half-saved (hf_rnn.checkpoints); `--resume_from_checkpoint path/checkpoint-N` resumes from
that one.
`--forward_lm` and `--backward_lm` (character LMs from run_lm.py --char_level [--reverse], folders or Hub ids) add
contextual string embeddings (Akbik et al. 2018) to the word features; the LMs stay frozen unless --fine_tune_lms, and
their features are computed once per training and dev sentence.
Evaluation reports token accuracy and, for BIO/IOB1/BIOES/BILOU labels, span precision/recall/F1 (conlleval rules).
The training file's label scheme is detected (hf_rnn.schemes) and becomes the CRF's constraints. `--tag_scheme BIOES`
(or BILOU, BIO, IOB1) trains on labels converted to that scheme, and converts the predicted tags back to the files'
scheme for the metrics and predictions.conll, so the scores compare against the files' own gold tags.

As in transformers' run_ner.py: files may also be JSON (lines) or CSV with a tokens and a tags column; `--do_train`,
`--do_eval`, `--do_predict` choose the steps (by default: train, evaluate when evaluation data is named, predict when
a test file is), `--max_{train,eval,predict}_samples` keep the first sentences of a split, and `--model_name_or_path`
continues from an hf_rnn tagger (its architecture, tokenizer and labels), or starts a new tagger on an hf_rnn word
language model's encoder and tokenizer (its architecture: left to right, no character encoder), with the training
file's labels, `--use_crf` and `--crf_constraints` (ULMFiT; `--layer_lr_decay 2.6 --gradual_unfreezing` are its
fine-tuning schedules, hf_rnn.finetuning). `--do_predict` writes the test metrics
(predict_results.json) and predictions.conll: token, gold and predicted tag (- for a word cut by --max_length),
TAB-separated, a blank line after each sentence (`conlleval -d '\t'` reads it).
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from datasets import ClassLabel, DatasetDict, Features, List, Value, load_dataset
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
)

import hf_rnn
from hf_rnn.data import (
    DataFormatError,
    TaggedSentence,
    encode_for_tagging,
    read_conll,
    read_conllu,
    standardize_tagging_dataset,
    tagging_dataset,
)
from hf_rnn.embeddings import load_word_vectors
from hf_rnn.finetuning import FinetuningArguments
from hf_rnn.hub import push_trained
from hf_rnn.launch import (
    TRAINING_DEFAULTS,
    check_labels,
    check_steps,
    default_steps,
    first,
    is_language_model,
    load_pretrained,
    parse_args,
    print_metrics,
    refuse_fixed,
    start,
    start_from_language_model,
    train_and_save,
)
from hf_rnn.metrics import TaggingMetrics, predicted_tags
from hf_rnn.schemes import PREFIXES, SCHEMES, convert, detect_scheme, label_scheme, split_tag
from hf_rnn.tables import read_tagged_table
from hf_rnn.vocabulary import build_word_tokenizer, lm_char_vocab

logger = logging.getLogger(__name__)
TABLES = (".json", ".jsonl", ".csv")  # read as run_ner.py reads them, the other files as CoNLL(-U)
# what a checkpoint fixes besides ModelArguments: its tokenizer
TOKENIZER_FLAGS = ("lowercase", "normalize_digits", "min_frequency", "char_min_frequency", "max_word_length")
HEAD = ("use_crf", "crf_constraints", "tag_scheme")  # fixed by a tagger checkpoint, left open by a language model


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "CoNLL (token ... tag), CoNLL-U (.conllu), JSON (lines) or CSV file."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Instead of files: a Hub dataset (e.g. wnut_17) or a local dataset folder."}
    )
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
    use_crf: bool = field(default=False, metadata={"help": "BiLSTM-CRF: CRF loss and Viterbi decoding."})
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


def read_split(path: str, data: DataArguments) -> list[TaggedSentence]:
    if path.endswith(".conllu"):
        return read_conllu(path, data.tag_field)
    if path.endswith(TABLES):
        return read_tagged_table(path, data.tokens_column, data.tags_column)
    return read_conll(path, data.token_column, data.tag_column)


def read_files(
    data_args: DataArguments, seed: int, config: hf_rnn.RnnConfig | None
) -> tuple[DatasetDict, DatasetDict, str | None]:
    """The files named, as splits: as written, and in the labels the model reads (the checkpoint's, `config`, else
    the training file's); and the files' scheme where it differs from the checkpoint's (`foreign_scheme`: then the
    model reads the tags converted into its own, and its predictions are converted back)."""
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    splits = {split: read_split(path, data_args) for split, path in files.items() if path}
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
    if config is None:
        label_names = None
        if data_args.validation_fraction > 0:
            # a dev split carved from the training file shares its label set (rare tags may fall on either side)
            label_names = sorted({t for split in ("train", "validation") for s in splits[split] for t in s.tags})
        raw = tagging_dataset(splits, label_names=label_names, unknown_tag=data_args.unknown_tag)
        return raw, raw, None
    labels = checkpoint_labels(config)
    files_scheme = foreign_scheme(config, [s.tags for part in splits.values() for s in part])
    if files_scheme is None:
        raw = tagging_dataset(splits, label_names=labels, unknown_tag=data_args.unknown_tag)
        return raw, raw, None
    target, types = checkpoint_scheme(config), {split_tag(label)[1] for label in labels}
    raw_splits, converted = {}, {}
    for name, part in splits.items():
        raw_splits[name], converted[name] = [], []
        for s in part:
            tags = s.tags
            if data_args.unknown_tag is not None:  # types the checkpoint lacks, in the files' own scheme
                tags = [tag if split_tag(tag)[1] in types else data_args.unknown_tag for tag in tags]
            written = exactly_converted(tags, files_scheme, target, lambda i, s=s: f"{s.path}:{s.lines[i]}")
            for position, (tag, label) in enumerate(zip(tags, written)):
                if label not in labels:
                    raise DataFormatError(
                        s.path,
                        s.lines[position],
                        f"tag {tag!r} ({label!r} in the checkpoint's {target}) is not in "
                        f"its label set {labels} (pass --unknown_tag to map the types it lacks)",
                    )
            raw_splits[name].append(replace(s, tags=tags))
            converted[name].append(replace(s, tags=written))
    own = sorted({tag for part in raw_splits.values() for s in part for tag in s.tags})
    return tagging_dataset(raw_splits, label_names=own), tagging_dataset(converted, label_names=labels), files_scheme


def exactly_converted(tags: list[str], source: str, target: str, where) -> list[str]:
    """`tags`, valid in `source`, written in `target`. A tag that converting would change (an `I-X` after `O` in BIO,
    read as `B-X`) is refused at `where(position)`: the metrics, computed on the tags converted back, and
    predictions.conll's gold column must be the data's own tags."""
    written = convert(tags, target)
    for position, (tag, back) in enumerate(zip(tags, convert(written, source))):
        if tag != back:
            raise ValueError(
                f"{where(position)}: tag {tag!r} is not valid {source} here (it reads as {back!r}); converting the tags"
                f" to {target} would change them: fix the data"
            )
    return written


def checkpoint_labels(config: hf_rnn.RnnConfig) -> list[str]:
    return [config.id2label[index] for index in range(config.num_labels)]


def checkpoint_scheme(config: hf_rnn.RnnConfig) -> str | None:
    """The scheme a tagger's labels are written in: its CRF's constraints, else what the label set tells (B-/I-
    labels read as BIO: only sequences tell IOB1 apart)."""
    return config.crf_constraints or label_scheme(checkpoint_labels(config))


def foreign_scheme(config: hf_rnn.RnnConfig, sequences: list[list[str]]) -> str | None:
    """The data's chunk scheme where a checkpoint's labels are written in another (a tagger trained with --tag_scheme
    BIOES, given BIO files), else None. Without CRF constraints only label sets are compared, so B-/I- data is read
    as it is by a B-/I- model (BIO and IOB1 share labels)."""
    mine, theirs = checkpoint_scheme(config), detect_scheme(sequences)
    if mine is None or theirs is None:
        return None
    if config.crf_constraints is None:  # the labels' kind (B-/I-, BIOES, BILOU) decides; the sequences tell IOB1
        differ = label_scheme(tag for tags in sequences for tag in tags) != mine
    else:
        differ = theirs != mine
    return theirs if differ else None


def relabel(raw: DatasetDict, config: hf_rnn.RnnConfig, checkpoint: str) -> tuple[DatasetDict, str | None]:
    """A dataset's tags as ids of a checkpoint's labels, converted into its scheme where the data's differs (then
    also the data's scheme, `foreign_scheme`); a tag the checkpoint lacks is an error."""
    labels = checkpoint_labels(config)
    names = next(iter(raw.values())).features["tags"].feature.names  # every split has the same
    files_scheme = foreign_scheme(config, [tags for part in raw.values() for tags in tag_names(part)])
    target = checkpoint_scheme(config) if files_scheme else None
    index = {label: i for i, label in enumerate(labels)}

    def tags_of(row: list[int], where) -> list[int]:
        tags = [names[tag] for tag in row]
        tags = exactly_converted(tags, files_scheme, target, where) if target else tags
        check_labels(checkpoint, labels, tags)
        return [index[tag] for tag in tags]

    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=labels))})
    mapped = DatasetDict(
        {
            split: part.map(
                lambda row, n: {"tags": tags_of(row["tags"], lambda i: f"{split} row {n}, position {i}")},
                with_indices=True,
                features=features,
            )
            for split, part in raw.items()
        }
    )
    return mapped, files_scheme


def load_splits(
    data_args: DataArguments, seed: int, config: hf_rnn.RnnConfig | None, checkpoint: str | None
) -> tuple[DatasetDict, DatasetDict, str | None]:
    """train/validation/test as `tokens` and `tags` (a ClassLabel sequence), each cut to its --max_*_samples: as
    written, and in the labels of `config` (a checkpoint's) if given; and the data's scheme where it differs from the
    checkpoint's (`read_files`)."""
    if data_args.dataset_name:
        raw = standardize_tagging_dataset(
            load_dataset(data_args.dataset_name), data_args.tokens_column, data_args.tags_column
        )
        read, files_scheme = relabel(raw, config, checkpoint) if config is not None else (raw, None)
    else:
        raw, read, files_scheme = read_files(data_args, seed, config)
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    raw, read = (
        DatasetDict({split: first(part, limits.get(split)) for split, part in d.items()}) for d in (raw, read)
    )
    return raw, read, files_scheme


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


def defaults(given: argparse.Namespace) -> dict:
    evaluation = bool(given.validation_file or given.validation_fraction or given.dataset_name)
    return {**TRAINING_DEFAULTS, **default_steps(evaluation, bool(given.test_file))}


def parse(
    args: list[str] | None = None,
) -> tuple[DataArguments, ModelArguments, FinetuningArguments, TrainingArguments]:
    """The flags (hf_rnn.launch's defaults where the Trainer's do not train an RNN); contradictions: usage errors."""
    parser = HfArgumentParser((DataArguments, ModelArguments, FinetuningArguments, TrainingArguments))
    data_args, model_args, finetuning_args, training_args = parse_args(parser, defaults, args)
    files = data_args.train_file or data_args.validation_file or data_args.test_file
    if data_args.dataset_name and files:
        parser.error("pass --dataset_name or files (--train_file, --validation_file, --test_file), not both")
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
    from_lm = bool(checkpoint) and is_language_model(checkpoint)
    check_steps(parser, training_args, checkpoint, data, flags, new_head=from_lm)
    if not 0 <= data_args.validation_fraction < 1:
        parser.error(f"--validation_fraction {data_args.validation_fraction}: give a share in [0, 1)")
    if data_args.validation_fraction and (data_args.validation_file or data_args.dataset_name):
        parser.error(
            "--validation_fraction splits --train_file; it would be ignored with --validation_file or --dataset_name"
        )
    if data_args.validation_fraction and not data_args.train_file:
        parser.error("--validation_fraction splits --train_file: pass one")
    if model_args.tag_scheme not in ("none", *SCHEMES):
        parser.error(f"--tag_scheme {model_args.tag_scheme}: give none or one of {', '.join(SCHEMES)}")
    if model_args.tag_scheme != "none" and model_args.crf_constraints not in ("auto", "none", model_args.tag_scheme):
        parser.error(
            f"--crf_constraints {model_args.crf_constraints}: the model's labels are written in --tag_scheme"
            f" {model_args.tag_scheme}; leave it auto"
        )
    unfixed = ("model_name_or_path", *(HEAD if from_lm else ()))  # what the checkpoint leaves to the flags
    fixed = [f.name for f in fields(ModelArguments) if f.name not in unfixed]
    refuse_fixed(parser, checkpoint, (model_args, fixed), (data_args, TOKENIZER_FLAGS))
    return data_args, model_args, finetuning_args, training_args


def head_config(model_args: ModelArguments, labels: list[str], scheme: str | None) -> dict:
    """The tagger head's config: the labels (written in `scheme`), `--use_crf` and its constraints (`auto`: the
    labels' scheme)."""
    constraints = scheme if model_args.crf_constraints == "auto" else model_args.crf_constraints
    return dict(
        use_crf=model_args.use_crf,
        crf_constraints=constraints if model_args.use_crf and constraints not in (None, "none") else None,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )


def tag_names(split) -> list[list[str]]:
    """A split's tags as label names."""
    names = split.features["tags"].feature.names
    return [[names[tag] for tag in tags] for tags in split["tags"]]


def to_scheme(raw: DatasetDict, scheme: str, source: str) -> DatasetDict:
    """The splits with their tags, written in `source`, written in `scheme` (`exactly_converted`); the labels are the
    scheme's for every type in the data, so a one-word chunk in the dev set has its S- label even if training has
    none."""
    names = raw["train"].features["tags"].feature.names
    kinds = sorted({split_tag(name)[1] for name in names} - {None})
    labels = (["O"] if "O" in names else []) + [f"{prefix}-{kind}" for kind in kinds for prefix in PREFIXES[scheme]]
    index = {label: i for i, label in enumerate(labels)}
    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=labels))})
    return DatasetDict(
        {
            split: part.map(
                lambda row, n: {
                    "tags": [
                        index[tag]
                        for tag in exactly_converted(
                            [names[t] for t in row["tags"]], source, scheme, lambda i: f"{split} row {n}, position {i}"
                        )
                    ]
                },
                with_indices=True,
                features=features,
            )
            for split, part in raw.items()
        }
    )


def training_labels(raw: DatasetDict, tag_scheme: str) -> tuple[DatasetDict, str | None, str | None]:
    """The splits to train on, their label scheme (None: not chunk tags), and the files' scheme when the two differ
    (`--tag_scheme`), to which the predictions are converted back."""
    files = detect_scheme(tag_names(raw["train"]))
    if tag_scheme in ("none", files):
        return raw, files, None
    if files is None:
        raise ValueError(f"--tag_scheme {tag_scheme}: the training labels are not chunk tags (<prefix>-<TYPE> and O)")
    return to_scheme(raw, tag_scheme, files), tag_scheme, files


def build_model(model_args: ModelArguments, data_args: DataArguments, raw: DatasetDict, scheme: str | None):
    """A new tagger and its word tokenizer, for the training split's words and labels, written in `scheme`."""
    labels = raw["train"].features["tags"].feature.names
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
        **head_config(model_args, labels, scheme),
    )
    if lms:
        model = hf_rnn.RnnForTokenClassification.from_language_models(
            **lms, fine_tune_lms=model_args.fine_tune_lms, **config
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


def write_predictions(trainer: Trainer, raw_test, test, labels: list[str], scheme: str | None) -> dict:
    """Tag the test split: its metrics (predict_results.json, as run_ner.py) and predictions.conll, with the gold tags
    of `raw_test` and the model's `labels` converted to `scheme` (that of a model trained on converted labels)."""
    output = trainer.predict(test, metric_key_prefix="predict")
    trainer.log_metrics("predict", output.metrics)
    trainer.save_metrics("predict", output.metrics)
    if trainer.is_world_process_zero():
        predicted, scored = predicted_tags(output), output.label_ids != -100
        with open(Path(trainer.args.output_dir) / "predictions.conll", "w", encoding="utf-8") as handle:
            for row, (tokens, gold) in enumerate(zip(raw_test["tokens"], tag_names(raw_test))):
                tags = [labels[tag] for tag in predicted[row][scored[row]]]  # one per word, but for words cut by
                tags = convert(tags, scheme) if scheme else tags  # --max_length (converting keeps the length)
                for position, (token, tag) in enumerate(zip(tokens, gold)):
                    handle.write(f"{token}\t{tag}\t{tags[position] if position < len(tags) else '-'}\n")
                handle.write("\n")
    return output.metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_args, model_args, finetuning_args, training_args = parse()
    resume, push = start(training_args)

    checkpoint = model_args.model_name_or_path
    if checkpoint and not is_language_model(checkpoint):  # a tagger to continue
        model, tokenizer = load_pretrained(checkpoint, hf_rnn.RnnForTokenClassification)
        labels = checkpoint_labels(model.config)
        raw, trained, files_scheme = load_splits(data_args, training_args.seed, model.config, checkpoint)
        if files_scheme:
            logger.info(
                "the data is written in %s, the checkpoint's labels in %s: tags converted, predictions back",
                files_scheme,
                checkpoint_scheme(model.config),
            )
    else:  # a new tagger: on a language model's encoder (ULMFiT), or from scratch
        raw, _, _ = load_splits(data_args, training_args.seed, None, None)
        trained, scheme, files_scheme = training_labels(raw, model_args.tag_scheme)
        labels = trained["train"].features["tags"].feature.names
        if checkpoint:
            if AutoConfig.from_pretrained(checkpoint).char_level:
                raise ValueError(
                    f"--model_name_or_path {checkpoint}: a character language model, whose encoder reads characters,"
                    " not words: give it as --forward_lm (or --backward_lm if reversed) for contextual string"
                    " embeddings, or start the tagger from a word language model"
                )
            head = head_config(model_args, labels, scheme)
            model, tokenizer = start_from_language_model(checkpoint, hf_rnn.RnnForTokenClassification, head)
        else:
            model, tokenizer = build_model(model_args, data_args, trained, scheme)
    steps = {"train": training_args.do_train, "validation": training_args.do_eval, "test": training_args.do_predict}
    for split, wanted in steps.items():
        if wanted and split not in raw:  # only a dataset can lack one: parse() checked the files
            raise ValueError(f"{data_args.dataset_name} has no {split!r} split (it has {list(raw)})")
    raw, trained = (
        DatasetDict({split: part for split, part in d.items() if steps.get(split)}) for d in (raw, trained)
    )
    data = encode_for_tagging(trained, tokenizer, max_length=data_args.max_length)
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

    trainer = Trainer(
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
        print_metrics(trainer, write_predictions(trainer, raw["test"], data["test"], labels, files_scheme))
    if push:
        dataset = data_args.dataset_name or (Path(data_args.train_file).parent.name if data_args.train_file else None)
        push_trained(trainer, metrics, dataset=dataset or None)
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
