"""A `Config` from and to text: named presets, `--set` overrides, the JSON beside every output.

Named presets live in `plasticc_jax/configs/<name>.py` (or `configs/<name>.py` in the project
folder), each defining `get_config() -> Config` (`load_preset`).
Any field can be overridden from the command line with `--set section.field=value`
(`apply_overrides`). The resolved config is written beside every stage's outputs (`save_config`)
and read back by the later stages and `load_encoder` (`read_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from plasticc_jax.config import Config, ConfigError

# The presets shipped with the package; a `configs/` folder in the project folder comes first.
PRESETS = Path(__file__).resolve().parent / "configs"


def preset_path(name: str, project: Path = Path(".")) -> Path:
    """Resolve a preset name (`default`: `project/configs/`, then the package's) or a path
    (`configs/tiny.py`, relative to the current folder) to a file."""
    if Path(name).is_file() and not name.endswith(".py"):
        raise ConfigError(f"--config {name}: a preset is a Python file whose name ends in .py")
    folders = [f for f in (project / "configs", PRESETS) if f.is_dir()]
    if name.endswith(".py"):
        candidates = [Path(name)]
    elif "/" in name:  # a path without its ending (`configs/tiny`)
        candidates = [Path(f"{name}.py")]
    else:
        candidates = [folder / f"{name}.py" for folder in folders]
    for path in candidates:
        if path.is_file() and not path.stem.startswith("_"):  # `__init__` is no preset
            return path
    names = sorted({p.stem for folder in folders for p in folder.glob("[!_]*.py")})
    if name.endswith(".py"):  # a path: the other files of its folder are no presets
        presets = f" ({', '.join(names)})" if names else ""
        raise ConfigError(
            f"--config {name}: no such file; give a preset file's path, or the name of a "
            f"preset{presets}"
        )
    hint = _did_you_mean(name, names)
    presets = f"; presets: {', '.join(names)}" if names else ""
    raise ConfigError(
        f"no config preset {name!r}{hint} (looked for {', '.join(map(str, candidates))}{presets})"
    )


def _did_you_mean(given: str, choices: list[str]) -> str:
    """` (did you mean X?)` for the choice closest to a mistyped name (its case aside), else ""."""
    folded = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(given.lower(), list(folded), n=1, cutoff=0.75)
    return f" (did you mean {folded[close[0]]}?)" if close else ""


def _field_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every setting's `section.field` key (`name` at the top level)."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _field_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _key_hint(key: str) -> str:
    """Which setting a mistyped key means: the closest key (`trian.seed`: train.seed), else the
    field of that name in every section (`batch_size`: train.batch_size or eval.batch_size)."""
    keys, key = _field_keys(), key.strip()
    close = _did_you_mean(key, keys) if "." in key else ""
    leaf = key.rpartition(".")[2]
    same = [k for k in keys if k.rpartition(".")[2] == leaf and k != key]
    sections = {k.partition(".")[0] for k in keys if "." in k}
    if len(same) > 1 and key.partition(".")[0] in sections:  # a real section, the wrong one
        close = ""  # every section's field of that name (`data.batch_size`), not the nearest
    return close or (f" (did you mean {' or '.join(same)}?)" if same else _did_you_mean(key, keys))


def load_preset(name: str, project: Path = Path(".")) -> Config:
    path = preset_path(name, project)
    spec = importlib.util.spec_from_file_location(f"plasticc_jax_preset_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = module.get_config()
    # The preset is the user's own Python: say where it failed (sys.exit in it too, which
    # ended the command with no message).
    except (Exception, SystemExit) as error:
        where = f", line {error.lineno}" if isinstance(error, SyntaxError) else ""
        raise ConfigError(
            f"{path}{where}: the preset failed to load ({type(error).__name__}: {error}); it must "
            f"define get_config() returning a Config (see {PRESETS / 'default.py'})"
        ) from None
    if not isinstance(config, Config):
        raise ConfigError(f"{path}: get_config() must return a plasticc_jax.config.Config")
    try:
        # Through its JSON form, as config.json is read: a list where a tuple belongs
        # (`hidden=[64]`) becomes one (it failed in training, unhashable: an audit), and a value
        # of the wrong type (`max_epochs="5"`) is named.
        return from_dict(to_dict(config))
    except ConfigError as error:
        raise ConfigError(f"{path}: get_config() returned {error}") from None


def _coerce(value: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            item = typing.get_args(hint)[0]
            inner = value.strip().strip("()[]").strip()
            # Spaces around a fusion item's colon are no separator (`latent_knn: 3`).
            parts = [re.sub(r"\s*:\s*", ":", p.strip()) for p in inner.split(",")] if inner else []
            if parts and not parts[-1]:  # one trailing comma, as Python's `(6,)`
                parts.pop()
            if "" in parts:  # `6,,64`: a lost item, not a shorter list
                raise ConfigError(f"{key}={value!r}: an empty item between commas")
            if any(len(p.split()) > 1 for p in parts):  # `64 32` was read as 6432 (an audit)
                raise ConfigError(f"{key}={value!r}: separate the items with commas (64,32)")
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
        raise ConfigError(
            f"unknown config field {key!r}{_key_hint(key)}: {type(node).__name__} has {choices}"
        )
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
    """The config of its JSON form (`to_dict`). Fields absent take their defaults and unknown
    ones are ignored (the config of an earlier release still reads).

    Raises:
        ConfigError: a value of the wrong JSON type (`"true"` for a flag, text for a list).
    """

    def build(cls: type, values: Any, where: str) -> Any:
        if not isinstance(values, dict):
            raise ConfigError(f"{where or 'the config'}: expected a section (a JSON object)")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            key = f"{where}.{f.name}" if where else f.name
            if dataclasses.is_dataclass(hints[f.name]):
                kwargs[f.name] = build(hints[f.name], values[f.name], key)
            else:
                kwargs[f.name] = _json_value(values[f.name], hints[f.name], key)
        return cls(**kwargs)

    return build(Config, raw, "")


def _json_value(value: Any, hint: Any, key: str) -> Any:
    """A JSON value checked against a field's type (tuples from lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list) and isinstance(value, list | tuple):
        items = [_json_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        return {k: _json_value(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, list, dict):
        wanted = "a JSON object" if origin is dict else "a JSON list"
    elif hint is bool:
        if isinstance(value, bool):
            return value
        wanted = "true or false"
    elif hint in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (hint is float or isinstance(value, int) or value.is_integer()):
            return hint(value)
        wanted = "a whole number" if hint is int else "a number"
    elif hint is str:
        if isinstance(value, str):
            return value
        wanted = "text"
    else:  # any other type (none in `Config` today): left to `config.validate`
        return value
    raise ConfigError(f"{key}={value!r}: expected {wanted}")


def save_config(config: Config, path: Path) -> None:
    """Write the config as JSON (atomically)."""
    from plasticc_jax.io_utils import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def read_config(path: Path) -> Config:
    return from_dict(json.loads(Path(path).read_text()))
