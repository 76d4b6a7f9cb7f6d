"""One strict base for every config dataclass: typed fields, versioned, JSON round trip (issue 16, item 3).

``@dataclass(frozen=True) class X(StrictConfig)`` gets

- type checking of every field at construction from its annotation, with no silent coercion: a ``bool`` field
  refuses ``"false"`` and ``0``, an ``int`` field refuses ``1.5`` and ``True``, a ``str`` field refuses ``3``;
  ``float`` accepts an int (stored as float); ``tuple[...]`` accepts a list (stored as a tuple); a nested
  ``StrictConfig`` field accepts its dict form. Errors name the class, the field and the bad value;
- ``to_dict()`` (plain JSON types, nested configs as dicts) and ``to_json()`` (sorted keys: byte-stable);
- ``from_dict(d)``: unknown keys and missing required keys are errors; ``version`` newer than the class's
  ``VERSION`` is refused; an older one is passed to ``cls.upgrade(d, version)`` (override to convert old files).

Subclasses validate their values in ``__post_init__`` after calling ``super().__post_init__()``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, ClassVar

__all__ = ["StrictConfig", "ConfigError", "check_value"]


class ConfigError(ValueError):
    """A config value of the wrong type or an unknown / missing key (a ValueError: callers catch those)."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def _tname(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp``; returns the normalised value (list -> tuple, int -> float)."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: must not be None (expected {_tname(tp)})")
        alts = [a for a in args if a is not type(None)]
        if len(alts) == 1:  # Optional[X]: X's own message (it names the nested field)
            return check_value(value, alts[0], where)
        for a in alts:
            try:
                return check_value(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_tname(tp)}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or type(value) not in {type(a) for a in allowed}:
            raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a dict, got {type(value).__name__} {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {check_value(k, kt, f"{where} key"): check_value(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    if value is None:
        raise ConfigError(f"{where}: must not be None (expected {_tname(tp)})")
    if tp is bool:
        if type(value) is not bool:
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if type(value) is not int:
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if type(value) not in (int, float):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, StrictConfig):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp.from_dict(value)
        raise ConfigError(f"{where}: expected a {tp.__name__} (or its dict), got {type(value).__name__}")
    if isinstance(tp, type):
        if isinstance(value, dict) and hasattr(tp, "from_dict"):  # a config class of its own kind
            return tp.from_dict(value)
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def _plain(v: Any) -> Any:
    if isinstance(v, StrictConfig) or (dataclasses.is_dataclass(v) and hasattr(v, "to_dict")):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


class StrictConfig:
    """Base of the frozen config dataclasses (see the module docstring)."""

    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            v = check_value(getattr(self, f.name), hints[f.name], f"{type(self).__name__}.{f.name}")
            object.__setattr__(self, f.name, v)
        if "version" in {f.name for f in dataclasses.fields(self)} and self.version != self.VERSION:
            raise ConfigError(f"{type(self).__name__}.version must be {self.VERSION}, got {self.version!r}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def upgrade(cls, d: dict, version: int) -> dict:
        """Convert the dict of an older ``version`` to the current layout (default: no older layouts exist)."""
        raise ConfigError(f"{cls.__name__}: version {version} is not readable by this fpqvar (reads {cls.VERSION})")

    @classmethod
    def from_dict(cls, d: Any):
        name = cls.__name__
        if not isinstance(d, dict):
            raise ConfigError(f"{name}: expected a JSON object, got {type(d).__name__} {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        if "version" in fields:
            v = d.get("version", cls.VERSION)
            if type(v) is not int or v < 1 or v > cls.VERSION:
                raise ConfigError(f"{name}: unsupported version {v!r} (this fpqvar reads versions 1..{cls.VERSION})")
            if v < cls.VERSION:
                d = cls.upgrade(dict(d), v)
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{name}: unknown keys {unknown} (known: {sorted(fields)})")
        missing = sorted(k for k, f in fields.items() if k not in d and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ConfigError(f"{name}: missing keys {missing}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>"):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source}: not valid JSON ({e})") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{source}: {e}") from None
