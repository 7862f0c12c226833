"""Allow `python -m fastinv ...`."""
from fastinv.cli import main

raise SystemExit(main())
