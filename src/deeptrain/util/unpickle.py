"""Reading DeepTrain 0.6's pickled files (``*__state.h5``) as data, without running code.

A pickle is a program: loading one with :mod:`pickle` calls whatever callables it names
(``os.system`` included). :class:`RestrictedUnpickler` builds only

* builtin containers and scalars (``dict``, ``list``, ``tuple``, ``set``, ``int``,
  ``float``, ``str``, ``bytes`` ...) and ``collections.OrderedDict``;
* NumPy arrays, scalars and dtypes (the functions NumPy's own pickles call, under
  ``numpy.core`` or ``numpy._core``, and NumPy's scalar types);
* :class:`LegacyRecord` objects for every other global, such as 0.6's
  ``DataGenerator`` or a script's own ``Preprocessor`` subclass: a record holds the
  global's name and the attributes the file gives it, and nothing of the named class (or
  module) is imported or run. Calling such a global (as a malicious ``__reduce__`` does,
  e.g. ``os.system('...')``) is refused with an error that names it, before anything runs.

Bound methods in 0.6's objects (pickled as ``getattr(obj, name)``) become
:class:`LegacyMethod` records of a record; ``getattr`` on anything else is refused.

What the file gives NumPy's C code is checked first (NumPy trusts its own pickles: an
object array's state with fewer items than its shape crashes the interpreter; a dtype's
state set again under an array reads past its memory), and sizes come from the file's own
bytes: a few bytes cannot ask for gigabytes (``bytes(2**30)``, ``numpy.void(2**30)``,
``numpy.ndarray(shape)``, an empty array of a huge shape); see :class:`_NumpyGuard`. The
pure-Python unpickler is used, for those checks (about 10x slower than the C one: 1.5 s for
37 MB; 0.6 state files are small, histories and settings, weights are in their own files).
"""

from __future__ import annotations

import builtins
import collections
import io
import math
import pickle
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "LegacyRecord",
    "LegacyMethod",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "load_legacy_pickle",
    "loads_legacy_pickle",
]

MAX_PICKLE_BYTES = 1 << 30  # a 0.6 state file larger than this is refused unread

_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "int",
        "float",
        "complex",
        "bool",
        "str",
        "slice",
        "object",  # the base in copyreg._reconstructor(cls, object, state)
    )
}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked to call something that is not a plain constructor."""


class LegacyRecord:
    """An object read from a DeepTrain 0.6 pickle, as data: ``legacy_class`` is its class's
    ``module.name`` (as text: that class is never imported) and ``state`` what the file
    sets on it (usually its ``__dict__``; :attr:`attrs` gives that dict)."""

    legacy_class = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        raise RefusedGlobal(
            f"the pickle calls {self.legacy_class}(...): only plain containers, numbers, "
            "strings and NumPy arrays are built from DeepTrain 0.6 files (refused; nothing "
            "was run)"
        )

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def attrs(self) -> dict[str, Any]:
        state = getattr(self, "state", None)
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]  # (__dict__, slots)
        return state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<{self.legacy_class} record: {sorted(self.attrs)[:8]}>"


class LegacyMethod:
    """A bound method of a 0.6 object (``getattr(owner, name)`` in the pickle), as data."""

    def __init__(self, owner: LegacyRecord, name: str):
        self.owner, self.name = owner, name

    def __repr__(self) -> str:
        return f"<method {self.name} of {self.owner.legacy_class} record>"


def _method_reference(owner: Any, name: Any) -> LegacyMethod:
    if not isinstance(owner, LegacyRecord) or not isinstance(name, str):
        raise RefusedGlobal(
            f"the pickle calls builtins.getattr on {type(owner).__name__}: refused (only "
            "methods of DeepTrain 0.6 objects are read, as names)"
        )
    return LegacyMethod(owner, name)


def _reconstructor(cls: Any, base: Any, state: Any) -> LegacyRecord:
    """``copyreg._reconstructor`` (protocol 0 and 1 objects), for records only."""
    if not (isinstance(cls, type) and issubclass(cls, LegacyRecord)) or base is not object:
        raise RefusedGlobal(
            f"the pickle calls copyreg._reconstructor for {cls!r}: refused (only DeepTrain "
            "0.6 objects are rebuilt, as records)"
        )
    return object.__new__(cls)


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode``, as protocols 0-2 write bytes: str to bytes, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal("the pickle calls _codecs.encode on something other than text")
    return text.encode("latin1")


def _buffer(kind: type) -> Any:
    """``bytes(...)``/``bytearray(...)``, but not of a size: a pickle writes its bytes."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise RefusedGlobal(f"the pickle calls {kind.__name__}({args[0]}): refused")
        return kind(*args)

    build.__name__ = kind.__name__
    return build


def _check_array_state(state: Any) -> None:
    """That NumPy can set ``state`` on an array safely: the shape's count of items matches
    the data the file gives (a list of objects, or raw bytes)."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise RefusedGlobal(f"the pickle sets an array's state to a {type(state).__name__}")
    shape, dtype, _, data = state[-4:]
    if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple):
        raise RefusedGlobal("the pickle sets an array's state without a shape and a dtype")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise RefusedGlobal(f"the pickle sets an array's shape to {shape!r}")
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise RefusedGlobal(
                f"the pickle gives an object array of shape {shape} "
                f"{len(data) if isinstance(data, list) else type(data).__name__} items"
            )
    elif not isinstance(data, bytes | bytearray | str) or len(data) != count * dtype.itemsize:
        raise RefusedGlobal(f"the pickle gives an array of shape {shape} data of another size")


def _check_dtype(dtype: np.dtype) -> None:
    """That a dtype the file's state made is one NumPy's own constructor makes (which
    checks fields against the item size: an object field cut short is a wild pointer)."""
    if dtype.fields is not None:
        names = list(dtype.fields)
        spec: Any = {
            "names": names,
            "formats": [dtype.fields[n][0] for n in names],
            "offsets": [dtype.fields[n][1] for n in names],
            "itemsize": dtype.itemsize,
        }
    elif dtype.subdtype is not None:
        spec = dtype.subdtype
    else:
        spec = dtype.str
    try:
        same = np.dtype(spec)
    except (TypeError, ValueError) as e:
        raise RefusedGlobal(f"the pickle makes a NumPy dtype NumPy refuses: {e}") from None
    if same.itemsize != dtype.itemsize or same.hasobject != dtype.hasobject:
        raise RefusedGlobal(f"the pickle makes a NumPy dtype unlike {same}")


def _path_text(*parts: Any) -> str:
    """``pathlib`` paths come back as text (built here, not by the pickle's classes)."""
    return str(PurePosixPath(*[str(p) for p in parts]))


def _windows_path_text(*parts: Any) -> str:
    return str(PureWindowsPath(*[str(p) for p in parts]))


class _Helper:
    """One of the callables the unpickler hands out in place of a global, closed to the
    pickle: a plain function's attributes (``__defaults__`` included) could be set by a
    BUILD opcode, changing how every later load in this process reads its data."""

    __slots__ = ("_fn",)
    _fn: Any

    def __init__(self, fn: Any):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise RefusedGlobal(f"the pickle sets {name!r} of {self!r}: refused")

    def __setstate__(self, state: Any) -> None:
        raise RefusedGlobal(f"the pickle changes {self!r}: refused")

    def __repr__(self) -> str:
        return f"<unpickler helper {self._fn.__name__}>"


_HELPERS = {
    (module, name): _Helper(fn)
    for module, names, fn in (
        ("builtins", ("getattr",), _method_reference),
        ("builtins", ("bytes",), _buffer(bytes)),
        ("builtins", ("bytearray",), _buffer(bytearray)),
        ("copyreg", ("_reconstructor",), _reconstructor),
        ("_codecs", ("encode",), _latin1_bytes),
        ("pathlib", ("Path", "PosixPath", "PurePosixPath", "PurePath"), _path_text),
        ("pathlib", ("WindowsPath", "PureWindowsPath"), _windows_path_text),
    )
    for name in names
}


def _numpy_core() -> Any:
    core = getattr(np, "_core", None)
    if core is None:  # NumPy 1.x
        import numpy.core as core
    return core


def _numpy_global(module: str, name: str) -> Any:
    """The NumPy callables and scalar types NumPy's own pickles name (those the unpickler
    wraps, :class:`_NumpyGuard`, excepted); None for others."""
    reconstruct = {("multiarray", "scalar"), ("numeric", "_frombuffer")}
    for prefix in ("numpy.core.", "numpy._core."):
        if module.startswith(prefix) and (module[len(prefix) :], name) in reconstruct:
            return getattr(getattr(_numpy_core(), module[len(prefix) :]), name)
    if module == "numpy":
        value = vars(np).get(name)  # a scalar type such as numpy.float32 (getattr would
        # import a lazily loaded subpackage the pickle names, e.g. numpy.f2py)
        if isinstance(value, type) and issubclass(value, np.generic):
            return value
    return None


def _dtypes_in(value: Any) -> Iterator[np.dtype]:
    """The dtypes in ``value`` (at any depth of tuples, lists and dicts)."""
    if isinstance(value, np.dtype):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _dtypes_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _dtypes_in(item)


class _NumpyGuard:
    """What a pickle may ask of NumPy, for one load. NumPy trusts its own pickles, so:

    * ``numpy.ndarray`` is a stand-in that only ``_reconstruct`` takes (called, it would
      allocate any shape), and ``_reconstruct`` makes empty arrays only;
    * ``numpy.dtype(...)`` always makes a new dtype (``copy=True``: a state set on the one
      NumPy shares would change every float64 of the process), whose state may be set
      once, before anything is laid out with it: an array, a scalar, another dtype's
      field (setting it later would change the item size under their memory)."""

    def __init__(self) -> None:
        self.ndarray = _Helper(self._refused_ndarray)
        self.reconstruct = _Helper(self._empty_array)
        self.dtype = _Helper(self._new_dtype)
        self._settable: dict[int, np.dtype] = {}  # new dtypes whose state may still be set
        self._keep: list[Any] = []  # (every dtype seen stays alive: ids stay unique)

    def _refused_ndarray(self, *args: Any) -> Any:
        raise RefusedGlobal("the pickle calls numpy.ndarray(...): refused (it allocates)")

    def _empty_array(self, cls: Any, shape: Any, dtype: Any) -> np.ndarray:
        """``numpy.core.multiarray._reconstruct``, as NumPy's pickles call it: an empty
        array that the file's BUILD then fills (NumPy always writes shape ``(0,)``)."""
        if cls is not self.ndarray:
            raise RefusedGlobal(f"the pickle reconstructs an array of {cls!r}: refused")
        if not isinstance(shape, tuple) or shape != (0,):
            raise RefusedGlobal(f"the pickle makes an empty array of shape {shape!r}: refused")
        self.used(dtype)
        return _numpy_core().multiarray._reconstruct(np.ndarray, shape, dtype)

    def _new_dtype(self, spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        self.used(spec)
        dtype = np.dtype(spec, bool(align), True)
        self._settable[id(dtype)] = dtype
        self._keep.append(dtype)
        return dtype

    def used(self, value: Any) -> None:
        """The dtypes in ``value`` lay memory out now: their state is fixed."""
        for dtype in _dtypes_in(value):
            self._settable.pop(id(dtype), None)
            self._keep.append(dtype)

    def build(self, target: Any, state: Any) -> None:
        """Check a BUILD of ``state`` on ``target`` before it runs."""
        if isinstance(target, np.ndarray):
            _check_array_state(state)
            self.used(state)
        elif isinstance(target, np.dtype):
            if self._settable.pop(id(target), None) is None:
                raise RefusedGlobal(
                    "the pickle sets the state of a dtype already in use, or not its own"
                )
            self.used(state)  # (its fields' dtypes)
        elif isinstance(target, np.generic):
            raise RefusedGlobal(f"the pickle sets the state of a NumPy {type(target).__name__}")


def _refuse_numpy_type(func: Any) -> None:
    """A NumPy scalar type called by the pickle (``numpy.void(2**30)`` allocates); NumPy's
    own pickles make scalars with ``multiarray.scalar``."""
    if isinstance(func, type) and issubclass(func, np.generic):
        raise RefusedGlobal(f"the pickle calls numpy.{func.__name__}(...): refused")


_PURE = pickle._Unpickler
_BUILD: Any = _PURE.dispatch[pickle.BUILD[0]]
_REDUCE: Any = _PURE.dispatch[pickle.REDUCE[0]]
_NEWOBJ: Any = _PURE.dispatch[pickle.NEWOBJ[0]]
_NEWOBJ_EX: Any = _PURE.dispatch[pickle.NEWOBJ_EX[0]]
_INSTANTIATE: Any = vars(_PURE)["_instantiate"]


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that builds data only (see the module docstring). It is the pure-Python
    one (``pickle._Unpickler``): its opcodes are methods, so what a BUILD or a call gives
    NumPy is checked before NumPy's C code sees it."""

    def __init__(self, file: Any):
        super().__init__(file)
        self._records: dict[str, type[LegacyRecord]] = {}
        self._numpy = _NumpyGuard()

    def _stack(self) -> list[Any]:
        return vars(self)["stack"]  # (typeshed declares neither the stack nor the opcodes)

    def _load_build(self) -> None:
        stack = self._stack()
        target, state = stack[-2], stack[-1]
        self._numpy.build(target, state)
        _BUILD(self)
        if isinstance(target, np.dtype):
            _check_dtype(target)

    def _load_reduce(self) -> None:
        stack = self._stack()
        func, args = stack[-2], stack[-1]
        _refuse_numpy_type(func)
        self._numpy.used(args)  # (scalar(dtype, bytes) lays a scalar out with its dtype)
        _REDUCE(self)

    def _load_newobj(self) -> None:
        stack = self._stack()
        _refuse_numpy_type(stack[-2])
        self._numpy.used(stack[-1])
        _NEWOBJ(self)

    def _load_newobj_ex(self) -> None:
        stack = self._stack()
        _refuse_numpy_type(stack[-3])
        self._numpy.used(stack[-2:])
        _NEWOBJ_EX(self)

    def _instantiate(self, klass: Any, args: Any) -> None:  # (protocol 0's INST and OBJ)
        _refuse_numpy_type(klass)
        self._numpy.used(args)
        _INSTANTIATE(self, klass, args)

    dispatch: ClassVar[dict[int, Any]] = {
        **_PURE.dispatch,
        pickle.BUILD[0]: _load_build,
        pickle.REDUCE[0]: _load_reduce,
        pickle.NEWOBJ[0]: _load_newobj,
        pickle.NEWOBJ_EX[0]: _load_newobj_ex,
    }

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # protocols 0-2 write Python 2's names
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) in _HELPERS:
            return _HELPERS[module, name]
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
            guarded = {"ndarray": "ndarray", "dtype": "dtype", "_reconstruct": "reconstruct"}
            if name in guarded and (module == "numpy") == (name != "_reconstruct"):
                return getattr(self._numpy, guarded[name])
        found = _numpy_global(module, name)
        if found is not None:
            return found
        return self._record_type(f"{module}.{name}")

    def _record_type(self, qualname: str) -> type[LegacyRecord]:
        """A record type standing for the global ``qualname`` (one per name)."""
        if qualname not in self._records:
            self._records[qualname] = type(
                qualname.rsplit(".", 1)[-1], (LegacyRecord,), {"legacy_class": qualname}
            )
        return self._records[qualname]


def loads_legacy_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """The data in the pickle ``data``, read with :class:`RestrictedUnpickler`. A refused
    call raises :class:`RefusedGlobal`; anything else wrong, ``ValueError`` naming
    ``source``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except RefusedGlobal as e:
        raise RefusedGlobal(f"{source}: {e}") from None
    except Exception as e:  # a damaged or foreign file: its content is not ours to trust
        raise ValueError(
            f"{source} is not a readable DeepTrain 0.6 pickle: {type(e).__name__}: {e}"
        ) from None


def load_legacy_pickle(path: str | Path) -> Any:
    """:func:`loads_legacy_pickle` of the file ``path``."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise ValueError(f"{path} is {size} bytes, more than a DeepTrain 0.6 state holds")
    return loads_legacy_pickle(path.read_bytes(), str(path))
