#!/usr/bin/env bash
# PTB word-level LM results in the README (validation perplexity), Zaremba et al. 2014 "small" recipe for each
# cell: 2 x 200, bptt 20, batch 20, SGD lr 1 halved every epoch after 4, gradient-norm clip 5, U[-0.1, 0.1] init.
# Usage: bash examples/reproduce_lm.sh [DATA_DIR] [OUT_DIR] [EPOCHS] [CELLS]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs}
EPOCHS=${3:-13}
PY=${PYTHON:-.venv/bin/python}
for cell in ${4:-lstm gru rnn}; do
  $PY examples/run_lm.py --train_file "$DATA/ptb/ptb.train.txt" --validation_file "$DATA/ptb/ptb.valid.txt" \
      --output_dir "$OUT/ptb-$cell-small" --cell_type "$cell" --embedding_size 200 --hidden_size 200 --num_layers 2 \
      --bptt 20 --per_device_train_batch_size 20 --per_device_eval_batch_size 20 --zaremba --learning_rate 1 \
      --max_grad_norm 5 --init_range 0.1 --decay_start 4 --lr_decay 2 --num_train_epochs "$EPOCHS" \
      --save_strategy no --eval_strategy no --logging_steps 500 --report_to none --disable_tqdm true --seed 1
done
