#!/bin/bash
# Dataset contract: write the corpus as JSONL to $LOAD_DATA_PATH.
# Logs go to stdout and to /dataset/logs/load.log; progress (one JSON object per
# line: step, total_steps, time, records, bytes) to /dataset/logs/progress.jsonl.
set -euo pipefail
if [ -z "${LOAD_DATA_PATH:-}" ]; then
  echo "load.sh: ERROR: LOAD_DATA_PATH is not set; it must name the output file," \
       "e.g. LOAD_DATA_PATH=/data/shakespeare.jsonl load.sh" >&2
  exit 2
fi
mkdir -p /dataset/logs
python /dataset/src/load.py --corpus /dataset/corpus --out "$LOAD_DATA_PATH" \
  --progress /dataset/logs/progress.jsonl 2>&1 |
  tee -a /dataset/logs/load.log
