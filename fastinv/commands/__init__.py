"""The `fastinv` subcommands.

Each is a module `fastinv.commands.<name>` exposing `HELP` (one line), `add_arguments(parser)`
and `run(args) -> int`. A command module imports only light modules at the top (configuration,
paths, errors; never torch) and nothing from another command, so that `fastinv --help` and
usage errors answer fast; the work is imported inside `run`.
"""

COMMANDS: tuple[str, ...] = ("world", "pretrain", "eval", "convert", "profile", "reproduce", "report")
