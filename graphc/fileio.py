"""Writing a file so that no reader, and no crash, ever sees half of it."""
from __future__ import annotations

import os
import tempfile


def write_atomically(path, data, *, private: bool = False, durable: bool = False, prefix: str | None = None):
    """Write ``data`` (bytes, or ``fn(file)`` that writes them) to a temporary file beside
    ``path`` and rename it over ``path``: readers see the old file or the whole new one, and a
    failure leaves the old one as it was (the temporary file is removed).

    ``private``: mode 0600 (the compile cache); else the mode a new file gets (0666 less the
    umask). ``durable``: flushed to disk before the rename (files users keep: models).
    ``prefix``: of the temporary file's name (default: ``.<name>.``)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix or "." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if not private:  # (mkstemp creates the file 0600)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
