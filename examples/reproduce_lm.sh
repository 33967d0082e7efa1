#!/usr/bin/env bash
# PTB word-level LM results in the README (validation perplexity): the Zaremba et al. 2014 "small" architecture,
# 2 x 200, bptt 20, batch 20, summed window loss, SGD, gradient-norm clip 5, U[-0.1, 0.1] init, shortened to fit
# a CPU; validation perplexity after every epoch. Usage: bash examples/reproduce_lm.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs}
PY=${PYTHON:-.venv/bin/python}
run() {  # cell epochs learning-rate decay-start
  OMP_NUM_THREADS=1 $PY examples/run_lm.py --train_file "$DATA/ptb/ptb.train.txt" \
      --validation_file "$DATA/ptb/ptb.valid.txt" --output_dir "$OUT/ptb-$1-small" --cell_type "$1" \
      --embedding_size 200 --hidden_size 200 --num_layers 2 --bptt 20 --per_device_train_batch_size 20 \
      --per_device_eval_batch_size 20 --zaremba --learning_rate "$3" --max_grad_norm 5 --init_range 0.1 \
      --decay_start "$4" --lr_decay 2 --num_train_epochs "$2" --save_strategy no --eval_strategy epoch \
      --logging_steps 500 --report_to none --disable_tqdm true --seed 1 --overwrite_output_dir true
}
run lstm 6 1 4 &
run gru 6 0.5 4 &
run rnn 6 0.2 4
wait
