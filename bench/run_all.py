"""Run every benchmark on one device and write their tables and a summary of the ratios beside their goals.

    python bench/run_all.py [--device cuda] [--output runs/bench-cuda.md] [--only crf cells] [--flair_python PATH]

Each benchmark runs in its own process (as `python bench/<name>.py --device ...`) and prints its Markdown table
plus "goal row" lines (bench/common.py `goal_row`): this script gathers those into one table (bench, figure, ratio,
goal, met) at the top of the output file and prints it, followed by each benchmark's own output. flair_tagger needs
flair in a second environment (`--flair_python`), quantize the CPU (torch's int8 kernels): both are left out
otherwise, and said so.
"""

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

import torch
from common import GOAL_MARK, chosen_device, device_name

HERE = Path(__file__).resolve().parent
BENCHES = (
    "crf",
    "tagger_step",
    "hot_path",
    "padding",
    "encoder",
    "cells",
    "generate",
    "quantize",
    "trainer_vs_loop",
    "lm_trainer_vs_loop",
    "flair_tagger",
)


def skipped(name: str, device: torch.device, flair_python: str | None) -> str | None:
    """Why `name` cannot run here, or None."""
    if name == "quantize" and device.type != "cpu":
        return "torch's dynamic int8 kernels run on the CPU only"
    if name == "flair_tagger" and not flair_python:
        return "needs --flair_python (flair 0.15 requires transformers < 5: a second environment)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", type=chosen_device, help="cpu (the default) or cuda[:N]")
    parser.add_argument("--output", type=Path, help="the Markdown file to write (default: runs/bench-<device>.md)")
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run these benchmarks only")
    parser.add_argument("--flair_python", help="the python of an environment with flair 0.15, for flair_tagger")
    args = parser.parse_args()
    output = args.output or HERE.parent / "runs" / f"bench-{args.device.type}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    rows, sections, failed = [], [], []
    for name in args.only or BENCHES:
        reason = skipped(name, args.device, args.flair_python)
        if reason:
            sections.append(f"## {name}\n\nnot run: {reason}\n")
            continue
        command = [sys.executable, str(HERE / f"{name}.py"), "--device", str(args.device)]
        command += ["--flair_python", args.flair_python] if name == "flair_tagger" else []
        print(f"# {' '.join(command[1:])}", flush=True)
        run = subprocess.run(command, cwd=HERE, capture_output=True, text=True)
        lines = run.stdout.splitlines()
        rows += [line.removeprefix(GOAL_MARK) for line in lines if line.startswith(GOAL_MARK)]
        text = "\n".join(line for line in lines if not line.startswith(GOAL_MARK))
        if run.returncode:
            failed.append(name)
            text += f"\n\nfailed (exit {run.returncode}):\n\n```\n{run.stderr[-3000:]}\n```"
        print(text, flush=True)
        sections.append(f"## {name}\n\n`python bench/{name}.py --device {args.device}`\n\n{text}\n")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = [
        f"# Benchmarks on {device_name(args.device)}, torch {torch.__version__}, {stamp}",
        "",
        "| bench | figure | ratio | goal | met |",
        "| --- | --- | ---: | --- | --- |",
        *rows,
    ]
    output.write_text("\n".join(summary) + "\n\n" + "\n".join(sections), encoding="utf-8")
    print("\n".join(summary) + f"\n\nwritten to {output}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (their errors are in {output})")


if __name__ == "__main__":
    main()
