"""The `fastinv` command: parses the subcommand and turns known errors into one-line messages."""
import argparse
import importlib
import sys

from fastinv import __version__
from fastinv.commands import COMMANDS
from fastinv.errors import FastinvError
from fastinv.log import setup_logging

USAGE_EXIT = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Report a usage error in one line and exit 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(USAGE_EXIT)


def build_parser() -> OneLineParser:
    """Build the full `fastinv` argument parser with every subcommand."""
    parser = OneLineParser(
        prog="fastinv",
        description="Pre-train MoCo-v2 models under chosen augmentation recipes and measure what "
        "they learned: synthetic and real-world invariance, and transfer to downstream tasks.",
    )
    parser.add_argument("--version", action="version", version=f"fastinv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for more); logs go to stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors in the log")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        module = importlib.import_module(f"fastinv.commands.{name}")
        child = sub.add_parser(name, help=module.HELP, description=module.HELP,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(child)
        child.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `fastinv` command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE_EXIT
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.handler(args) or 0)
    except FastinvError as exc:
        sys.stderr.write(f"fastinv {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"fastinv {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
