"""Config plumbing shared by the hardware descriptions: fields with unit and source, validation, the assumption
table, strict (nested) construction and overrides. Standard library only."""

from __future__ import annotations

from dataclasses import MISSING, asdict, field, fields, is_dataclass, replace

HW_VERSION = 1


def F(default, unit: str, source: str):  # noqa: N802 - a field constructor, reads like a type
    """A dataclass field with its unit and source in the metadata."""
    return field(default=default, metadata={"unit": unit, "source": source})


def _positive(obj, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not v > 0:
            raise ValueError(f"{type(obj).__name__}.{n} must be > 0, got {v}")


def assumptions(obj, prefix: str = "") -> list[dict]:
    """Flatten a hardware description into rows {field, value, unit, source} (nested dataclasses included)."""
    rows = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            rows.extend(assumptions(v, f"{prefix}{f.name}."))
        elif "unit" in f.metadata:
            # an instance's own ``<field>_source`` (e.g. one channel's efficiency) beats the class-wide one
            source = getattr(obj, f"{f.name}_source", None) or f.metadata["source"]
            rows.append({"field": prefix + f.name, "value": v, "unit": f.metadata["unit"], "source": source})
    return rows


def to_dict(obj) -> dict:
    return asdict(obj)


def from_dict(cls, data: dict, path: str = ""):
    """Strict nested construction: unknown keys raise, naming the key path."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or cls.__name__}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{path or cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")
    kwargs = {}
    for k, v in data.items():
        sub = _dataclass_type(cls, known[k])
        kwargs[k] = from_dict(sub, v, f"{path}{k}.") if sub is not None and v is not None else v
    return cls(**kwargs)


def with_overrides(obj, overrides: dict, path: str = ""):
    """A copy of ``obj`` with (nested) fields replaced; unknown keys raise naming the key path."""
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"{path}{k}: unknown field of {type(obj).__name__}; known: {sorted(known)}")
        cur = getattr(obj, k)
        if is_dataclass(cur) and isinstance(v, dict):
            changes[k] = with_overrides(cur, v, f"{path}{k}.")
        elif _dataclass_type(type(obj), known[k]) is not None and isinstance(v, dict):
            changes[k] = from_dict(_dataclass_type(type(obj), known[k]), v, f"{path}{k}.")
        else:
            changes[k] = v
    try:
        return replace(obj, **changes)
    except TypeError as e:
        raise ValueError(f"{path or type(obj).__name__}: {e}") from None


def _dataclass_type(cls, f) -> type | None:
    """The nested config type of field ``f`` (nested configs are declared with a default_factory)."""
    if f.default_factory is not MISSING:
        return type(f.default_factory())
    return None
