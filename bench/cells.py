"""minGRU / minLSTM (hf_rnn's parallel scan) against `nn.GRU` / `nn.LSTM`, and the sLSTM (a step loop in eager
torch) against `nn.LSTM`: training throughput and activation memory.

Forward + backward of the recurrent stack alone, no padding, at a tagger and an LM shape and over growing lengths
T = 64 ... 2048 (one layer, small batch), where the step-by-step cells pay T sequential steps and the scans one pass.
All five models run round-robin in the same process (bench/common.py), so a busy machine slows them alike.
Memory is what autograd saves for the backward pass (the tensors kept between forward and backward, each storage
counted once): device-independent, and what grows with B x T in training.

    python bench/cells.py [--device cuda] [--repeats 5] [--max_length 2048]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row
from torch import nn

import hf_rnn

SHAPES = [  # name, batch, length, input width, hidden size, layers, bidirectional
    ("BiLSTM tagger", 32, 40, 100, 256, 1, True),
    ("Zaremba medium LM", 20, 35, 650, 650, 2, False),
]
LENGTHS = (64, 128, 256, 512, 1024, 2048)  # at batch 8, width 128, one layer
PAIRS = (("gru", "mingru"), ("lstm", "minlstm"), ("lstm", "slstm"))  # (torch's cell, hf_rnn's cell beside it)


def display_name(cell_type: str) -> str:
    return hf_rnn.cells.CELLS[cell_type].display_name


def models(width: int, hidden: int, layers: int, bidirectional: bool, device: torch.device) -> dict:
    """The stacks by name: torch's own `nn.GRU`/`nn.LSTM` and hf_rnn's cells of `PAIRS`, same shapes."""
    stacks = {}
    for torch_cell, our_cell in PAIRS:
        module = {"gru": nn.GRU, "lstm": nn.LSTM}[torch_cell]
        reference = module(width, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        stacks.setdefault(f"nn.{torch_cell.upper()}", reference.to(device))
        config = hf_rnn.RnnConfig(
            cell_type=our_cell,
            vocab_size=2,
            embedding_size=width,
            hidden_size=hidden,
            num_layers=layers,
            bidirectional=bidirectional,
        )
        stacks[display_name(our_cell)] = hf_rnn.RnnModel(config).to(device)
    return stacks


def step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model, hf_rnn.RnnModel):
        return model(inputs_embeds=x, use_cache=False).last_hidden_state
    return model(x)[0]


def saved_mib(model: nn.Module, x: torch.Tensor) -> float:
    """MiB that autograd keeps for the backward pass of one forward (each storage once)."""
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step(model, x).sum().backward()
    return sum(storages.values()) / 2**20


def measure(batch: int, length: int, width: int, hidden: int, layers: int, bidirectional: bool, args) -> dict:
    """{name: (tokens/s, saved MiB)}, the timings interleaved."""
    device = args.device
    torch.manual_seed(0)
    x = torch.randn(batch, length, width, device=device, requires_grad=True)
    stacks = models(width, hidden, layers, bidirectional, device)
    runs = [lambda model=model: step(model, x).sum().backward() for model in stacks.values()]
    times = compare_ms(runs, device, args.repeats, warmup=1)
    return {
        name: (batch * length / (ms / 1e3), saved_mib(model, x)) for (name, model), ms in zip(stacks.items(), times)
    }


def row(label: str, results: dict) -> str:
    cells = []
    for torch_cell, our_cell in PAIRS:
        (base, base_mib), (ours, ours_mib) = results[f"nn.{torch_cell.upper()}"], results[display_name(our_cell)]
        cells += [f"{base:,.0f}", f"{ours:,.0f}", f"{ours / base:.2f}x", f"{base_mib:.1f} / {ours_mib:.1f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def min_cells_goal(label: str, results: dict) -> None:
    """The issue's goal: minLSTM's training tokens/s at least minGRU's at every shape."""
    ratio = results["minLSTM"][0] / results["minGRU"][0]
    goal_row("cells", f"minLSTM / minGRU tokens/s, {label}", ratio, ">= 1.00x", ratio >= 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max_length", type=int, default=2048)
    args = parser.parse_args()
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; forward + backward")
    print("training tokens/s (higher is better) and MiB saved for backward (nn / hf_rnn)")
    header = []
    for torch_cell, our_cell in PAIRS:
        base, ours = torch_cell.upper(), display_name(our_cell)
        header += [f"nn.{base} tok/s", f"{ours} tok/s", f"{ours}/{base}", f"MiB {base} / {ours}"]
    print("| shape | " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * len(header))
    for name, batch, length, width, hidden, layers, bidirectional in SHAPES:
        label = f"{name} (B{batch} T{length} {width}->{hidden} x{layers}{' bi' if bidirectional else ''})"
        results = measure(batch, length, width, hidden, layers, bidirectional, args)
        print(row(label, results), flush=True)
        min_cells_goal(label, results)
    for length in (n for n in LENGTHS if n <= args.max_length):
        label, results = f"T = {length} (B8 128->128 x1)", measure(8, length, 128, 128, 1, False, args)
        print(row(label, results), flush=True)
        min_cells_goal(label, results)


if __name__ == "__main__":
    main()
