"""Typed YAML configs: nested dataclasses read from a file plus `--set key=value` overrides.

`load_config(cls, path, overrides)` reads the YAML, applies the overrides, converts every value to
the declared type and runs each section's `validate(prefix)`, so an unknown key, a wrong type or
an impossible value fails before anything expensive starts, with a one-line message naming the
dotted key. Training, evaluation and benchmark entry points all read their files through here.

The command line those entry points share is here too: :func:`config_parser` (``--config FILE
--output-dir DIR --set key=value``) and :func:`run_command`, which turns user errors into one
line on stderr (exit 1) and an interrupt into exit 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from lagernvs.runlock import RunLockedError

__all__ = [
    "TRACEBACK_ENV",
    "USER_ERRORS",
    "Terminated",
    "apply_overrides",
    "config_error",
    "config_parser",
    "from_dict",
    "join_key",
    "load_config",
    "require",
    "run_command",
    "to_dict",
]

T = TypeVar("T")


def config_error(key: str, message: str) -> ValueError:
    """The one-line error for a bad value of config key ``key``."""
    return ValueError(f"config key '{key}': {message}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp` or raise a ValueError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise config_error(key, f"expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ValueError as error:
                errors.append(error)
        raise config_error(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise config_error(key, f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise config_error(key, f"expected a list ({_type_name(tp)}), got {value!r}")
        if origin is list:
            return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise config_error(
                key, f"expected {len(args)} values ({_type_name(tp)}), got {value!r}"
            )
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise config_error(key, f"expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise config_error(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise config_error(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads `4e-4` (no dot) as a string; accept any string float() understands.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise config_error(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise config_error(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise config_error(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"config field '{key}' has unsupported annotation {tp!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a plain mapping, checking keys and types, then validate it."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ValueError(
            f"unknown config key '{join_key(prefix, unknown[0])}'; valid keys in {where}: "
            f"{', '.join(sorted(fields))}"
        )
    values = {}
    for name, spec in fields.items():
        key = join_key(prefix, name)
        if name in data:
            values[name] = _convert(data[name], hints[name], key)
        elif dataclasses.is_dataclass(hints[name]):  # validate default sections too
            values[name] = from_dict(hints[name], {}, key)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise config_error(key, "is required but missing")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(prefix)
    return obj


def join_key(prefix: str, name: str) -> str:
    """Dotted key ``prefix.name`` (just ``name`` at the top level)."""
    return f"{prefix}.{name}" if prefix else name


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` strings (values parsed as YAML) to a nested mapping in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.sub=value (e.g. optim.lr=1e-4)")
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise config_error(
                    ".".join(parts[: depth + 1]), f"is a value, cannot set '{key}' inside it"
                )
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ValueError(
                f"override {item!r}: the value is not valid YAML ({error.problem}); quote it"
            ) from None
    return data


def config_parser(
    prog: str, description: str, config_help: str, set_example: str
) -> argparse.ArgumentParser:
    """The `--config FILE --output-dir DIR [--set key=value ...]` parser every entry point uses."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--output-dir", required=True, type=Path, help="run folder (resumable)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. {set_example} (repeatable)",
    )
    return parser


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RunLockedError)
"""What a command reports as one line: bad input, files, a busy run folder."""
TRACEBACK_ENV = "LAGERNVS_TRACEBACK"
"""Set to 1 to get the traceback of an unexpected error instead of its one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanups run."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _during_interrupt(error: BaseException) -> bool:
    """Whether ``error`` was raised while handling an interrupt (a cleanup that broke)."""
    context = error.__context__
    while context is not None:
        if isinstance(context, KeyboardInterrupt):
            return True
        context = context.__context__
    return False


def run_command(
    prog: str,
    action: Callable[[], int | None],
    errors: tuple[type[BaseException], ...] = USER_ERRORS,
) -> int:
    """Run a command's ``action`` and return its exit code.

    ``errors`` become ``PROG: error: <one line>`` on stderr and exit 1; any other exception
    too, said to be unexpected (its traceback with ``LAGERNVS_TRACEBACK=1``); Ctrl-C exits 130
    and SIGTERM 143 (after the cleanups an interrupt runs), each said in one line.
    """
    try:
        with _sigterm_raises():
            result = action()
    except KeyboardInterrupt as interrupt:
        return _interrupted(prog, interrupt)
    except errors as error:
        if _during_interrupt(error):  # e.g. a pipe that broke under the same Ctrl-C
            return _interrupted(prog, KeyboardInterrupt())
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # unforeseen: still one line, the traceback on request
        if _during_interrupt(error):
            return _interrupted(prog, KeyboardInterrupt())
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{prog}: error: {_unexpected(error)}", file=sys.stderr)
        return 1
    return int(result or 0)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())  # one line, whatever the exception holds


def _unexpected(error: Exception) -> str:
    """The line for an error no check foresaw (out of memory is said as such)."""
    text = _one_line(error)
    if isinstance(error, MemoryError) or "out of memory" in text or "can't allocate" in text:
        return f"out of memory ({text[:300]}); use smaller sizes, fewer views or another device"
    return (
        f"unexpected {type(error).__name__}: {text[:300]} (an input no check foresaw, or a bug; "
        f"{TRACEBACK_ENV}=1 shows the traceback)"
    )


def _interrupted(prog: str, interrupt: KeyboardInterrupt) -> int:
    signum = getattr(interrupt, "signum", signal.SIGINT)
    print(f"{prog}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + int(signum)


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML `path` (None = all defaults), apply `overrides` and return a validated `cls`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"config file {path} is a folder; give a YAML file")
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or "invalid syntax"
            raise ValueError(
                f"config file {path} is not valid YAML{where}: {problem}; fix the file"
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections, got {loaded!r}")
        data = loaded or {}
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), suitable for YAML/JSON dumps."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def require(condition: bool, key: str, message: str) -> None:
    """Raise a ValueError naming config key ``key`` unless ``condition`` holds."""
    if not condition:
        raise config_error(key, message)
