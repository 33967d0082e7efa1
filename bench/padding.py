"""Padding-exact bidirectional stacks: hf_rnn's compaction + reversal-within-length against `nn.LSTM` on the same
padded batch, unpacked (fast but the backward direction reads padding) and packed (exact). Forward + backward.

    python bench/padding.py [--device cuda] [--cell lstm]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import hf_rnn

# batch, length, input width, hidden size, lengths drawn from [low * length, high * length] (one row full length);
# the last is as ragged as random batches of UD EWT sentences (~35 % real tokens)
SHAPES = [(32, 40, 100, 256, 0.5, 1.0), (128, 60, 100, 256, 0.5, 1.0), (32, 60, 100, 256, 0.125, 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--cell", default="lstm", choices=["rnn", "gru", "lstm"])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = args.device
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.layers}-layer bidirectional {args.cell}")
    print(
        "| B | T | real tokens | unpacked nn (reads padding) ms | packed nn ms | hf_rnn ms | hf_rnn / unpacked | "
        "hf_rnn / packed |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch, length, width, hidden, low, high in SHAPES:
        torch.manual_seed(0)
        lengths = torch.randint(int(low * length), int(high * length) + 1, (batch,))
        lengths[0] = length
        mask = (torch.arange(length) < lengths[:, None]).to(device)
        x = torch.randn(batch, length, width, device=device, requires_grad=True)
        reference = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[args.cell](
            width, hidden, num_layers=args.layers, bidirectional=True, batch_first=True
        ).to(device)
        config = hf_rnn.RnnConfig(
            cell_type=args.cell,
            vocab_size=2,
            embedding_size=width,
            hidden_size=hidden,
            num_layers=args.layers,
            bidirectional=True,
        )
        model = hf_rnn.RnnModel(config).to(device)

        def unpacked():
            reference(x)[0].sum().backward()

        def packed():
            sequence = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            pad_packed_sequence(reference(sequence)[0], batch_first=True)[0].sum().backward()

        def ours():
            model(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state.sum().backward()

        times = compare_ms([unpacked, packed, ours], device, args.repeats)
        print(
            f"| {batch} | {length} | {lengths.sum().item() / (batch * length):.0%} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | "
            f"{times[2] / times[0]:.2f} | {times[2] / times[1]:.2f} |"
        )
        goal_row("padding", f"hf_rnn / packed time, {args.cell} B{batch} T{length}", times[2] / times[1])


if __name__ == "__main__":
    main()
