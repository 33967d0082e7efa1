"""BiLSTM-CRF training and tagging throughput: hf_rnn against flair's SequenceTagger, same sizes, same data.

    python bench/flair_tagger.py --flair_python /path/to/flair-venv/bin/python [--sentences 2000] [--rounds 2]

flair 0.15 needs transformers < 5 and hf_rnn needs transformers >= 5, so the two cannot share a process: this script
times hf_rnn in its own process and flair in a subprocess of the flair environment, alternating rounds so both meet
the same machine load, each on one torch thread, and prints the ratios. The model is flair's UD recipe
(flair's UD POS setup): one-hot word embeddings 300-d (min frequency 3) + a character BiLSTM 25/25, BiLSTM 256, CRF, word
dropout 0.05 and locked dropout 0.5 before the BiLSTM, locked dropout 0.5 after it (hf_rnn also drops character
embeddings), SGD lr 0.1, batch 32; the data is UD English EWT (../shared/data), whose first `--sentences` training
sentences are written once to a two-column file that both sides read.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import add_device_argument, goal_row, synchronize

HERE = Path(__file__).resolve().parent
UD = HERE.parent.parent / "shared" / "data" / "ud_en_ewt"


def read_columns(path: str) -> list[tuple[list[str], list[str]]]:
    """The benchmark's own two-column file (word TAB tag, blank line between sentences); the flair side cannot import
    hf_rnn (transformers 5) to use `hf_rnn.data.read_conll`."""
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines() + [""]:
        if line:
            word, tag = line.split("\t")
            words.append(word)
            tags.append(tag)
        elif words:
            sentences.append((words, tags))
            words, tags = [], []
    return sentences


def batches(lengths: list[int], size: int, seed: int, grouped: bool) -> list[list[int]]:
    """Shuffled batches of sentence indices; `grouped` sorts each run of 50 batches by length first (like the
    Trainer's `group_by_length`), so a batch holds sentences of similar lengths. Both sides get the same batches."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if grouped:
        chunk = 50 * size
        order = [
            i
            for start in range(0, len(order), chunk)
            for i in sorted(order[start : start + chunk], key=lengths.__getitem__)
        ]
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    random.Random(seed + 1).shuffle(groups)
    return groups


def time_flair(train_file: str, dev_file: str, epochs: int, grouped: bool, device: torch.device) -> dict:
    import flair
    from flair.data import Corpus, Dictionary, Sentence
    from flair.embeddings import CharacterEmbeddings, OneHotEmbeddings, StackedEmbeddings
    from flair.models import SequenceTagger

    flair.device = device

    def sentences(path):
        out = []
        for words, tags in read_columns(path):
            sentence = Sentence(words)
            for token, tag in zip(sentence, tags):
                token.add_label("upos", tag)
            out.append(sentence)
        return out

    train, dev = sentences(train_file), sentences(dev_file)
    tags, characters = Dictionary(add_unk=False), Dictionary()  # the characters of the training data, like hf_rnn's
    for sentence in train:
        for token in sentence:
            tags.add_item(token.get_label("upos").value)
            for character in token.text:
                characters.add_item(character)
    corpus = Corpus(train=train, dev=dev, test=dev)
    words = OneHotEmbeddings.from_corpus(corpus, field="text", embedding_length=300, min_freq=3)
    embeddings = StackedEmbeddings([words, CharacterEmbeddings(characters)])
    tagger = SequenceTagger(
        hidden_size=256,
        embeddings=embeddings,
        tag_dictionary=tags,
        tag_type="upos",
        use_crf=True,
        reproject_embeddings=False,
    )
    tagger.to(device)
    optimizer = torch.optim.SGD(tagger.parameters(), lr=0.1)
    tagger.train()
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        for rows in batches([len(s) for s in train], 32, epoch, grouped):
            optimizer.zero_grad()
            loss, count = tagger.forward_loss([train[i] for i in rows])
            (loss / count).backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), 5.0)
            optimizer.step()
            for i in rows:
                train[i].clear_embeddings()
    synchronize(device)
    train_seconds = time.perf_counter() - start
    tagger.eval()
    start = time.perf_counter()
    tagger.predict(dev, mini_batch_size=32, label_name="predicted")
    synchronize(device)
    tag_seconds = time.perf_counter() - start
    correct = sum(t.get_label("predicted").value == t.get_label("upos").value for s in dev for t in s)
    return _result([len(s) for s in train], [len(s) for s in dev], epochs, train_seconds, tag_seconds, correct)


def time_hf_rnn(train_file: str, dev_file: str, epochs: int, grouped: bool, device: torch.device) -> dict:
    from transformers import DataCollatorForTokenClassification

    sys.path.insert(0, str(HERE.parent))
    import hf_rnn
    from hf_rnn.data import encode_for_tagging, read_conll, tagging_dataset
    from hf_rnn.vocabulary import build_word_tokenizer

    train, dev = read_conll(train_file), read_conll(dev_file)
    label_names = sorted({tag for sentence in train + dev for tag in sentence.tags})
    raw = tagging_dataset({"train": train, "validation": dev}, label_names=label_names)
    labels = raw["train"].features["tags"].feature.names
    tokenizer = build_word_tokenizer(raw["train"]["tokens"], min_frequency=3, char_min_frequency=1)
    data = encode_for_tagging(raw, tokenizer)
    config = hf_rnn.RnnConfig(
        vocab_size=len(tokenizer),
        embedding_size=300,
        char_encoder="lstm",
        char_vocab_size=tokenizer.char_vocab_size,
        hidden_size=256,
        bidirectional=True,
        dropout=0.5,
        locked_dropout=True,
        word_dropout=0.05,
        use_crf=True,
        id2label=dict(enumerate(labels)),
    )
    model = hf_rnn.RnnForTokenClassification(config).to(device)
    collator = DataCollatorForTokenClassification(tokenizer)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    features = {split: [data[split][i] for i in range(len(data[split]))] for split in data}
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        for rows in batches([len(s.tokens) for s in train], 32, epoch, grouped):
            optimizer.zero_grad()
            batch = collator([features["train"][i] for i in rows])
            loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
    synchronize(device)
    train_seconds = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    correct = 0
    longest_first = sorted(range(len(dev)), key=lambda i: -len(dev[i].tokens))  # as flair's predict() orders them
    with torch.no_grad():
        for first in range(0, len(dev), 32):
            batch = collator([features["validation"][i] for i in longest_first[first : first + 32]])
            batch = {key: value.to(device) for key, value in batch.items()}
            gold = batch.pop("labels")
            predictions = model(**batch).predictions
            correct += ((predictions == gold) & (gold != -100)).sum()  # read once, after the loop
    correct = int(correct)
    synchronize(device)
    tag_seconds = time.perf_counter() - start
    lengths = [[len(s.tokens) for s in split] for split in (train, dev)]
    return _result(*lengths, epochs, train_seconds, tag_seconds, correct)


def _result(train_lengths, dev_lengths, epochs, train_seconds, tag_seconds, correct) -> dict:
    train_tokens, dev_tokens = sum(train_lengths), sum(dev_lengths)
    return {
        "train_tokens_per_s": epochs * train_tokens / train_seconds,
        "tag_tokens_per_s": dev_tokens / tag_seconds,
        "dev_accuracy": correct / dev_tokens,
    }


def write_columns(source: Path, target: Path, limit: int) -> None:
    sys.path.insert(0, str(HERE.parent))
    from hf_rnn.data import read_conllu

    lines = []
    for sentence in read_conllu(source)[:limit]:
        lines += [f"{w}\t{t}" for w, t in zip(sentence.tokens, sentence.tags)] + [""]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flair_python", help="the python of an environment with flair 0.15 (transformers < 5)")
    parser.add_argument("--sentences", type=int, default=2000, help="training sentences (dev: a quarter as many)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--group_by_length", action="store_true", help="length-grouped batches (both sides)")
    parser.add_argument("--side", choices=["flair", "hf_rnn"], help=argparse.SUPPRESS)  # one timing, as JSON
    parser.add_argument("--train_file", help=argparse.SUPPRESS)
    parser.add_argument("--dev_file", help=argparse.SUPPRESS)
    add_device_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.side:
        timer = time_flair if args.side == "flair" else time_hf_rnn
        print(json.dumps(timer(args.train_file, args.dev_file, args.epochs, args.group_by_length, args.device)))
        return
    if not UD.is_dir():
        sys.exit(f"needs UD English EWT in {UD}")
    if not args.flair_python:
        sys.exit("pass --flair_python: flair cannot be imported next to transformers 5 (see the docstring)")
    folder = Path(tempfile.mkdtemp(prefix="flair_bench_"))
    write_columns(UD / "en_ewt-ud-train.conllu", folder / "train.tsv", args.sentences)
    write_columns(UD / "en_ewt-ud-dev.conllu", folder / "dev.tsv", args.sentences // 4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    results: dict[str, list[dict]] = {"hf_rnn": [], "flair": []}
    for _ in range(args.rounds):
        for side, python in (("hf_rnn", sys.executable), ("flair", args.flair_python)):
            command = [python, __file__, "--side", side, "--epochs", str(args.epochs), "--device", str(args.device)]
            command += ["--group_by_length"] if args.group_by_length else []
            command += ["--train_file", str(folder / "train.tsv"), "--dev_file", str(folder / "dev.tsv")]
            output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            results[side].append(json.loads(output.strip().splitlines()[-1]))
    best = {side: {k: max(r[k] for r in runs) for k in runs[0]} for side, runs in results.items()}
    batching = "length-grouped" if args.group_by_length else "random"
    print(
        f"UD EWT, {args.sentences} training sentences x {args.epochs} epoch(s), {batching} batches of 32, 1 thread, "
        f"best of {args.rounds} rounds; torch {torch.__version__}; {args.device}"
    )
    print("| | hf_rnn | flair 0.15 | hf_rnn / flair |")
    print("| --- | ---: | ---: | ---: |")
    for key, name in (("train_tokens_per_s", "training tokens/s"), ("tag_tokens_per_s", "tagging tokens/s")):
        h, f = best["hf_rnn"][key], best["flair"][key]
        print(f"| {name} | {h:,.0f} | {f:,.0f} | {h / f:.2f}x |")
        goal = ">= 3x" if key == "train_tokens_per_s" and not args.group_by_length else ""
        goal_row(
            "flair_tagger", f"hf_rnn / flair {name}, {batching} batches", h / f, goal, h / f >= 3 if goal else None
        )
    h, f = best["hf_rnn"]["dev_accuracy"], best["flair"]["dev_accuracy"]
    print(f"| dev accuracy after the run | {100 * h:.2f} | {100 * f:.2f} | |")


if __name__ == "__main__":
    main()
