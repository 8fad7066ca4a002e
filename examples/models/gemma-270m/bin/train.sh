#!/bin/sh
# Model contract, train step of the gemma-270m example: a LoRA fine-tune (peft) of
# Gemma 3 270M on $TRAIN_DATA_PATH (JSONL {"text": ...}), honouring TRAIN_DATA_LIMIT,
# TRAIN_BATCH_SIZE (blocks of 128 tokens per step) and TRAIN_EPOCHS. Only a rank-8
# adapter on the attention's four projections is trained (0.74M of 269M parameters),
# so the base needs no gradient and no optimizer state: on 2 busy CPU cores a step of
# 8 blocks took about 25 s. The adapter is merged and the model saved to
# /model/trained (bfloat16 safetensors, plus the adapter alone in adapter/); logs,
# metrics.json and progress.jsonl go to /model/logs. On a GPU it trains there.
exec substratus-ml train --lora --lora-r 8 --lora-alpha 16 \
  --lora-targets q_proj,k_proj,v_proj,o_proj --lr 0.002 --block-size 128
