"""How table values are shown: decimals, the best value per column, missing cells."""
from fastinv.results import Table

MISSING = "—"
BULLET = "•"


def decimals(table: Table) -> int:
    """3 decimals when every value lies in [-1, 1] (cosine, R^2, accuracy, correlation), else 2."""
    values = [v for row in table.rows.values() for v in row.values() if v is not None]
    return 3 if values and all(abs(v) <= 1.0 for v in values) else 2


def format_number(value: float | None, places: int) -> str:
    """A value with `places` decimals (no '-0.000'), or the missing-cell mark for None."""
    if value is None:
        return MISSING
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def best_rows(table: Table, column: str) -> set[str]:
    """Rows holding the best value of `column` by `table.better` (ties all count); empty if no ranking.

    A column needs at least two measured values to have a best one.
    """
    if table.better == "none":
        return set()
    measured = {name: row[column] for name, row in table.rows.items() if row.get(column) is not None}
    if len(measured) < 2:
        return set()
    target = (min if table.better == "lower" else max)(measured.values())
    return {name for name, value in measured.items() if value == target}
