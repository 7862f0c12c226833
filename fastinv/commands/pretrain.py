"""`fastinv pretrain`: MoCo-v2 pre-training under an augmentation recipe (SPEC section 1)."""
import argparse
import json
import os

from fastinv.paths import existing_dir
from fastinv.train.flags import add_training_arguments, config_from_args, errors_in_flag_terms

HELP = "pre-train a MoCo-v2 model under an augmentation recipe (resumable; torchrun for several processes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv pretrain`; defaults are the MoCo-v2 reference settings."""
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train as the flags say (the configuration is checked once, by train) and print a JSON
    summary (rank 0)."""
    from fastinv.models import parse_arch
    from fastinv.train.loop import train

    cfg = config_from_args(args)
    parse_arch(cfg.model.arch)
    if not cfg.data.root.endswith(".beton"):
        existing_dir(cfg.data.root)
    with errors_in_flag_terms():
        summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out": str(summary.out), "step": summary.step, "total_steps": summary.total_steps,
                          "checkpoint": str(summary.checkpoint),
                          "backbone": str(summary.backbone) if summary.backbone else None,
                          "loss": summary.last_loss, "knn_top1": summary.knn_top1}))
    return 0
