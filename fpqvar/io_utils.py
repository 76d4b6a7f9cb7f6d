"""Atomic file output shared by every layer (checkpoints, shards, reports): never a half-written file.

Write to a temporary file in the destination folder, fsync, then ``os.replace`` (atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` to produce the file, then atomically move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write_with(path, w)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write_with(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_npz(path: str | os.PathLike, what: str = "npz file") -> dict:
    """Every array of an ``.npz`` archive, read without pickle; ValueError naming the file (and key) otherwise.

    numpy's own messages for these cases name no file and suggest ``allow_pickle=True``; fpqvar never loads
    pickled data, so it says so instead."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (a {what} is a numpy .npz file: a zip of .npy arrays)")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise ValueError(f"{path}: key {k!r} holds Python objects (pickled data); refused: fpqvar "
                                         "reads plain numeric arrays only") from None
                    raise ValueError(f"{path}: key {k!r}: {e}") from None
    except ValueError:
        raise
    except Exception as e:  # damaged zip members (CRC), truncated arrays
        raise ValueError(f"{path}: unreadable {what} ({type(e).__name__}: {e})") from None
    return out


# ------------------------------------------------------------------------------------------------ output paths
class OutputPathError(ValueError):
    """An output path that would destroy an input, another output or the package's assets, or cannot be written."""


def package_assets_dir() -> Path:
    return Path(__file__).resolve().parent / "assets"


def _is_within(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def _writable_at(p: Path, flag: str) -> None:
    """The nearest existing ancestor of ``p`` must be a writable folder (checked before any work)."""
    for a in (p.parent, *p.parent.parents):
        if a.exists():
            if not a.is_dir():
                raise OutputPathError(f"{flag} {p}: {a} is a file, not a folder, so nothing can be written below it")
            if not os.access(a, os.W_OK | os.X_OK):
                raise OutputPathError(f"{flag} {p}: the folder {a} is not writable")
            return


def check_output_paths(outputs: dict[str, Any], inputs: dict[str, Any] | None = None, *,
                       folders: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, outputs that would destroy something (OutputPathError naming both flags).

    ``outputs`` / ``inputs``: {flag: path or None (not given) or a list of paths}; the flags named in ``folders``
    are output folders, the other outputs files. Paths are compared after resolving symlinks, ``..`` and the
    working directory. Refused:
    - an output that is an input, or the same path as another output;
    - an output inside the installed package's assets (``fpqvar/assets``: the shipped model and metrics);
    - a file output that is an existing folder, a folder output that is an existing file, and an output whose
      nearest existing parent is a file or is not writable.
    An existing output file of the right type is replaced (atomically), as ``cp`` would.
    """
    def norm(d):
        out = []
        for flag, v in (d or {}).items():
            for p in (v if isinstance(v, (list, tuple)) else [v]):
                if p is not None:
                    out.append((flag, Path(p).expanduser().resolve()))
        return out

    outs, ins, assets = norm(outputs), norm(inputs), package_assets_dir()
    for i, (flag, p) in enumerate(outs):
        for in_flag, q in ins:
            if p == q:
                raise OutputPathError(f"{flag} {p} is also the input {in_flag}: writing it would destroy the input; "
                                      "choose another output path")
        for other_flag, q in outs[:i]:
            if p == q:
                raise OutputPathError(f"{flag} and {other_flag} are the same path {p}; give each output its own path")
        if _is_within(p, assets):
            raise OutputPathError(f"{flag} {p} is inside the installed package's assets ({assets}: the shipped "
                                  "default model, classifier and reference); write elsewhere")
        if flag in folders:
            if p.exists() and not p.is_dir():
                raise OutputPathError(f"{flag} {p}: exists and is a file; an output folder is expected")
        elif p.is_dir():
            raise OutputPathError(f"{flag} {p}: is a folder; an output file path is expected")
        _writable_at(p if flag not in folders or not p.exists() else p / "x", flag)


# ------------------------------------------------------------------------------------------------ folder lock
LOCK_NAME = ".fpqvar.lock"


class FolderLockedError(RuntimeError):
    pass


class FolderLock:
    """An exclusive lock on an output folder for one run: ``with FolderLock(out, "fpqvar eval"): ...``.

    ``out/.fpqvar.lock`` holds the holder's PID, host, start time and command (for the message a second run
    prints). The lock itself is ``flock`` on that file: the kernel releases it when the holder exits in any way
    (kill -9 included), so a lock file left by a dead run is stale by construction and is simply taken over.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "fpqvar"):
        self.path = Path(folder) / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        self.took_over: dict | None = None  # the record of a dead holder whose lock file was left behind

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}

    def acquire(self) -> "FolderLock":
        import fcntl
        import socket
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                h = self._holder()
                who = f"PID {h.get('pid', '?')} on {h.get('host', '?')}"
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if "started" in h else "?"
                raise FolderLockedError(f"{self.path.parent}: in use by another run ({who}, `{h.get('command', '?')}`"
                                        f" started {since}); wait for it to end or use another folder") from None
            try:  # the file may have been unlinked by a holder that released it between our open and our flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = self._holder()
        self.took_over = old or None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                             "command": self.command}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiting run then opens a fresh file
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
