"""The `fastinv` subcommands.

Each built subcommand is a module `fastinv.commands.<name>` exposing `HELP` (one line),
`add_arguments(parser)` and `run(args) -> int`. A name listed here without such a module is
announced in `--help` and answers "not built yet" with exit code 2.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandInfo:
    """A subcommand's name and the one-line summary shown before it is built."""

    name: str
    summary: str


COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo("world", "generate the embedded synthetic world (JPEGs + latents + groups)"),
    CommandInfo("pretrain", "pre-train a MoCo-v2 model under an augmentation recipe"),
    CommandInfo("eval", "measure invariances and transfer of trained models"),
    CommandInfo("convert", "convert an image folder to another format (FFCV .beton)"),
    CommandInfo("profile", "time the loader, trainer or evaluation stage by stage"),
    CommandInfo("reproduce", "reproduce the paper in miniature on the synthetic world"),
    CommandInfo("report", "re-render a report from an evaluation's results.json"),
)
