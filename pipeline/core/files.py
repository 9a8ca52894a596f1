"""Files: atomic writes (a reader, or a crash, never sees half a file) that respect the umask,
and bounded reads of local input files (a regular file under a size cap, or one line of error)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core.errors import InputError

MAX_JSON_BYTES = 64 * 1024 * 1024


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's 0600 is not


def read_regular_file(path: Path, max_bytes: int, what: str, cap_setting: str) -> bytes:
    """The bytes of a regular file no larger than `max_bytes`; anything else is an InputError."""
    require_regular_file(path, max_bytes, what, cap_setting)
    try:
        with path.open("rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # it grew since it was looked at
        raise InputError(f"{path}: over the {max_bytes / 1024 / 1024:g} MB limit for a {what}")
    return data


def path_exists(path: Path) -> bool:
    """False, not an error, for a name the file system cannot hold (a 100,000-character "DOI")."""
    try:
        return path.exists()
    except OSError:
        return False


def require_regular_file(path: Path, max_bytes: int, what: str, cap_setting: str) -> None:
    """Refuse, without opening it, anything but a regular file of at most `max_bytes`."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file (a device, pipe or socket); pass the {what} file itself")
    if info.st_size > max_bytes:
        raise InputError(
            f"{path}: {info.st_size / 1024 / 1024:.0f} MB is over the {max_bytes / 1024 / 1024:g} MB limit for a {what}; "
            f"raise it with {cap_setting} if the file is right"
        )


def require_writable_folder(folder: Path, what: str) -> None:
    """Made if missing and tried with a scratch file now, before any model call is paid for."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            f"{folder}: cannot write the {what} there ({exc.strerror or exc}); choose a writable folder"
        ) from None


def read_json_file(path: Path) -> Any:
    """A JSON file's content, or one line saying why not (binary, too deep, not JSON, too big)."""
    raw = read_regular_file(path, MAX_JSON_BYTES, "JSON", "a smaller file")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; pass a JSON file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{path}: the JSON is nested too deeply to be a record") from None


def write_text_atomic(path: Path, text: str | Iterable[str]) -> None:
    """UTF-8 text, whole or not at all; `text` may come in parts, written as they come."""
    write_bytes_atomic(
        path, [text.encode("utf-8")] if isinstance(text, str) else (part.encode("utf-8") for part in text)
    )


def write_bytes_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Whole or not at all, and on disk (fsync) before it replaces the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), _FILE_MODE)
            for part in [data] if isinstance(data, bytes) else data:
                stream.write(part)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
