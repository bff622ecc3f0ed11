"""The one writer for ``feeds/``: safe joins, atomic writes, no file twice per run.

A file whose bytes would not change is not touched (its mtime stays), so a
rebuild where nothing changed rewrites nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from .errors import RenderError

logger = logging.getLogger(__name__)


def safe_join(root: Path, rel: str) -> Path:
    """Join *rel* under *root*, refusing anything that would escape it."""
    root = root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise RenderError(f"refusing to write outside {root}: {rel!r}")
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write *data* to *path* through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeedWriter:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.written: set[str] = set()
        self.changed: list[str] = []

    def write(self, rel: str, data: bytes) -> bool:
        """Write one file; return True if its content changed."""
        if rel in self.written:
            raise RenderError(f"{rel} written twice in one build")
        self.written.add(rel)
        path = safe_join(self.root, rel)
        try:
            if path.exists() and path.read_bytes() == data:
                return False
            atomic_write(path, data)
        except OSError as e:
            raise RenderError(f"cannot write {path}: {e.strerror}") from e
        logger.info("wrote %s", path)
        self.changed.append(rel)
        return True
