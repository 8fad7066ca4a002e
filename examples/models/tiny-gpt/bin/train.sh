#!/bin/sh
# Model contract: fine-tune /model/saved on $TRAIN_DATA_PATH (JSONL {"text": ...}),
# honouring TRAIN_DATA_LIMIT, TRAIN_BATCH_SIZE and TRAIN_EPOCHS; writes the model to
# /model/trained and logs to stdout and /model/logs.
exec substratus-ml train
