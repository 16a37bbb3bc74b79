"""Crash-safe checkpoint files and the random-number-generator state they carry.

A checkpoint is replaced atomically: it is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the old one, so a run killed at any moment leaves either
the previous or the new checkpoint, never a truncated one.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Callable

import numpy as np
import torch

from harl.utils.envs_tools import seed_generators
from harl.utils.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable."""


def checkpoint_path(run_dir: str | os.PathLike) -> str:
    """Path of the resumable checkpoint of a run directory: ``<run_dir>/models/checkpoint.pt``."""
    return os.path.join(os.fspath(run_dir), "models", CHECKPOINT_NAME)


def _fsync_dir(folder: str) -> None:
    # The rename is only durable once the directory entry is on disk. Some platforms and
    # file systems cannot open or fsync a directory; the file itself is already safe there.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full(err: BaseException, folder: str, size_hint: int) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch's zip writer reports a short write as "unexpected pos ..." without an errno
    return isinstance(err, RuntimeError) and "unexpected pos" in str(err) and shutil.disk_usage(folder).free < size_hint


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], size_hint: int = 0) -> None:
    """Write a file atomically: ``write(binary_file)`` fills a temporary file, which replaces
    ``path`` only after it is fully on disk. On any error the temporary file is removed and
    ``path`` is left as it was.

    Raises:
        OSError: with ``errno.ENOSPC`` and a message saying how much space was free and about
            how much (``size_hint`` bytes) the file needs, when the disk is full.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666 honours the umask; tempfile.mkstemp would leave the file owner-only.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(err, folder, size_hint):
            free = shutil.disk_usage(folder).free
            raise OSError(
                errno.ENOSPC,
                (
                    f"the disk is full: writing {path} (about {size_hint / 2**20:,.0f} MiB) failed with "
                    f"{free / 2**20:,.0f} MiB free in {folder}; the previous {name}, if any, is intact"
                ),
            ) from None
        raise
    _fsync_dir(folder)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors and arrays in a nested state (about the size of its checkpoint)."""
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file at ``path`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda file: torch.save(obj, file), size_hint=tensor_bytes(obj))


def capture_rng_state() -> dict:
    """Snapshot the python, numpy (global), torch CPU and CUDA generators.

    The values are plain Python types and tensors so the checkpoint loads with
    ``torch.load(weights_only=True)``.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_name,
            "keys": np_keys.tolist(),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Restore generators captured by :func:`capture_rng_state`.

    CUDA states are restored for the devices present in both the snapshot and this machine, so a
    checkpoint written on a GPU machine still resumes on a CPU-only one.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["bit_generator"],
            np.asarray(npst["keys"], dtype=np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block on the python, numpy and torch generators seeded with ``seed``, then restore
    them as they were: the block draws no numbers from the surrounding stream (evaluation must
    not change the training run it interrupts)."""
    saved = capture_rng_state()
    seed_generators(seed)
    try:
        yield
    finally:
        restore_rng_state(saved)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    weights_only: bool = True,
) -> Any:
    """Load a checkpoint written by :func:`atomic_torch_save`.

    ``weights_only=True`` refuses arbitrary pickled objects, so a checkpoint from elsewhere
    cannot run code; store tensors and plain Python values (not numpy arrays) in checkpoints.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or holds disallowed objects.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"No checkpoint at {path}. Pass the run directory of a run that saved at least one "
            "checkpoint (it is written every checkpoint_interval episodes)."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        if weights_only and refused:
            raise CheckpointError(
                f"{path} holds objects that weights_only loading refuses ({refused[0]}). Store "
                "tensors and plain Python values in checkpoints, or load a trusted file with "
                "weights_only=False."
            ) from err
        raise CheckpointError(
            f"{path} is corrupt or not a checkpoint (it cannot be unpickled); resume from another run."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is unreadable or truncated ({_summary(err)}). It was not written by "
            "atomic_torch_save or was damaged after; resume from another run."
        ) from err


def check_weights(directory: str | os.PathLike) -> None:
    """Load every weight file of ``directory`` (``actor_agent0.pt``, ``critic_agent.pt`` ...: its
    ``*.pt`` files but the checkpoint) once, as the runners load them, so that a damaged one is
    refused by name before a runner is built instead of failing inside torch.

    Raises:
        CheckpointError: a file that is unreadable, truncated, empty or not a weights file.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return  # the runner says what it expected there
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".pt") or name == CHECKPOINT_NAME or not os.path.isfile(path):
            continue
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
            if os.path.getsize(path) == 0:
                what = "is empty"
            elif isinstance(err, pickle.UnpicklingError):
                what = "is damaged or not a weights file (it cannot be unpickled)"
            else:
                what = f"is damaged or not a weights file ({_summary(err)})"
            raise CheckpointError(f"{path} {what}; use another run's weights.") from None


def _summary(err: BaseException) -> str:
    """First line of an exception; torch's load errors run over many lines."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def find_run_config(run_dir: str | os.PathLike) -> str:
    """Return the ``config.json`` of a run directory.

    Accepts the run directory, its ``models/`` folder or the ``config.json`` itself.

    Raises:
        ConfigError: no config.json there (the message says what to pass instead).
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    if run_dir.endswith(".json"):
        candidate = run_dir
    elif os.path.basename(run_dir) == "models":
        candidate = os.path.join(os.path.dirname(run_dir), "config.json")
    else:
        candidate = os.path.join(run_dir, "config.json")
    if os.path.isfile(candidate):
        return candidate
    raise ConfigError(
        f"{run_dir} is not a run directory: it has no config.json. Pass the folder "
        "results/<env>/<task>/<algo>/<exp_name>/seed-<seed>-<time>/ of the run to resume."
    )
