"""Read the released `*.model` files without executing anything they contain.

The released `*.model` files are pickles of plain dicts (the policy's keyword arguments).
A pickle can name any importable callable and have the unpickler call it, so a hostile
file could run `os.system` on load. We admit only the opcodes that build containers,
strings and numbers: any global lookup other than a handful of harmless container types
is refused before it is resolved, so nothing of the file runs.
"""

import io
import pickle
from pathlib import Path

MAX_MODEL_FILE_BYTES = 16 * 1024 * 1024
"""A `.model` file holds a few hundred bytes of keyword arguments; anything far larger is not one."""

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
}


class UnsafePickleError(ValueError):
    """A pickle asked for something other than plain containers, strings and numbers."""


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refused to load: the pickle asks for '{module}.{name}', but a VPT "
            "'.model' file holds only plain dicts, lists, strings and numbers. The file is corrupt "
            "or hostile; nothing of it was executed. Re-download it (`vptlens download NAME`) or "
            "pass the policy's keyword arguments as JSON instead."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refused to load: the pickle uses persistent ids ({pid!r}).")


MAX_DEPTH = 32
"""Nesting a `.model` file may have (it has 4 levels); deeper is refused before anything recurses over it."""


def _check_plain(obj, source: str) -> None:
    """Refuse anything but plain data, walking iteratively (a hostile file may nest 100k levels deep)."""
    stack = [(obj, "root", 0)]
    while stack:
        obj, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"{source}: refused to load: {path} is nested over {MAX_DEPTH} levels deep")
        if obj is None or isinstance(obj, bool | int | float | str | bytes):
            continue
        if isinstance(obj, dict):
            for key, value in obj.items():
                stack.append((key, f"{path}.<key>", depth + 1))
                stack.append((value, f"{path}.{key}", depth + 1))
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend((value, f"{path}[{i}]", depth + 1) for i, value in enumerate(obj))
        else:
            raise UnsafePickleError(f"{source}: refused to load: {path} is a {type(obj).__name__}, not plain data.")


def load_plain_pickle(path: str | Path) -> object:
    """Unpickle a file that may hold only plain data (dict, list, tuple, set, str, numbers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Pass the path of a VPT '.model' file.")
    size = path.stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise ValueError(
            f"{path}: {size} bytes is far too large for a VPT '.model' file (a few hundred bytes); "
            "did you pass the '.weights' file in its place?"
        )
    data = path.read_bytes()
    try:
        obj = _PlainDataUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e}). Re-download the file.") from e
    _check_plain(obj, str(path))
    return obj
