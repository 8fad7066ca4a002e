#!/bin/bash
# Build step of the tiny-gpt image: pre-train on the fortune files from Debian's
# `fortunes` and `fortunes-min` packages (installed in ml-base) and save to /model/saved.
# Log goes to stdout and /model/logs/build.log.
set -euo pipefail
steps=${PRETRAIN_STEPS:-1200}
batch=${PRETRAIN_BATCH_SIZE:-8}
corpus=/model/src/corpus/fortunes.txt
mkdir -p /model/logs
{
  python /model/src/prepare_corpus.py --out "$corpus"
  echo "build-model: pre-training for $steps steps of batch $batch"
  substratus-ml init-tiny --corpus "$corpus" --out /model/saved --steps "$steps" --batch-size "$batch"
} 2>&1 | tee /model/logs/build.log
