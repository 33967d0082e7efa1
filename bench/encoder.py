"""hf_rnn's recurrent stack against a bare `nn.LSTM`/`nn.GRU`/`nn.RNN` stack with the same shapes, no padding,
forward + backward (goal: <= 1.05x).

    python bench/encoder.py [--device cuda] [--cell gru]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row
from torch import nn

import hf_rnn

SHAPES = [  # batch, length, input width, hidden size, layers, bidirectional
    (20, 35, 650, 650, 2, False),  # Zaremba medium LM
    (32, 40, 100, 256, 1, True),  # BiLSTM tagger
    (32, 40, 100, 256, 2, True),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--cell", default="lstm", choices=["rnn", "gru", "lstm"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = args.device
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.cell}, forward + backward")
    print("| B | T | in | hidden | layers | bidirectional | nn stack ms | hf_rnn ms | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for batch, length, width, hidden, layers, bidirectional in SHAPES:
        torch.manual_seed(0)
        x = torch.randn(batch, length, width, device=device, requires_grad=True)
        reference = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[args.cell](
            width, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True
        ).to(device)
        config = hf_rnn.RnnConfig(
            cell_type=args.cell,
            vocab_size=2,
            embedding_size=width,
            hidden_size=hidden,
            num_layers=layers,
            bidirectional=bidirectional,
        )
        model = hf_rnn.RnnModel(config).to(device)

        def bare():
            reference(x)[0].sum().backward()

        def ours():
            model(inputs_embeds=x, use_cache=False).last_hidden_state.sum().backward()

        times = compare_ms([bare, ours], device, args.repeats)
        print(
            f"| {batch} | {length} | {width} | {hidden} | {layers} | {bidirectional} | {times[0]:.2f} | "
            f"{times[1]:.2f} | {times[1] / times[0]:.2f}x |"
        )
        shape = f"B{batch} T{length} {width}->{hidden} x{layers}{' bi' if bidirectional else ''}"
        goal_row("encoder", f"hf_rnn / nn.{args.cell.upper()} stack time, {shape}", times[1] / times[0])


if __name__ == "__main__":
    main()
