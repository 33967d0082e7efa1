"""Training throughput of the Trainer path against a bare PyTorch loop: same BiLSTM tagger, data, order, batch
size and optimizer (goal: the Trainer no slower).

    python bench/trainer_vs_loop.py [--conllu ../shared/data/ud_en_ewt/en_ewt-ud-train.conllu] [--use_crf]
"""

import argparse

import torch
from common import add_device_argument, alternate_runs, device_name, goal_row, quiet_training_args
from torch.utils.data import DataLoader
from transformers import DataCollatorForTokenClassification, Trainer

import hf_rnn
from hf_rnn.data import encode_for_tagging, load_sample_pos, read_conllu, tagging_dataset
from hf_rnn.vocabulary import build_word_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conllu", help="train on this CoNLL-U file's UPOS tags (default: the built-in sample)")
    parser.add_argument("--use_crf", action="store_true")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    add_device_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    raw = tagging_dataset({"train": read_conllu(args.conllu)}) if args.conllu else load_sample_pos()
    tokenizer = build_word_tokenizer(raw["train"]["tokens"])
    train = encode_for_tagging(raw, tokenizer)["train"]
    train = train.select(range(min(args.sentences, len(train))))
    tokens = sum(len(ids) for ids in train["input_ids"])
    labels = raw["train"].features["tags"].feature.names
    collator = DataCollatorForTokenClassification(tokenizer)
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=100,
        hidden_size=256,
        bidirectional=True,
        use_crf=args.use_crf,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )

    def bare_loop() -> None:
        torch.manual_seed(0)
        model = hf_rnn.RnnForTokenClassification(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        for batch in DataLoader(train, batch_size=32, shuffle=False, collate_fn=collator):
            batch = {key: value.to(device) for key, value in batch.items()}
            optimizer.zero_grad()
            model(**batch).loss.backward()
            optimizer.step()

    def trainer_path() -> None:
        torch.manual_seed(0)
        model = hf_rnn.RnnForTokenClassification(config)
        training = quiet_training_args(
            device,
            "/tmp/hf_rnn_bench_trainer",
            per_device_train_batch_size=32,
            learning_rate=1e-3,
            max_grad_norm=0.0,
        )
        Trainer(model=model, args=training, train_dataset=train, data_collator=collator).train()

    times, _ = alternate_runs({"bare loop": bare_loop, "Trainer": trainer_path}, device, args.rounds)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; {len(train)} sentences, {tokens} tokens, "
        f"batch 32, BiLSTM{'-CRF' if args.use_crf else ''} 100/256, one epoch, median of {args.rounds}"
    )
    print("| path | s / epoch | tokens / s | vs bare loop |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {times['bare loop'] / seconds:.2f}x |")
    ratio = times["bare loop"] / times["Trainer"]  # README: no slower; 5 % is the noise of two interleaved runs
    goal_row("trainer_vs_loop", "Trainer / bare loop tokens/s", ratio, "no slower (>= 0.95x)", ratio >= 0.95)


if __name__ == "__main__":
    main()
