"""Command-line options generated from a config dataclass, so each setting is described once: its type,
default and help live on the dataclass field, and the option is made from them (as CleanRL's `Args` with tyro).

Each field becomes `--field-name` (underscores as dashes), parsed with the field's type (str, int, float or
bool; `X | None` parses as X). Bool fields get `--name` / `--no-name`. A field's metadata may hold:
  help     what the setting does (the option's help; the default is appended);
  choices  the values allowed (argparse refuses others);
  off      a command-line value that stands for None (`--target-kl 0`: no early stop);
  shown    the default as the help states it, where the value itself says little (None);
  cli      False to leave the field off the command line (set from code only).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")
_PARSERS = (str, int, float, bool)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass `cls` that are command-line options."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _parser_type(cls: type, f: dataclasses.Field) -> type:
    hint = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint not in _PARSERS:
        raise TypeError(f"{cls.__name__}.{f.name}: {hint} is no command-line type; give it metadata cli=False")
    return hint


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name}: a command-line field needs a default")


def add_config_arguments(p: argparse.ArgumentParser, cls: type) -> None:
    """One option per command-line field of dataclass `cls`, in field order (`p`: a parser or an argument group)."""
    for f in cli_fields(cls):
        flag, kind, default = "--" + f.name.replace("_", "-"), _parser_type(cls, f), _default(f)
        text = f.metadata.get("help", "")
        if default is None and "off" in f.metadata:
            default = f.metadata["off"]
        if kind is bool:
            action = p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            action = p.add_argument(flag, type=kind, default=default, choices=f.metadata.get("choices"))
        # Set after construction: some Python versions' BooleanOptionalAction append a default of their own.
        shown = f.metadata.get("shown", "%(default)s")
        action.help = f"{text} (default: {shown})" if text else f"(default: {shown})"


def config_from_args(cls: type[T], args: argparse.Namespace, **others: Any) -> T:
    """An instance of `cls` from the parsed options of add_config_arguments; `others` sets the remaining fields."""
    values = {}
    for f in cli_fields(cls):
        v = getattr(args, f.name)
        if "off" in f.metadata and v == f.metadata["off"]:
            v = None
        values[f.name] = v
    return cls(**values, **others)
