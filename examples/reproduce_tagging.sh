#!/usr/bin/env bash
# The tagging results in the README: UD English EWT UPOS, CoNLL-2000 chunking, WNUT-17 NER (dev splits).
# Usage: bash examples/reproduce_tagging.sh [DATA_DIR] [OUT_DIR]   (DATA_DIR defaults to ../shared/data)
# RUNS picks runs by name, e.g. RUNS="ud-upos-crf-char wnut17-crf-char" (default: all of them).
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs}
PY=${PYTHON:-.venv/bin/python}
COMMON=(--per_device_train_batch_size 32 --learning_rate 2e-3 --num_train_epochs 10 --train_sampling_strategy group_by_length
        --normalize_digits --min_frequency 2 --embedding_size 100 --hidden_size 256 --dropout 0.5
        --save_strategy no --eval_strategy no --report_to none --disable_tqdm true --seed 1 --overwrite_output_dir true)
CHARS=(--char_encoder lstm --char_embedding_size 25 --char_hidden_size 25)  # Lample et al. 2016
UD=(--train_file "$DATA/ud_en_ewt/en_ewt-ud-train.conllu" --validation_file "$DATA/ud_en_ewt/en_ewt-ud-dev.conllu")
CONLL=(--train_file "$DATA/conll2000/train.txt" --validation_fraction 0.1)
WNUT=(--train_file "$DATA/wnut17/wnut17train.conll" --validation_file "$DATA/wnut17/emerging.dev.conll")
RUNS=${RUNS:-ud-upos-crf-char-2x40-wide ud-upos-crf-char-2x30-wide ud-upos-crf-char-2x30-flair-dropout ud-upos-crf-char-2x20-wide ud-upos-crf-char-2x20-flair-dropout ud-upos-crf-char-2x20 ud-upos-crf-char-20 ud-upos-crf-char ud-upos-crf-char-locked ud-upos-crf ud-upos-softmax conll2000-crf-char conll2000-crf conll2000-semicrf-5 conll2000-crf-5 wnut17-crf-char-30 wnut17-crf-char wnut17-crf wnut17-semicrf}

run() {  # run NAME ARGS...: one training + dev evaluation into $OUT/NAME, when RUNS names it
  local name=$1; shift
  [[ " $RUNS " == *" $name "* ]] || return 0
  $PY examples/run_tagging.py --output_dir "$OUT/$name" "${COMMON[@]}" "$@"  # the last value of a flag wins
}
# the best dev scores: longer runs (later options override COMMON's)
run ud-upos-crf-char-2x20 "${UD[@]}" --use_crf "${CHARS[@]}" --char_hidden_size 50 --num_train_epochs 20 --num_layers 2
# 2 layers, char 50/50, flair's kind of dropout (one mask per sentence, whole words dropped)
UD2=("${UD[@]}" --use_crf "${CHARS[@]}" --char_hidden_size 50 --num_layers 2 --locked_dropout)
run ud-upos-crf-char-2x40-wide "${UD2[@]}" --embedding_size 200 --word_dropout 0.1 --num_train_epochs 40
run ud-upos-crf-char-2x30-wide "${UD2[@]}" --embedding_size 200 --word_dropout 0.1 --num_train_epochs 30
run ud-upos-crf-char-2x20-wide "${UD2[@]}" --embedding_size 200 --word_dropout 0.1 --num_train_epochs 20
run ud-upos-crf-char-2x30-flair-dropout "${UD2[@]}" --word_dropout 0.05 --num_train_epochs 30
run ud-upos-crf-char-2x20-flair-dropout "${UD2[@]}" --word_dropout 0.05 --num_train_epochs 20
run ud-upos-crf-char-20 "${UD[@]}" --use_crf "${CHARS[@]}" --char_hidden_size 50 --num_train_epochs 20
run wnut17-crf-char-30 "${WNUT[@]}" --use_crf "${CHARS[@]}" --lowercase --min_frequency 1 --per_device_train_batch_size 16 \
    --num_train_epochs 30
run ud-upos-crf-char "${UD[@]}" --use_crf "${CHARS[@]}"
run ud-upos-crf-char-locked "${UD[@]}" --use_crf "${CHARS[@]}" --locked_dropout  # flair's dropout: one mask per sentence
run ud-upos-crf "${UD[@]}" --use_crf
run ud-upos-softmax "${UD[@]}"
run conll2000-crf-char "${CONLL[@]}" --use_crf "${CHARS[@]}"
run conll2000-crf "${CONLL[@]}" --use_crf
# the semi-Markov CRF beside the CRF with the same budget (max_segment_length: the data's longest chunk)
run conll2000-semicrf-5 "${CONLL[@]}" --head_type semicrf --num_train_epochs 5
run conll2000-crf-5 "${CONLL[@]}" --head_type crf --num_train_epochs 5
run wnut17-crf-char "${WNUT[@]}" --use_crf "${CHARS[@]}"
run wnut17-crf "${WNUT[@]}" --use_crf
run wnut17-semicrf "${WNUT[@]}" --head_type semicrf
