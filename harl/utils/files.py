"""Read the YAML and JSON files the project takes from its users: experiment files, ``config.json``
(``--load_config``, tuned configs, run directories), ``harl/configs/*``.

Every way such a file can be wrong (missing, unreadable, a directory, not UTF-8, empty, malformed)
is a :class:`ConfigError` whose message starts with ``FILE:LINE:COLUMN:`` (or ``FILE:`` when there
is no position), like a compiler's, so the command line prints one line instead of a parser's
traceback.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from harl.utils.errors import ConfigError


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``; ``what`` names it in the messages ("experiment file")."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: the {what} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; the {what} must be a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the {what} (permission denied)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: the {what} is not UTF-8 text (byte 0x{data[err.start]:02x})"
        ) from None


def _empty(path: str, what: str, kind: str) -> ConfigError:
    return ConfigError(f"{path}: the {what} is empty (no {kind} content)")


def load_yaml(path: str | os.PathLike, what: str = "YAML file", allow_empty: bool = False) -> Any:
    """The content of a YAML file (``yaml.safe_load``).

    Args:
        path: the file.
        what: how messages name the file ("experiment file").
        allow_empty: return None for an empty file (or one with comments only) instead of failing.

    Raises:
        ConfigError: ``FILE:LINE:COLUMN: malformed YAML: ...``, or ``FILE: ...`` for a file that is
            missing, unreadable, a directory, not UTF-8 or empty.
    """
    path = os.fspath(path)
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = err.problem or "cannot be parsed"
        context = ""
        if err.context:
            context = f" ({err.context}"
            other = err.context_mark
            if other is not None and (other.line, other.column) != (mark.line, mark.column):
                context += f" at line {other.line + 1}, column {other.column + 1}"
            context += ")"
        raise ConfigError(f"{path}{where}: malformed YAML in the {what}: {problem}{context}") from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow (a control character)
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        character = err.character if isinstance(err.character, int) else ord(err.character)
        raise ConfigError(
            f"{path}:{line}:{column}: malformed YAML in the {what}: character U+{character:04X} is not allowed"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML in the {what}: {err}") from None
    if data is None and not allow_empty:
        raise _empty(path, what, "YAML")
    return data


def load_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The content of a JSON file.

    Raises:
        ConfigError: ``FILE:LINE:COLUMN: malformed JSON: ...``, or ``FILE: ...`` for a file that is
            missing, unreadable, a directory, not UTF-8 or empty.
    """
    path = os.fspath(path)
    text = read_text(path, what)
    if not text.strip():
        raise _empty(path, what, "JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}:{err.colno}: malformed JSON in the {what}: {err.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the {what} is nested too deeply to read") from None
