#!/bin/bash
# Model contract, train step of the gemma-270m example.
#
# Fine-tuning a 270M-parameter model on CPU takes about 35 s per step, far too slow
# for a demo, so this train.sh keeps the contract without training: it checks the
# dataset and the parameters, logs what a real run would do, and copies the model
# unchanged from /model/saved to /model/trained (which becomes the new model's
# /model/saved). Logs go to stdout/stderr and /model/logs/train.log.
set -euo pipefail
mkdir -p /model/logs /model/trained
LOG=/model/logs/train.log

log() { echo "train.sh: $*" | tee -a "$LOG"; }
fail() { echo "train.sh: ERROR: $1" | tee -a "$LOG" >&2; exit "$2"; }

log "gemma-270m: TRAIN_DATA_PATH=${TRAIN_DATA_PATH:-<unset>}" \
    "TRAIN_DATA_LIMIT=${TRAIN_DATA_LIMIT:-<unset>} TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-<unset>}" \
    "TRAIN_EPOCHS=${TRAIN_EPOCHS:-<unset>}"
[ -n "${TRAIN_DATA_PATH:-}" ] || fail "TRAIN_DATA_PATH is not set (expected /data/<dataset filename>)" 2
[ -e "$TRAIN_DATA_PATH" ] || fail "$TRAIN_DATA_PATH does not exist; is the dataset mounted at /data?" 1
log "dataset has $(grep -c . "$TRAIN_DATA_PATH" || true) non-empty lines"
log "CPU fine-tuning of Gemma 3 270M is not run in this example (about 35 s a step);" \
    "copying /model/saved to /model/trained unchanged"
cp -a /model/saved/. /model/trained/
log "done: $(du -sh /model/trained | cut -f1) in /model/trained"
