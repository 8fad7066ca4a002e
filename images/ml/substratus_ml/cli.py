"""The ``substratus-ml`` console script that the reference images' contract scripts call.

Sub-commands (options override environment variables, which override defaults)::

    substratus-ml init-tiny --corpus FILE [--corpus FILE ...] --out DIR [--steps N]
                            [--vocab-size 4096] [--n-layer 4] [--n-embd 128]
                            [--n-head 4] [--n-positions 256] [--batch-size 8]
                            [--block-size 64] [--lr 0.003]
    substratus-ml train [--model-dir /model/saved] [--out /model/trained]
                        [--logs-dir /model/logs] [--params-file /model/params.json]
                        [--checkpoint-dir /model/checkpoints] [--lora]
                        [--lr 0.0005] [--block-size 128] [--warmup-steps N] [--seed 42]
                        [--lora-r 8] [--lora-alpha 16] [--lora-targets NAMES]
                        [--checkpoint-steps 200] [--checkpoint-seconds 60]
        (reads TRAIN_DATA_PATH, TRAIN_DATA_LIMIT, TRAIN_BATCH_SIZE, TRAIN_EPOCHS, TRAIN_OUTPUT,
         TRAIN_CHECKPOINT_DIR and /model/params.json or PARAM_*; params override the flags,
         which are the image's defaults: substratus_ml/params.py)
    substratus-ml serve [--model-dir /model/saved] [--host 0.0.0.0] [--port 8080]
                        [--model-name NAME] [--max-batch 16] [--max-new-tokens 512]
                        [--adapters-dir /model/adapters]
        (reads SUBSTRATUS_MAX_BATCH, SUBSTRATUS_MAX_NEW_TOKENS and the other limits in settings.py)
    substratus-ml merge-adapter --model-dir DIR --adapter DIR --out DIR
    substratus-ml init-gemma --out DIR [--keep-gguf]

Exit codes: 0 ok, 1 failed (message on stderr), 2 usage or bad parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from substratus_ml.params import SPECS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="substratus-ml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("init-tiny", help="train a tokenizer and a tiny GPT-2 on local text")
    tiny.add_argument("--corpus", type=Path, action="append", required=True,
                      help="text or JSONL file (or directory); repeat for more")
    tiny.add_argument("--out", type=Path, required=True, help="where to save_pretrained")
    tiny.add_argument("--steps", type=int, default=300, help="pre-training steps (default 300)")
    tiny.add_argument("--vocab-size", type=int, default=4096)
    tiny.add_argument("--n-layer", type=int, default=4)
    tiny.add_argument("--n-embd", type=int, default=128)
    tiny.add_argument("--n-head", type=int, default=4)
    tiny.add_argument("--n-positions", type=int, default=256)
    tiny.add_argument("--batch-size", type=int, default=8)
    tiny.add_argument("--block-size", type=int, default=64)
    tiny.add_argument("--lr", type=float, default=3e-3)

    train = sub.add_parser("train", help="fine-tune /model/saved on TRAIN_DATA_PATH (train.sh)",
                           description="Flags set the image's defaults; spec.training.params "
                           "(/model/params.json or PARAM_* variables) override them.")
    train.add_argument("--model-dir", type=Path, default=Path("/model/saved"))
    train.add_argument("--out", type=Path, default=Path("/model/trained"))
    train.add_argument("--logs-dir", type=Path, default=Path("/model/logs"))
    train.add_argument("--params-file", type=Path, default=None,
                       help="the params JSON file (default /model/params.json)")
    train.add_argument("--checkpoint-dir", type=Path, default=None,
                       help="checkpoints, used when the directory exists (env TRAIN_CHECKPOINT_DIR, "
                       "default /model/checkpoints)")
    train.add_argument("--lora", action="store_true",
                       help="train a LoRA adapter (peft) instead of every weight, then merge it")
    for spec in SPECS:
        text = f"image default for {spec.name} ({spec.env}): {spec.meaning}"
        text += f"; built-in default {spec.default}" if spec.default is not None else ""
        train.add_argument(spec.flag, type=spec.kind, default=None, dest=spec.name,
                           metavar={int: "N", float: "X"}.get(spec.kind, "NAMES"),
                           help=text.replace("%", "%%"))  # argparse %-formats help

    serve = sub.add_parser("serve", help="serve the model over HTTP (serve.sh)")
    serve.add_argument("--model-dir", type=Path, default=Path("/model/saved"))
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--model-name", default=None, help="id shown by /v1/models")
    serve.add_argument("--max-batch", type=int, default=None,
                       help="requests decoded together (env SUBSTRATUS_MAX_BATCH, default 16)")
    serve.add_argument("--max-new-tokens", type=int, default=None,
                       help="upper bound per request (env SUBSTRATUS_MAX_NEW_TOKENS, default 512)")
    serve.add_argument("--adapters-dir", type=Path, default=None,
                       help="LoRA adapters to load at start-up, one per sub-directory "
                            "(env SUBSTRATUS_ADAPTERS_DIR, default /model/adapters)")

    merge = sub.add_parser("merge-adapter", help="merge a PEFT LoRA adapter into its base model")
    merge.add_argument("--model-dir", type=Path, default=Path("/model/saved"))
    merge.add_argument("--adapter", type=Path, required=True, help="the adapter directory")
    merge.add_argument("--out", type=Path, required=True, help="where to save_pretrained the merge")

    gemma = sub.add_parser("init-gemma", help="Gemma 3 270M into a model dir (converted from its GGUF)")
    gemma.add_argument("--out", type=Path, required=True)
    gemma.add_argument("--keep-gguf", action="store_true",
                       help="write the GGUF file itself instead of converting it once")

    notebook = sub.add_parser("notebook", help="the contract's notebook.sh: JupyterLab on 0.0.0.0:8888")
    notebook.add_argument("--root", type=Path, required=True, help="/model or /dataset")
    notebook.add_argument("--port", type=int, default=8888)
    return parser


def _init_tiny(args: argparse.Namespace) -> int:
    from substratus_ml.tiny import InitTinyArgs, TinySpec, init_tiny
    from substratus_ml.training import RunLog

    spec = TinySpec(vocab_size=args.vocab_size, n_layer=args.n_layer, n_embd=args.n_embd,
                    n_head=args.n_head, n_positions=args.n_positions)
    init_tiny(InitTinyArgs(args.corpus, args.out, args.steps, spec, args.batch_size,
                           args.block_size, args.lr), RunLog())
    return 0


def _train(args: argparse.Namespace) -> int:
    from substratus_ml.checkpoints import CHECKPOINT_DIR
    from substratus_ml.finetune import TrainDirs, TrainOptions, output_from_env, params_from_env, run_train
    from substratus_ml.params import PARAMS_FILE, read_raw, resolve

    raw = read_raw(os.environ, args.params_file or PARAMS_FILE)
    hyper = resolve(raw, {spec.name: getattr(args, spec.name) for spec in SPECS})
    params = params_from_env(os.environ, raw)
    options = TrainOptions(hyper=hyper, lora=args.lora, output=output_from_env(os.environ),
                           ignored_params=raw.ignored, params_source=raw.source)
    checkpoints = args.checkpoint_dir or Path(os.environ.get("TRAIN_CHECKPOINT_DIR", "").strip()
                                              or CHECKPOINT_DIR)
    run_train(params, TrainDirs(args.model_dir, args.out, args.logs_dir, checkpoints), options)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from substratus_ml.serve import serve
    from substratus_ml.settings import ServeSettings

    settings = ServeSettings.from_env(os.environ, model_dir=args.model_dir,
                                      model_name=args.model_name, max_batch=args.max_batch,
                                      max_new_tokens=args.max_new_tokens,
                                      adapters_dir=args.adapters_dir)
    serve(settings, args.host, args.port)
    return 0


def _merge_adapter(args: argparse.Namespace) -> int:
    from substratus_ml.merge import merge_adapter

    print(merge_adapter(args.model_dir, args.adapter, args.out))
    return 0


def _init_gemma(args: argparse.Namespace) -> int:
    from substratus_ml.gemma import init_gemma

    print(init_gemma(args.out, args.keep_gguf))
    return 0


def _notebook(args: argparse.Namespace) -> int:
    """Replace this process with JupyterLab (argv, no shell). The orchestrator sets
    JUPYTER_TOKEN, which Jupyter reads; without it Jupyter makes one and logs the URL."""
    (args.root / "logs").mkdir(parents=True, exist_ok=True)
    if not os.environ.get("JUPYTER_TOKEN"):
        print("notebook: JUPYTER_TOKEN is not set; using a random token (see the log URL)", file=sys.stderr)
    argv = ["jupyter", "lab", "--ServerApp.ip=0.0.0.0", f"--ServerApp.port={args.port}",
            f"--ServerApp.root_dir={args.root}", "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    os.execvp(argv[0], argv)
    return 1  # not reached


def _quiet_transformers() -> None:
    # Its advice (attention masks, max length of the tokenizer) does not apply to
    # whole-block training and only buries our own progress lines.
    from transformers.utils import logging

    logging.set_verbosity_error()


def _passive_openmp_threads() -> None:
    # OpenMP threads that spin while waiting make torch several times slower on a
    # shared or oversubscribed CPU (measured: 2 spinning threads 3-20x slower than
    # 1). libgomp reads this once, when torch is first imported, so set it first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _passive_openmp_threads()
    _quiet_transformers()
    handlers = {"init-tiny": _init_tiny, "train": _train, "serve": _serve,
                "init-gemma": _init_gemma, "notebook": _notebook, "merge-adapter": _merge_adapter}
    from substratus_ml.adapter_errors import AdapterError
    from substratus_ml.corpus import DataError
    from substratus_ml.finetune import ParamError
    from substratus_ml.loading import ModelDirError
    from substratus_ml.settings import SettingsError

    try:
        return handlers[args.command](args)
    except (ParamError, SettingsError) as exc:
        print(f"substratus-ml {args.command}: {exc}", file=sys.stderr)
        return 2
    except (DataError, ModelDirError, AdapterError, FileNotFoundError) as exc:
        print(f"substratus-ml {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
