"""A `Config` from and to text: named presets, `--set` overrides, the JSON beside every output.

Named presets live in `configs/<name>.py`, each defining `get_config() -> Config` (`load_preset`).
Any field can be overridden from the command line with `--set section.field=value`
(`apply_overrides`). The resolved config is written beside every stage's outputs (`save_config`)
and read back by the later stages and `load_encoder` (`read_config`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import types
import typing
from pathlib import Path
from typing import Any

from plasticc_jax.config import Config, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def preset_path(name: str) -> Path:
    """Resolve a preset name (`default`) or a path (`configs/tiny.py`) to a file."""
    if Path(name).is_file() and not name.endswith(".py"):
        raise ConfigError(f"--config {name}: a preset is a Python file whose name ends in .py")
    candidates = [Path(name)] if name.endswith(".py") else []
    candidates += [Path("configs") / f"{name}.py", PROJECT_ROOT / "configs" / f"{name}.py"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"no config preset {name!r} (looked for {', '.join(map(str, candidates))})")


def load_preset(name: str) -> Config:
    path = preset_path(name)
    spec = importlib.util.spec_from_file_location(f"plasticc_jax_preset_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = module.get_config()
    except Exception as error:  # the preset is the user's own Python: say where it failed
        where = f", line {error.lineno}" if isinstance(error, SyntaxError) else ""
        raise ConfigError(
            f"{path}{where}: the preset failed to load ({type(error).__name__}: {error}); it must "
            "define get_config() returning a Config (see configs/default.py)"
        ) from None
    if not isinstance(config, Config):
        raise ConfigError(f"{path}: get_config() must return a plasticc_jax.config.Config")
    return config


def _coerce(value: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            item = typing.get_args(hint)[0]
            parts = [p for p in value.replace(" ", "").strip("()[]").split(",") if p]
            return tuple(_coerce(p, item, key) for p in parts)
        if origin in (typing.Union, types.UnionType):
            return value
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return hint(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r}: expected {getattr(hint, '__name__', hint)}") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply `section.field=value` (or `field=value` at the top level) overrides."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        config = _replace_path(config, key.strip().split("."), value.strip(), key)
    return config


def _replace_path(node: Any, path: list[str], value: str, key: str) -> Any:
    hints = typing.get_type_hints(type(node))
    name = path[0]
    if name not in hints:
        choices = ", ".join(f.name for f in dataclasses.fields(node))
        raise ConfigError(f"unknown config field {key!r}: {type(node).__name__} has {choices}")
    if len(path) == 1:
        if dataclasses.is_dataclass(hints[name]):
            raise ConfigError(f"{key!r} is a section; set one of its fields")
        return dataclasses.replace(node, **{name: _coerce(value, hints[name], key)})
    child = getattr(node, name)
    if not dataclasses.is_dataclass(child):
        raise ConfigError(f"{key!r}: {name} is not a section")
    return dataclasses.replace(node, **{name: _replace_path(child, path[1:], value, key)})


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(raw: dict[str, Any]) -> Config:
    def build(cls: type, values: dict[str, Any]) -> Any:
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if dataclasses.is_dataclass(hints[f.name]):
                value = build(hints[f.name], value)
            elif typing.get_origin(hints[f.name]) is tuple:
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    return build(Config, raw)


def save_config(config: Config, path: Path) -> None:
    """Write the config as JSON (atomically)."""
    from plasticc_jax.io_utils import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def read_config(path: Path) -> Config:
    return from_dict(json.loads(Path(path).read_text()))
