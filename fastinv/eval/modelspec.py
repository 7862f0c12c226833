"""Which models an evaluation compares: `--model NAME=PATH`, `--model random`, `--fuse A+B`."""
from collections.abc import Sequence
from dataclasses import dataclass

from fastinv.errors import UsageError

FUSION_SEPARATOR = "+"


@dataclass(frozen=True)
class ModelSpec:
    """A backbone to evaluate: its display name, where its weights come from, its architecture."""

    name: str
    source: str
    arch: str | None = None


def parse_model(text: str, arch: str | None = None) -> ModelSpec:
    """Parse `NAME=PATH`, a bare `random`, or `NAME=random` into a ModelSpec."""
    if "=" not in text:
        if text != "random":
            raise UsageError(f"--model {text!r}: write NAME=PATH (or 'random' for a random-init backbone)")
        return ModelSpec("random", "random", arch)
    name, _, source = text.partition("=")
    if not name or not source:
        raise UsageError(f"--model {text!r}: both NAME and PATH are needed, as NAME=PATH")
    if FUSION_SEPARATOR in name:
        raise UsageError(f"--model {text!r}: '{FUSION_SEPARATOR}' is reserved for fusions (--fuse)")
    return ModelSpec(name, source, arch)


def parse_fusion(text: str, known: list[str]) -> tuple[str, list[str]]:
    """Parse `A+B[+C]` naming known models; return the fused name and its components."""
    parts = text.split(FUSION_SEPARATOR)
    if len(parts) < 2 or len(set(parts)) != len(parts):
        raise UsageError(f"--fuse {text!r}: name two or more different models joined by '{FUSION_SEPARATOR}'")
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise UsageError(f"--fuse {text!r}: unknown model(s) {', '.join(unknown)}; models: {', '.join(known)}")
    return text, parts


def width_units(widths: Sequence[float]) -> float:
    """How many width-1 backbones wide a model's features are: the sum over its parts (a fusion's
    components; a plain model is one part) of their width multipliers, each counted as at least 1
    (the paper's grid is that of one width-1 model; narrower models keep it)."""
    return float(sum(max(1.0, float(w)) for w in widths))


def fusion_grid(grid: tuple[float, float, int], width: float, shift: float) -> tuple[float, float, int]:
    """The probe's log10 weight-decay grid shifted for a model `width` width-1 backbones wide (`width_units`).

    The paper shifts logspace(-6, 5) with the feature width, one decade per width-1 backbone beyond
    the first: Spa+App -5..6, Def+Spa+App and ResNet50(x3) -4..7; `shift` is the decades per backbone.
    """
    low, high, count = grid
    offset = shift * (width - 1)
    return (low + offset, high + offset, count)
