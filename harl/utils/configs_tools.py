"""Configuration loading, command-line overrides and run directories (HARL's conventions).

``algo_args`` holds HARL's sections (``seed``, ``device``, ``train``, ``eval``, ``render``,
``model``, ``algo``, ``logger``); ``env_args`` is flat. Every leaf key is unique across both, so a
command-line ``--KEY VALUE`` names a key without its section, exactly as in HARL.

Length (about 550 lines): the command-line configuration in one place: YAML loading, ``--KEY
VALUE`` overrides with their type and range checks, ``--list_keys`` and run directories.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import yaml

from harl.utils.config_ranges import describe, range_problems
from harl.utils.errors import ConfigError
from harl.utils.files import load_json, load_yaml

LOGGER = logging.getLogger(__name__)

# Read at call time (not bound as a default argument) so tests can point it at a scratch folder.
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# HARL's main_args, the keys of the "main_args" block of config.json.
MAIN_ARG_KEYS = ("algo", "env", "exp_name", "load_config")
DEFAULT_ALGO = "happo"
DEFAULT_ENV = "pettingzoo_mpe"
DEFAULT_EXP_NAME = "installtest"
# Keys added with a default that changes what older configs did: a config.json that does not set
# one ran with the value here (HAQO's diffusion actor predicted the noise before 2026-12-06), so
# its weights and results stay reproducible.
# The off-policy critics were joint Q networks before critic_form existed (HAQO's default is
# auto since 2026-12-06).
FORMER_DEFAULTS: dict[str, Any] = {"prediction": "eps", "critic_form": "joint"}

# Keys that may change when a run is resumed: they pick hardware, not the learning problem,
# so a run can move to another machine. Anything else would silently change the experiment.
RESUME_OVERRIDABLE = frozenset({"cuda", "cuda_deterministic", "torch_threads", "n_env_workers", "env_reply_timeout"})


class ConfigKey(NamedTuple):
    """One leaf of the configuration, as listed by ``--list_keys``."""

    section: str  # HARL section ("train", "model", ...) or "env" for env_args
    key: str
    value: Any
    comment: str  # the YAML comment line above the key


def _yaml_path(kind: str, name: str, label: str) -> Path:
    path = CONFIGS_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown {label} '{name}': there is no {path}.{hint} "
            f"Available {label}s: {', '.join(available) or '(none)'}."
        )
    return path


def _read_yaml(path: Path, what: str = "YAML config", allow_empty: bool = False) -> Any:

    return load_yaml(path, what, allow_empty=allow_empty)


def get_defaults_yaml_args(algo: str, env: str) -> tuple[dict, dict]:
    """Load the default configuration of an algorithm and an environment.

    Args:
        algo: algorithm name, the stem of ``harl/configs/algos_cfgs/<algo>.yaml``.
        env: environment name, the stem of ``harl/configs/envs_cfgs/<env>.yaml``.

    Returns:
        ``(algo_args, env_args)``: the algorithm's sections and the flat environment keys.

    Raises:
        ConfigError: unknown algorithm or environment (the message lists the available ones),
            a malformed YAML, or a key defined twice.
    """
    algo_path = _yaml_path("algos_cfgs", algo, "algorithm")
    env_path = _yaml_path("envs_cfgs", env, "environment")
    algo_args = _read_yaml(algo_path, "algorithm config")
    env_args = _read_yaml(env_path, "environment config", allow_empty=True) or {}
    if not isinstance(algo_args, dict) or not all(isinstance(s, dict) for s in algo_args.values()):
        raise ConfigError(f"{algo_path} must map section names (seed, device, train, ...) to mappings of keys.")
    if not isinstance(env_args, dict):
        raise ConfigError(f"{env_path} must be a mapping of keys to values.")
    _leaf_index(algo_args, env_args)  # fail now on keys defined twice, not at the first override
    return algo_args, env_args


def _iter_leaves(algo_args: dict, env_args: dict) -> Iterator[tuple[str, dict, str]]:
    """Yield ``(section, container, key)`` for every leaf; section is "env" for env_args."""
    for section, entries in algo_args.items():
        for key in entries:
            yield section, entries, key
    for key in env_args:
        yield "env", env_args, key


def _leaf_index(algo_args: dict, env_args: dict) -> dict[str, tuple[str, dict]]:
    index: dict[str, tuple[str, dict]] = {}
    for section, container, key in _iter_leaves(algo_args, env_args):
        if key in index:
            raise ConfigError(
                f"Config key '{key}' is defined in both '{index[key][0]}' and '{section}'; "
                "keys must be unique so that --KEY VALUE is unambiguous. Rename one of them "
                "in the YAML files."
            )
        index[key] = (section, container)
    return index


def parse_cli_value(text: str) -> Any:
    """Turn a command-line string into a Python value without ever evaluating code.

    Tries ``ast.literal_eval`` (``1e-3``, ``[128, 128]``, ``True``, ``None``), then
    ``yaml.safe_load`` (``true``, ``null``); anything else stays the original string.
    """
    if not text.strip():
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Return ``value`` converted to the type of ``default`` or raise ConfigError."""
    if default is None:
        return parse_cli_value(value) if isinstance(value, str) else value
    if isinstance(default, str):
        if isinstance(value, str):
            # A string key keeps the raw text: "--agent_conf 6" must not become the int 6.
            return value
        raise ConfigError(
            f"Config key '{key}' expects a string (default {default!r}), got {value!r} ({_type_name(value)})."
        )
    parsed = parse_cli_value(value) if isinstance(value, str) else value

    def fail(expected: str, hint: str = "") -> ConfigError:
        return ConfigError(
            f"Config key '{key}' expects {expected} (default {default!r}), got {value!r} ({_type_name(parsed)}).{hint}"
        )

    if isinstance(default, bool):
        if isinstance(parsed, bool):
            return parsed
        raise fail("a bool (True or False)")
    if isinstance(default, int):
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        if isinstance(parsed, float):
            # Accept "1e7" for step counts, but never round a fractional value silently.
            if math.isfinite(parsed) and parsed.is_integer():
                return int(parsed)
            raise fail("an int", " If the key takes fractions, its YAML default must be a float.")
        raise fail("an int")
    if isinstance(default, float):
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
        raise fail("a number")
    if isinstance(default, list):
        if not isinstance(parsed, list):
            raise fail("a list, written like [1, 2]")
        if not default:
            return parsed
        try:
            return [_coerce(key, item, default[0]) for item in parsed]
        except ConfigError:
            raise fail(f"a list of {_type_name(default[0])}") from None
    if isinstance(default, dict):
        if isinstance(parsed, dict):
            return parsed
        raise fail("a mapping")
    return parsed


# Names other libraries (SB3, CleanRL, pymarl) give to HARL's keys, for "Did you mean".
KEY_ALIASES = {
    "learning_rate": "lr",
    "actor_lr": "lr",
    "actor_learning_rate": "lr",
    "critic_learning_rate": "critic_lr",
    "total_timesteps": "num_env_steps",
    "t_max": "num_env_steps",
    "num_envs": "n_rollout_threads",
    "n_envs": "n_rollout_threads",
    "batch_size_run": "n_rollout_threads",
    "discount": "gamma",
    "tau": "polyak",
    "ent_coef": "entropy_coef",
    "clip_range": "clip_param",
    "n_epochs": "ppo_epoch",
    "hidden_dim": "hidden_sizes",
    "map": "map_name",
    "scenario_name": "scenario",
}


def _unknown_key_error(key: str, valid: list[str], algo: str | None, env: str | None) -> str:
    close = [KEY_ALIASES[key]] if KEY_ALIASES.get(key) in valid else []
    close += [k for k in difflib.get_close_matches(key, valid, n=3, cutoff=0.6) if k not in close]
    close += [k for k in valid if key in k and k not in close][: max(0, 3 - len(close))]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listing = (
        f"python examples/train.py --algo {algo} --env {env} --list_keys"
        if algo and env
        else "python examples/train.py --algo ALGO --env ENV --list_keys"
    )
    return f"Unknown config key '{key}'.{hint} List all keys with: {listing}"


def update_args(
    overrides: dict[str, Any],
    algo_args: dict,
    env_args: dict,
    *,
    algo: str | None = None,
    env: str | None = None,
) -> None:
    """Apply ``--KEY VALUE`` overrides in place, checking names and types against the defaults.

    Args:
        overrides: leaf key -> value; strings are parsed with :func:`parse_cli_value`.
        algo_args: algorithm sections, updated in place.
        env_args: environment keys, updated in place.
        algo: algorithm name, only used to make error messages copy-pasteable.
        env: environment name, only used to make error messages copy-pasteable.

    Raises:
        ConfigError: listing every unknown key (with the closest valid keys) and every value of
            the wrong type. Nothing is changed when an error is raised.

    Type rules: an int is accepted where a float is expected, an integral float (``1e7``) where an
    int is; a bool key only takes a bool; a list stays a list; a ``None`` default takes anything.
    """
    index = _leaf_index(algo_args, env_args)
    problems: list[str] = []
    coerced: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in index:
            problems.append(_unknown_key_error(key, sorted(index), algo, env))
            continue
        _, container = index[key]
        try:
            coerced[key] = _coerce(key, value, container[key])
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))
    for key, value in coerced.items():
        index[key][1][key] = value


def parse_override_tokens(tokens: list[str]) -> dict[str, str]:
    """Collect ``--KEY VALUE`` and ``--KEY=VALUE`` pairs left over by argparse.

    Raises:
        ConfigError: a token that is not ``--KEY``, a key without a value, or a key given twice.
    """
    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(
                f"Unexpected argument '{token}'. Config overrides are written --KEY VALUE or --KEY=VALUE."
            )
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            key = token[2:]
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value: write --{key} VALUE or --{key}=VALUE.")
            value = tokens[i + 1]
            i += 2
        if key in overrides:
            raise ConfigError(f"--{key} is given twice; keep one.")
        overrides[key] = value
    return overrides


def load_config_json(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Load a HARL ``config.json`` merged onto the YAML defaults of its algorithm and env.

    Keys missing from the file (e.g. keys added after the file was written) take their defaults,
    or for the keys of ``FORMER_DEFAULTS`` the value a file without them ran with, and are
    listed in a log note.

    Returns:
        ``(main_args, algo_args, env_args)``.

    Raises:
        ConfigError: missing or unreadable file, missing ``main_args.algo``/``env``, unknown
            keys (with suggestions) or values of the wrong type.
    """

    path = Path(path)
    content = load_json(path, "config file (a HARL config.json)")
    if not isinstance(content, dict) or not isinstance(content.get("main_args"), dict):
        raise ConfigError(
            f"{path} is not a HARL config.json: it needs a 'main_args' block with 'algo' and "
            "'env', plus 'algo_args' and 'env_args'."
        )
    main_args = dict(content["main_args"])
    unknown_main = sorted(set(main_args) - set(MAIN_ARG_KEYS))
    if unknown_main or not main_args.get("algo") or not main_args.get("env"):
        raise ConfigError(
            f"{path}: 'main_args' must name 'algo' and 'env' and may only hold "
            f"{', '.join(MAIN_ARG_KEYS)}; got {sorted(main_args)}."
        )
    algo, env = main_args["algo"], main_args["env"]
    algo_args, env_args = get_defaults_yaml_args(algo, env)

    file_algo_args = content.get("algo_args", {})
    file_env_args = content.get("env_args", {})
    if not isinstance(file_algo_args, dict) or not all(isinstance(s, dict) for s in file_algo_args.values()):
        raise ConfigError(f"{path}: 'algo_args' must map section names to mappings of keys.")
    if not isinstance(file_env_args, dict):
        raise ConfigError(f"{path}: 'env_args' must be a mapping of keys to values.")
    given: dict[str, Any] = dict(file_env_args)
    for entries in file_algo_args.values():
        for key, value in entries.items():
            if key in given:
                raise ConfigError(f"{path}: key '{key}' appears twice.")
            given[key] = value
    try:
        update_args(given, algo_args, env_args, algo=algo, env=env)
    except ConfigError as err:
        raise ConfigError(f"{path} does not match the defaults of {algo}/{env}:\n{err}") from err

    missing = []
    for _, container, key in _iter_leaves(algo_args, env_args):
        if key not in given:
            container[key] = FORMER_DEFAULTS.get(key, container[key])
            missing.append(f"{key}={container[key]!r}")
    if missing:
        LOGGER.info(
            "Note: %s does not set %d key(s); using defaults: %s",
            path,
            len(missing),
            ", ".join(missing),
        )
    main_args.setdefault("exp_name", DEFAULT_EXP_NAME)
    main_args.setdefault("load_config", "")
    return main_args, algo_args, env_args


def build_run_config(
    algo: str | None,
    env: str | None,
    exp_name: str | None,
    load_config: str,
    resume: str,
    overrides: dict[str, Any],
) -> tuple[dict, dict, dict]:
    """Resolve the command line into ``(args, algo_args, env_args)`` for a runner.

    ``algo``/``env``/``exp_name`` are None when not given on the command line. Precedence:
    YAML defaults < ``--load_config`` file (or the resumed run's config.json) < overrides.

    Raises:
        ConfigError: conflicting options, or any error of the loaders and :func:`update_args`.
        harl.utils.checkpoint.CheckpointError: ``--resume`` names a run without a checkpoint.
    """
    if resume and load_config:
        raise ConfigError(
            "--resume and --load_config cannot be combined: --resume already reloads the run's own config.json."
        )
    source = load_config
    if resume:
        # Imported here: harl.utils.checkpoint imports this module (and torch).
        from harl.utils.checkpoint import CheckpointError, checkpoint_path, find_run_config

        source = find_run_config(resume)
        resume = os.path.dirname(source)
        if not os.path.isfile(checkpoint_path(resume)):
            raise CheckpointError(
                f"Cannot resume {resume}: it has no {checkpoint_path(resume)} (the run was "
                "killed before its first checkpoint). Start it again instead."
            )
        not_allowed = sorted(set(overrides) - RESUME_OVERRIDABLE)
        if not_allowed:
            raise ConfigError(
                f"--resume continues a run with its saved config; only "
                f"{', '.join(sorted(RESUME_OVERRIDABLE))} may change, not "
                f"{', '.join(not_allowed)}. To change the experiment, start a new run with "
                f"--load_config {source} --KEY VALUE."
            )
    if source:
        main_args, algo_args, env_args = load_config_json(source)
        checked = [("algo", algo), ("env", env)] + ([("exp_name", exp_name)] if resume else [])
        for name, given in checked:
            if given is not None and given != main_args[name]:
                raise ConfigError(
                    f"--{name} {given} contradicts {source}, which has {name} '{main_args[name]}'. Drop --{name}."
                )
        algo, env = main_args["algo"], main_args["env"]
        exp_name = exp_name or main_args["exp_name"]
        if resume:
            load_config = main_args["load_config"]
    else:
        algo = algo or DEFAULT_ALGO
        env = env or DEFAULT_ENV
        algo_args, env_args = get_defaults_yaml_args(algo, env)
    update_args(overrides, algo_args, env_args, algo=algo, env=env)
    problems = range_problems({key: container[key] for _, container, key in _iter_leaves(algo_args, env_args)})
    if problems:
        raise ConfigError("\n".join(problems))
    args = {
        "algo": algo,
        "env": env,
        "exp_name": exp_name or DEFAULT_EXP_NAME,
        "load_config": load_config,
        "resume": resume,
    }
    return args, algo_args, env_args


def _yaml_comments(path: Path) -> dict[str, str]:
    """Map each key of a YAML file to the comment line just above it."""
    comments: dict[str, str] = {}
    previous = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            previous = stripped.lstrip("#").strip()
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match:
            comments[match.group(1)] = previous
        previous = ""
    return comments


def list_config_keys(algo: str, env: str) -> list[ConfigKey]:
    """All leaf keys of an algorithm and environment with their defaults and YAML comments."""
    algo_args, env_args = get_defaults_yaml_args(algo, env)
    comments = _yaml_comments(CONFIGS_DIR / "algos_cfgs" / f"{algo}.yaml")
    comments.update(_yaml_comments(CONFIGS_DIR / "envs_cfgs" / f"{env}.yaml"))
    return [
        ConfigKey(section, key, container[key], comments.get(key, ""))
        for section, container, key in _iter_leaves(algo_args, env_args)
    ]


def format_config_keys(algo: str, env: str) -> str:
    """Human-readable listing of :func:`list_config_keys`, for ``--list_keys``."""
    lines = [f"Config keys of --algo {algo} --env {env} (override any with --KEY VALUE):"]
    section = None
    for item in list_config_keys(algo, env):
        if item.section != section:
            section = item.section
            lines.append(f"[{section}]")
        valid = describe(item.key)
        comment = f"  # {item.comment}" if item.comment else ""
        comment += f" (valid: {valid})" if valid else ""
        lines.append(f"  {item.key} = {item.value!r}{comment}")
    return "\n".join(lines)


def check_writable(log_dir: str, option: str = "--log_dir", what: str = "run directories") -> None:
    """Raise ConfigError unless ``what`` can be created under ``log_dir`` (the value of the
    command-line ``option``)."""
    existing = os.path.abspath(log_dir)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise ConfigError(f"{option} {log_dir}: {existing} is a file, not a directory; choose another {option}.")
        existing = os.path.dirname(existing)
    try:  # a real write: permissions, read-only mounts and special file systems all show here
        os.rmdir(tempfile.mkdtemp(prefix=".harl-write-test-", dir=existing))
    except OSError as err:
        raise ConfigError(
            f"{option} {log_dir}: cannot create {what} in {existing} ({err.strerror}); choose another {option}."
        ) from None


def init_dir(
    env: str,
    algo: str,
    exp_name: str,
    seed: int,
    logger_dir: str,
    task_name: str,
) -> str:
    """Create ``<logger_dir>/<env>/<task>/<algo>/<exp_name>/seed-<seed>-<time>/`` with ``logs/``
    and ``models/`` and return its path.

    ``task_name``: ``harl.envs.get_task_name(env, env_args)``. The seed is zero-padded
    to five digits as in HARL. Two runs started in the same second get distinct folders (a
    ``_<n>`` suffix), because the final folder is created with an exclusive ``mkdir``.
    """
    parent = os.path.join(logger_dir, env, task_name, algo, exp_name)
    os.makedirs(parent, exist_ok=True)
    base = os.path.join(parent, f"seed-{seed:0>5}-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    run_dir, attempt = base, 1
    while True:
        try:
            os.mkdir(run_dir)
            break
        except FileExistsError:
            attempt += 1
            run_dir = f"{base}_{attempt}"
    os.makedirs(os.path.join(run_dir, "logs"))
    os.makedirs(os.path.join(run_dir, "models"))
    return run_dir


def save_config(args: dict, algo_args: dict, env_args: dict, run_dir: str) -> str:
    """Write ``run_dir/config.json`` in HARL's format, re-runnable with ``--load_config``.

    Only HARL's ``main_args`` keys are written (``resume`` is a property of one invocation, not
    of the experiment). The file is replaced atomically so a crash never leaves half a config.

    Returns:
        The path of the written file.
    """
    # Imported here: harl.utils.checkpoint imports this module (and torch).
    from harl.utils.checkpoint import atomic_write

    config = {
        "main_args": {key: args.get(key, "") for key in MAIN_ARG_KEYS},
        "algo_args": algo_args,
        "env_args": env_args,
    }
    text = json.dumps(config, indent=4, sort_keys=True) + "\n"
    path = os.path.join(run_dir, "config.json")
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
    return path
