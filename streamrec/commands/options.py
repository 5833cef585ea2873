"""Tunables declared once per command: one `Opt` table gives the typer options, the config-file keys and the values.

A command lists its tunables as `{name: Opt(...)}` and takes them as `**values` (`with_options(table)` gives
typer one keyword option per entry: its type, default, help and bounds). An entry with a `field` sets that
(dotted) field of a settings dataclass and takes its type and default from it (`from_dataclass`), so a default
is written once, in the dataclass; `settings_from` writes the values back into it.

`read_config(path, table)` reads a TOML file whose keys are the same names (`d_model = 64`); an unknown key, a
wrong type or a value out of bounds is an error naming the file and the key. `merge(context, values, from_file)`: a flag
given on the command line (or by its env var) wins over the file, the file over the defaults.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Knobs:
    ...     steps: int = 30
    >>> table = from_dataclass(Knobs(), {"steps": Opt("Steps per cycle.", field="steps", min=1)})
    >>> table["steps"].default, settings_from(Knobs(), table, {"steps": 5})
    (30, Knobs(steps=5))
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer

__all__ = ["ConfigOption", "Opt", "from_dataclass", "merge", "read_config", "settings_from", "with_options"]

F = TypeVar("F", bound=Callable[..., Any])
_EXPLICIT = ("COMMANDLINE", "ENVIRONMENT")  # sources of a value given for this run (not a default)
S = TypeVar("S")

ConfigOption = typing.Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of option values, keys as the option names (`d_model = 64`); flags given here win.",
    ),
]


@dataclass(frozen=True)
class Opt:
    """One tunable of a command: a typer option and a config-file key."""

    help: str
    type: Any = None  # the value's type (for a `field` entry: the dataclass field's, see `from_dataclass`)
    default: Any = None  # (for a `field` entry: the dataclass field's)
    field: str = ""  # dotted path of the settings field it sets ("": read by the command itself)
    min: float | None = None
    max: float | None = None
    flags: tuple[str, ...] = ()  # typer's declarations, e.g. "--text-init/--no-text-init" (default: --<name>)
    envvar: str | None = None  # an env var giving the value when the flag is absent


def from_dataclass(base: object, table: Mapping[str, Opt]) -> dict[str, Opt]:
    """`table` with each `field` entry's type and default read from the dataclass instance `base`."""
    out = dict(table)
    for name, opt in table.items():
        if opt.field:
            *path, leaf = opt.field.split(".")
            owner = base
            for part in path:
                owner = getattr(owner, part)
            hint = typing.get_type_hints(type(owner))[leaf]
            out[name] = dataclasses.replace(opt, type=hint, default=getattr(owner, leaf))
    return out


def settings_from(base: S, table: Mapping[str, Opt], values: Mapping[str, Any]) -> S:
    """`base` with the `field` of every entry of `table` set to its value in `values`."""
    for name, opt in table.items():
        if opt.field and name in values:
            base = _replaced(base, opt.field.split("."), values[name])
    return base


def _replaced(obj: S, path: list[str], value: Any) -> S:
    head, *rest = path
    new = _replaced(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})  # type: ignore[type-var]  # `obj` is a dataclass instance


def with_options(table: Mapping[str, Opt]) -> Callable[[F], F]:
    """Give the decorated command (which takes `**values`) one keyword option per entry of `table`, for typer."""

    def decorate(func: F) -> F:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    opt.default, *opt.flags, help=opt.help, min=opt.min, max=opt.max, envvar=opt.envvar
                ),
                annotation=opt.type,
            )
            for name, opt in table.items()
        ]
        func.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]  # read by typer
        return func

    return decorate


def read_config(path: Path, table: Mapping[str, Opt]) -> dict[str, Any]:
    """The values of the TOML file `path` (keys: names of `table`), converted to each entry's type.

    Raises:
        typer.BadParameter: unreadable file, not TOML, an unknown key, a wrong type or a value out of bounds.
    """
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise typer.BadParameter(msg, param_hint="--config") from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not TOML: {exc}"
        raise typer.BadParameter(msg, param_hint="--config") from exc
    unknown = sorted(set(raw) - set(table))
    if unknown:
        msg = f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(table))})"
        raise typer.BadParameter(msg, param_hint="--config")
    return {name: _converted(path, name, value, table[name]) for name, value in raw.items()}


def _converted(path: Path, name: str, value: Any, opt: Opt) -> Any:
    """`value` of key `name` as `opt.type` (None in a union is not writable in TOML: the other type is used)."""
    kind = opt.type
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    converted: Any = None
    members: list[enum.Enum] = list(kind) if isinstance(kind, enum.EnumMeta) else []
    choices = [m.value for m in members]
    if kind is bool:
        converted = value if isinstance(value, bool) else None
    elif kind in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
        converted = kind(value) if kind is float or isinstance(value, int) else None
    elif kind in (str, Path) and isinstance(value, str):
        converted = kind(value)
    elif value in choices:
        converted = kind(value)
    if converted is None:
        expected = " | ".join(map(repr, choices)) if choices else getattr(kind, "__name__", str(kind))
        msg = f"{path}: {name} = {value!r}: expected {expected}"
        raise typer.BadParameter(msg, param_hint="--config")
    if (opt.min is not None and converted < opt.min) or (opt.max is not None and converted > opt.max):
        msg = f"{path}: {name} = {value!r} is outside [{opt.min}, {opt.max}]"
        raise typer.BadParameter(msg, param_hint="--config")
    return converted


def merge(context: typer.Context, values: Mapping[str, Any], from_file: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (the command's options) with `from_file` in place of those not given on the command line or env."""
    sources = {name: context.get_parameter_source(name) for name in values}
    given = {name for name, source in sources.items() if source is not None and source.name in _EXPLICIT}
    return {**values, **{name: value for name, value in from_file.items() if name not in given}}
