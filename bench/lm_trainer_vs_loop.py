"""Truncated-BPTT language-model training through the Trainer (`examples/run_lm.py`'s `TbpttTrainer`) against a bare
PyTorch loop: same model, stream, windows, carried state, SGD and clipping (Zaremba et al. 2014). The issue's goal is
the Trainer path in <= 0.8x the bare loop's time on one GPU for the medium model, where per-step overhead dominates at
batch 20; on a CPU, no slower.

    python bench/lm_trainer_vs_loop.py [--medium] [--windows 200] [--device cuda]
"""

import argparse
import statistics
from pathlib import Path

import torch
from common import add_device_argument, alternate_runs, device_name, goal_row, quiet_training_args

import hf_rnn
from hf_rnn.data import read_text
from hf_rnn.training.tbptt import BpttWindows, TbpttTrainer
from hf_rnn.vocabulary import build_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]

SMALL = dict(hidden_size=200, embedding_size=200, bptt=20, dropout=0.0, init_range=0.1)  # Zaremba small
MEDIUM = dict(hidden_size=650, embedding_size=650, bptt=35, dropout=0.5, init_range=0.05)  # Zaremba medium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", default=str(ROOT.parent / "shared" / "data" / "ptb" / "ptb.train.txt"))
    parser.add_argument("--medium", action="store_true", help="2x650, bptt 35, dropout 0.5 (default: small 2x200)")
    parser.add_argument("--windows", type=int, default=200, help="windows per epoch (0: the whole stream)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    add_device_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    recipe = MEDIUM if args.medium else SMALL
    batch_size, bptt = 20, recipe["bptt"]

    lines = read_text(args.train_file)
    tokenizer = build_word_tokenizer(lines)
    vocab = tokenizer.get_vocab()
    ids = torch.tensor([vocab[word] for line in lines for word in line])
    if args.windows:
        ids = ids[: batch_size * bptt * args.windows + 1]
    data = BpttWindows(ids, batch_size, processes=1, bptt=bptt)
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=recipe["embedding_size"],
        hidden_size=recipe["hidden_size"],
        num_layers=2,
        dropout=recipe["dropout"],
        initializer_range=recipe["init_range"],
        forget_bias=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )

    def bare_loop() -> float:
        torch.manual_seed(0)
        model = hf_rnn.RnnForCausalLM(config).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        inputs, targets = data.inputs.to(device), data.targets.to(device)  # (rows, L)
        cache, losses = None, []
        for window in range(data.windows):
            span = slice(window * bptt, (window + 1) * bptt)
            outputs = model(input_ids=inputs[:, span], shift_labels=targets[:, span], cache=cache, use_cache=True)
            cache = outputs.cache.detach()
            optimizer.zero_grad()
            (outputs.loss * bptt).backward()  # summed over the window, averaged over the batch
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(outputs.loss.item())
        return statistics.mean(losses)

    def trainer_path() -> float:
        torch.manual_seed(0)
        model = hf_rnn.RnnForCausalLM(config)
        training = quiet_training_args(
            device,
            "/tmp/hf_rnn_bench_lm_trainer",
            per_device_train_batch_size=batch_size,
            learning_rate=1.0,
            optim="sgd",
            max_grad_norm=5.0,
            remove_unused_columns=False,
            label_names=["shift_labels"],
        )
        trainer = TbpttTrainer(model=model, args=training, train_dataset=data, loss_scale=bptt)
        return trainer.train().training_loss / bptt

    times, losses = alternate_runs({"bare loop": bare_loop, "Trainer": trainer_path}, device, args.rounds)
    tokens = data.windows * batch_size * bptt
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; PTB, Zaremba {'medium' if args.medium else 'small'}"
        f" 2x{recipe['hidden_size']}, batch {batch_size}, bptt {bptt}, {data.windows} windows ({tokens:,} tokens), "
        f"SGD lr 1, clip 5, median of {args.rounds}"
    )
    print("| path | s / run | tokens / s | mean training loss | time vs bare loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds in times.items():
        ratio = seconds / times["bare loop"]
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {losses[name]:.4f} | {ratio:.2f}x |")
    ratio = times["Trainer"] / times["bare loop"]
    if args.medium and device.type == "cuda":  # the README's goal is set for the medium model on a GPU
        goal_row("lm_trainer_vs_loop", "TbpttTrainer / bare loop time, medium", ratio, "<= 0.8x", ratio <= 0.8)
    else:
        goal_row("lm_trainer_vs_loop", f"TbpttTrainer / bare loop time, {'medium' if args.medium else 'small'}", ratio)


if __name__ == "__main__":
    main()
