"""Logging set-up shared by every command."""
import logging

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0) -> None:
    """Configure the root `fastinv` logger: 0 = info, 1+ = debug, negative = warnings only."""
    level = logging.INFO if verbosity == 0 else logging.DEBUG if verbosity > 0 else logging.WARNING
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("fastinv").setLevel(level)


def get_logger(name: str) -> logging.Logger:
    """Return the logger for a fastinv module (pass `__name__`)."""
    return logging.getLogger(name if name.startswith("fastinv") else f"fastinv.{name}")
