"""Output files that appear whole or not at all, and destinations checked before any compute.

A command that fails (a full disk, an unwritable folder, an interrupt, a bug) must leave nothing new
behind: a half-written report folder or a stray npz next to the user's files is debris a CI job
may then pick up. So outputs are checked up front (``check_output_file``, ``check_output_dir``),
and every file is written by ``Staging`` under a temporary name in its final folder; the temporary
files are moved into place together (``os.replace``, atomic within one folder) only when the
command has succeeded, and removed otherwise, with any folder the staging created.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Iterable

from auditor.errors import AuditorError

_COUNTER = itertools.count()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried for real (permission bits say nothing to root,
    or on a read-only mount)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".auditor-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def _existing_ancestor(folder: Path) -> Path:
    current = folder.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_dir(folder: Path, option: str) -> None:
    """``folder`` is a writable folder, or can be created (its nearest existing ancestor is one)."""
    if folder.exists() and not folder.is_dir():
        raise AuditorError(f"{option} {folder}: exists and is not a folder")
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise AuditorError(f"{option} {folder}: {base} is not a folder")
    if not _writable(base):
        raise AuditorError(f"{option} {folder}: cannot write in {base}")


def check_output_file(path: Path, option: str, overwrite: bool, inputs: Iterable[Path] = (),
                      create_folder: bool = False) -> None:
    """Before any compute: ``path`` is not a folder, not one of ``inputs``, absent unless ``overwrite``, and
    its folder exists and is writable (or, with ``create_folder``, can be created)."""
    for source in inputs:
        if _same_file(path, Path(source)):
            raise AuditorError(f"{option} {path} is the input {source}; choose another path (inputs are never "
                               "modified)")
    if path.is_dir():
        raise AuditorError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise AuditorError(f"{path} exists; pass --overwrite to replace it")
    folder = path.parent
    if create_folder:
        check_output_dir(folder, option)
        return
    if not folder.is_dir():
        raise AuditorError(f"{option} {path}: the folder {folder} does not exist")
    if not _writable(folder):
        raise AuditorError(f"{option} {path}: cannot write in {folder}")


def check_distinct(paths: dict[str, Path | None]) -> None:
    """No two outputs of one command are the same file (``-o x.json`` would be overwritten by its summary)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = path.absolute()
        if key in seen:
            raise AuditorError(f"{option} and {seen[key]} name the same file {path}; give them different names")
        seen[key] = option


class Staging:
    """Files written under temporary names beside their final paths, moved into place by ``commit``.

    Used as a context manager: committed when the block ends normally, discarded (temporary files and
    the folders it created removed) when it raises, ``KeyboardInterrupt`` included."""

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path]] = []
        self._made: list[Path] = []

    def folder(self, folder: Path) -> Path:
        """Create ``folder`` (and missing parents), remembering what was created for ``discard``."""
        missing = []
        current = folder.absolute()
        while not current.exists():
            missing.append(current)
            current = current.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._made.extend(reversed(missing))
        return folder

    def path(self, final: Path) -> Path:
        """A temporary name in ``final``'s folder with the same suffix (savers pick the format from it)."""
        final = Path(final)
        self.folder(final.parent)
        tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}-{next(_COUNTER)}{final.suffix}")
        self._files.append((tmp, final))
        return tmp

    def write_text(self, final: Path, text: str) -> Path:
        self.path(final).write_text(text, encoding="utf-8")
        return final

    def located(self, final: Path) -> Path:
        """Where ``final`` is until ``commit``: its temporary name if it is staged, else itself."""
        for tmp, target in self._files:
            if target == Path(final):
                return tmp
        return Path(final)

    def commit(self) -> None:
        for tmp, final in self._files:
            os.replace(tmp, final)
        self._files.clear()
        self._made.clear()

    def discard(self) -> None:
        for tmp, _ in self._files:
            for leftover in (tmp, *tmp.parent.glob(f".{tmp.name}.tmp*")):
                try:
                    leftover.unlink()
                except OSError:
                    pass
        self._files.clear()
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._made.clear()

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()
