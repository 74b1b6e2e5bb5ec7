"""Result folders that never touch what the package did not write.

A folder written here carries a marker file, ``.discovery-result.json``, that lists the files the
package put there (with a format version). An existing folder is written into only when it is
empty or carries a valid marker, and then only the files the marker lists are replaced or removed:
files and subfolders a person added stay as they are. Every file arrives under a temporary name on
the same file system and is renamed into place, so a reader sees either the old or the new file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from discovery.errors import DiscoveryError

__all__ = ["MARKER", "OutputFolderError", "atomic_write", "check_output_folder", "write_folder"]

MARKER = ".discovery-result.json"
"""Name of the marker file a result folder carries."""

_FORMAT = "discovery-result"
_VERSION = 1
_TMP_PREFIX = ".discovery-tmp-"


class OutputFolderError(DiscoveryError, OSError):
    """The output folder cannot or may not be written; ``path`` names it."""

    def __init__(self, message: str, path: Path | str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:  # OSError would otherwise format (errno, strerror)
        return str(self.args[0])


def _marker_files(folder: Path) -> list[str] | None:
    """The files a valid marker in ``folder`` lists, or None when there is no valid marker."""
    path = folder / MARKER
    if not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or data.get("version") != _VERSION:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and _plain_name(f) for f in files):
        return None  # a marker naming paths outside the folder is not one this package wrote
    return files


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..", MARKER) and "/" not in name and "\\" not in name


def check_output_folder(directory, *, source=None, call: str | None = None) -> Path:
    """Raise unless a result folder can be written to ``directory``; call it before a long run.

    ``directory`` may be missing (it is created, with its parents), empty, or an earlier result
    folder (it carries the ``.discovery-result.json`` marker). Anything else is refused: a file,
    a non-empty folder without the marker, a folder holding the input file ``source``, or a
    place that cannot be written (checked by creating and removing a temporary file).

    Parameters
    ----------
    directory : str or path-like
    source : str or path-like, optional
        The input file, which must not lie inside ``directory``.
    call : str, optional
        How the message starts (default ``check_output_folder('<directory>')``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputFolderError
        With a message that names the folder and says what to do.

    Examples
    --------
    >>> import tempfile, os
    >>> check_output_folder(os.path.join(tempfile.mkdtemp(), "results")).name
    'results'
    """
    target = Path(directory)
    call = call or f"check_output_folder({str(directory)!r})"
    resolved = target.resolve()
    if source is not None:
        src = Path(source).resolve()
        if src == resolved or resolved in src.parents:
            raise OutputFolderError(f"{call}: {target} holds the input file {source}; pass another folder", target)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise OutputFolderError(f"{call}: {target} exists and is not a folder; pass a folder path", target)
        entries = [e for e in target.iterdir() if not e.name.startswith(_TMP_PREFIX)]
        if entries and _marker_files(target) is None:
            raise OutputFolderError(
                f"{call}: {target} exists and is not an earlier result folder (it is not empty and has no "
                f"{MARKER} marker); pass a new or empty folder", target)
        _probe(target, target, call)
    else:
        existing = next(p for p in [resolved, *resolved.parents] if p.exists())
        if not existing.is_dir():
            raise OutputFolderError(f"{call}: {existing} is not a folder, so {target} cannot be created; "
                                    "pass another folder", target)
        _probe(existing, target, call)
    return target


def _probe(folder: Path, target: Path, call: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputFolderError(f"{call}: cannot write to {target} ({_reason(exc)}); pass a writable folder",
                                target) from exc


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__ if exc.errno else str(exc) or type(exc).__name__


def write_folder(directory, write: Callable[[Path], None], call: str, source=None, *,
                 replace_all: bool = True) -> Path:
    """Write a result folder with ``write(tmp)``, which fills an empty temporary folder.

    A missing ``directory`` is created by renaming the filled temporary folder into place. In an
    existing empty or marked folder each new file is renamed over its old version; with
    ``replace_all`` the package's files from the earlier result that were not written again are
    removed, otherwise they are kept (a report added to a result folder). Files the marker does not
    list are never touched. The marker is written last and lists every package file present.

    Raises
    ------
    OutputFolderError
        The folder may not be written (see :func:`check_output_folder`) or writing failed; the
        message names the path that could not be written.

    Examples
    --------
    >>> import tempfile
    >>> parent = tempfile.TemporaryDirectory()
    >>> out = write_folder(Path(parent.name) / "out", lambda tmp: (tmp / "a.txt").write_text("hi"), "demo")
    >>> sorted(f.name for f in out.iterdir()), (out / "a.txt").read_text()
    (['.discovery-result.json', 'a.txt'], 'hi')
    >>> parent.cleanup()
    """
    target = check_output_folder(directory, source=source, call=call)
    try:
        if target.exists():
            _write_into(target, write, replace_all, call)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
            try:
                written = _fill(tmp, write)
                _write_marker(tmp, written)
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        if isinstance(exc, OutputFolderError):
            raise
        where = exc.filename if exc.filename and _TMP_PREFIX not in str(exc.filename) else target
        raise OutputFolderError(f"{call}: could not write {where} ({_reason(exc)}); the result is still in "
                                "memory, pass another folder", target) from exc
    return target


def _fill(tmp: Path, write: Callable[[Path], None]) -> list[str]:
    write(tmp)
    written = sorted(p.name for p in tmp.iterdir())
    bad = [n for n in written if not _plain_name(n) or not (tmp / n).is_file()]
    if bad:
        raise DiscoveryError(f"write_folder: the writer produced {bad}; only plain files may be written")
    return written


def _write_into(target: Path, write: Callable[[Path], None], replace_all: bool, call: str) -> None:
    old = _marker_files(target) or []
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target))  # same file system as the target
    try:
        written = _fill(tmp, write)
        clash = [n for n in written if n not in old and (target / n).exists()]
        if clash:
            raise OutputFolderError(f"{call}: {target / clash[0]} exists and was not written by "
                                    "discovery; move it away or pass another folder", target)
        # The marker first lists old and new files, so an interruption never leaves an unlisted package file.
        _write_marker(target, sorted(set(old) | set(written)))
        for name in written:
            os.replace(tmp / name, target / name)
        stale = [n for n in old if n not in written] if replace_all else []
        for name in stale:
            path = target / name
            if path.is_file() or path.is_symlink():
                path.unlink()
        kept = [n for n in old if n not in written and n not in stale and (target / n).exists()]
        _write_marker(target, sorted(set(written) | set(kept)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` with a temporary path next to ``path`` (same suffix, so writers that
    read the format from it work), then rename it onto ``path``: a reader sees the old file or
    the new one, never half of it. The temporary file is removed when ``write`` fails; missing
    parent folders are created. The file gets mode 0644, not the temporary file's 0600.

    Examples
    --------
    >>> import tempfile
    >>> parent = tempfile.TemporaryDirectory()
    >>> path = atomic_write(Path(parent.name) / "out" / "table.csv", lambda tmp: tmp.write_text("a,b\\n1,2\\n"))
    >>> path.name, path.read_text().splitlines()
    ('table.csv', ['a,b', '1,2'])
    >>> parent.cleanup()
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_marker(folder: Path, files: list[str]) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        writer = f"discovery {version('discovery')}"
    except PackageNotFoundError:
        writer = "discovery"
    content = json.dumps({"format": _FORMAT, "version": _VERSION, "writer": writer, "files": files}, indent=1)
    atomic_write(folder / MARKER, lambda tmp: tmp.write_text(content + "\n"))

