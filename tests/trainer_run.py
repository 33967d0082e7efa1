"""Train a tiny model with the Trainer and save its final weights; importable, or a script for torchrun.

torchrun --nproc_per_node 2 tests/trainer_run.py OUT_FILE HEAD BATCH_SIZE ACCUMULATION [cuda]
"""

import sys

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerFast, Trainer, TrainingArguments

import hf_rnn

VOCAB = 37


def _tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w1"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="w0", unk_token="w1")


def _dataset(head: str) -> Dataset:
    """32 sequences of lengths 2..12, so micro-batches hold very different numbers of tokens."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for index in range(32):
        length = 2 + index % 11
        ids = torch.randint(2, VOCAB, (length,), generator=generator).tolist()
        labels = ids if head == "lm" else torch.randint(0, 3, (length,), generator=generator).tolist()
        if head == "crf":  # a valid BIO sequence: I-X (2) only after B-X (1) or I-X, so never after O (0)
            for i, tag in enumerate(labels):
                if tag == 2 and (i == 0 or labels[i - 1] == 0):
                    labels[i] = 0
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return Dataset.from_list(rows)


def train(output_file: str, head: str, batch_size: int, accumulation: int, use_cpu: bool = True) -> None:
    torch.manual_seed(0)
    config = hf_rnn.RnnConfig(
        vocab_size=VOCAB,
        embedding_size=8,
        hidden_size=8,
        bidirectional=head != "lm",
        id2label={0: "O", 1: "B-X", 2: "I-X"},
        label2id={"O": 0, "B-X": 1, "I-X": 2},
        use_crf=head == "crf",
        crf_constraints="BIO" if head == "crf" else None,
    )
    model = (hf_rnn.RnnForCausalLM if head == "lm" else hf_rnn.RnnForTokenClassification)(config)
    args = TrainingArguments(
        output_dir=output_file + ".run",
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=2,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        use_cpu=use_cpu,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        ddp_timeout=240,  # a rank that lost its peer fails within 4 minutes instead of waiting 30 in a collective
        seed=0,
    )
    collator = DataCollatorForTokenClassification(_tokenizer())
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(head), data_collator=collator)
    trainer.train()
    if trainer.is_world_process_zero():
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, output_file)
    # Every rank waits for the save, then tears gloo down: a rank exiting with the group alive aborts
    # ("terminate called without an active exception") while the other still talks to it.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), use_cpu=sys.argv[5:] != ["cuda"])
