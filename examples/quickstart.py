"""The main job end to end: train a small BiLSTM tagger on hf_rnn's built-in sample, evaluate, save, reload through
`AutoModelForTokenClassification`/`AutoTokenizer`, and tag a sentence.

    python examples/quickstart.py --output_dir runs/quickstart

It runs on one CPU thread unless told otherwise (`--threads N`, or OMP_NUM_THREADS set in the environment): on the
2-core development machine shared with other jobs, two torch threads trained this model 4-15x slower than one
(their threads wait for each other's cores); on a machine to itself, try `--threads 2`.
"""

import argparse
import os
import time

import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

import hf_rnn
from hf_rnn.configuration_rnn import CELL_TYPES
from hf_rnn.data import encode_for_tagging, load_sample_pos
from hf_rnn.metrics import TaggingMetrics
from hf_rnn.scripts.launch import check_output_dir
from hf_rnn.vocabulary import build_word_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/quickstart")
    parser.add_argument(
        "--overwrite_output_dir", action="store_true", help="replace the run in a non-empty --output_dir (make demo)"
    )
    parser.add_argument("--cell_type", default="lstm", choices=CELL_TYPES)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use_crf", action="store_true", help="a BiLSTM-CRF (Viterbi decoding) instead of softmax")
    parser.add_argument("--char_encoder", choices=["lstm", "cnn"], help="add character-level word features")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: OMP_NUM_THREADS when it is set, otherwise 1)"
    )
    args = parser.parse_args()
    try:
        check_output_dir(args.output_dir, None, args.overwrite_output_dir)
    except ValueError as error:
        parser.error(str(error))
    if args.threads is not None or "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(args.threads or 1)
    torch.manual_seed(args.seed)

    raw = load_sample_pos()
    labels = raw["train"].features["tags"].feature.names
    tokenizer = build_word_tokenizer(
        raw["train"]["tokens"], lowercase=True, char_min_frequency=1 if args.char_encoder else None
    )
    data = encode_for_tagging(raw, tokenizer)
    config = hf_rnn.RnnConfig(
        cell_type=args.cell_type,
        vocab_size=tokenizer.vocab_size,
        embedding_size=64,
        hidden_size=64,
        char_encoder=args.char_encoder,
        char_vocab_size=tokenizer.char_vocab_size if args.char_encoder else 0,
        bidirectional=True,
        dropout=0.2,
        use_crf=args.use_crf,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = hf_rnn.RnnForTokenClassification(config)
    head = "CRF" if args.use_crf else "softmax"
    chars = f" + char-{args.char_encoder}" if args.char_encoder else ""
    print(
        f"model: {args.cell_type} BiRNN{chars} + {head}, {model.num_parameters():,} parameters; {len(labels)} tags; "
        f"{len(data['train'])} train / {len(data['dev'])} dev sentences"
    )

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.output_dir,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=16,
            learning_rate=1e-2,
            eval_strategy="epoch",
            save_strategy="no",
            logging_steps=50,
            use_cpu=not torch.cuda.is_available(),
            seed=args.seed,
            report_to="none",
            disable_tqdm=True,
        ),
        train_dataset=data["train"],
        eval_dataset=data["dev"],
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=TaggingMetrics(labels),
    )
    start = time.perf_counter()
    trainer.train()
    metrics = trainer.evaluate()
    threads = torch.get_num_threads()
    print(
        f"trained in {time.perf_counter() - start:.1f} s on {threads} CPU thread{'s' if threads > 1 else ''}; "
        f"dev accuracy {metrics['eval_accuracy']:.4f}"
    )
    trainer.save_model(args.output_dir)

    # A fresh load, as a user of the saved folder would do it.
    tokenizer = AutoTokenizer.from_pretrained(args.output_dir)
    model = AutoModelForTokenClassification.from_pretrained(args.output_dir).eval()
    words = "The old teacher watches a quick run near the river .".split()
    inputs = tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**inputs).predictions[0].tolist()  # Viterbi path with --use_crf
    print(f"reloaded {type(model).__name__} from {args.output_dir}")
    print(" ".join(f"{word}/{model.config.id2label[tag]}" for word, tag in zip(words, predicted)))


if __name__ == "__main__":
    main()
