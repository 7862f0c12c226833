"""The one Registry type: registration, lookup, order, and the same error for every unknown name."""
import pytest

from fastinv.datasets import DATASETS
from fastinv.errors import UsageError
from fastinv.eval.suites import SUITES
from fastinv.models import ARCHS, FORMATS
from fastinv.registry import Registry

REGISTRIES = {"architecture": ARCHS, "checkpoint format": FORMATS, "dataset": DATASETS, "suite": SUITES}


def test_register_by_decorator_or_call_keeps_order() -> None:
    registry: Registry[object] = Registry("widget")

    @registry.register("b")
    def build() -> str:
        return "built"

    assert registry.register("a", 1) == 1
    assert registry.names() == ["b", "a"] and list(registry) == [("b", build), ("a", 1)]
    assert registry.get("b") is build and build() == "built"
    assert "a" in registry and "c" not in registry and len(registry) == 2
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register("a", 2)


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registry_answers_an_unknown_name_with_a_usage_error_listing_the_valid_ones(kind: str) -> None:
    registry = REGISTRIES[kind]
    assert registry.kind == kind and len(registry) > 0
    with pytest.raises(UsageError) as info:
        registry.get("no-such-name")
    message = str(info.value)
    assert message.startswith(f"unknown {kind} 'no-such-name'; valid: ")
    assert message.split("; valid: ")[1] == ", ".join(registry.names())
    assert info.value.exit_code == 2 and "\n" not in message


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_entry_is_found_under_its_name(kind: str) -> None:
    registry = REGISTRIES[kind]
    for name, entry in registry:
        assert registry.get(name) is entry
        assert getattr(entry, "name", name) == name
