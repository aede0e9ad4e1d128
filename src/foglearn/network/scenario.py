"""The fog network over time: the quantities of problem (5)-(9) (docs/model.md §1).

A :class:`Scenario` holds, for ``T`` slots and ``n`` devices, time-major arrays
(``[T, n]`` for devices, ``[T, E]`` for links) and a static sparse directed edge
list ``src[E] -> dst[E]``. It is validated when built: any violated rule raises
:class:`ScenarioError` naming the field, the index and the rule. Nothing is clipped.
"""

from __future__ import annotations

import io
import os
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import tomli_w

from foglearn.errors import InputError
from foglearn.io import atomic_write
from foglearn.npzfile import read_npz

FORMAT = "foglearn-scenario"
FORMAT_VERSION = 1

_DEVICE_FIELDS = ("collected", "proc_cost", "proc_cap", "error_weight", "active")
_LINK_FIELDS = ("link_cost", "link_cap", "link_up")
#: Counts (``D_i(t)``, their total ``|D_V|``, device ids) must be exact in float64, where the
#: planners sum them with costs: at most ``2**53``.
MAX_COUNT = 2**53
#: Per-point costs are at most this, so that a plan's cost (a cost times at most ``MAX_COUNT``
#: points, summed) stays a finite float: at 1e308 the planners overflowed to inf/NaN.
MAX_COST = 1e200
#: The ``.npz`` members' dtypes as :meth:`Scenario.save` writes them.
_FILE_DTYPES = {"collected": np.dtype(np.int64), "src": np.dtype(np.int64), "dst": np.dtype(np.int64),
                "active": np.dtype(bool), "link_up": np.dtype(bool)}
#: A scenario file's TOML header is refused beyond this many bytes.
_MAX_HEADER_BYTES = 1 << 20


class ScenarioError(InputError):
    """A scenario field breaks a rule; the message names the field, index and rule."""


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(k) for k in np.argwhere(mask)[0])


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(k) for k in idx) + "]"


def _frozen(arr: np.ndarray) -> bool:
    """Whether nothing can write to ``arr``'s memory: it and every array it views are read-only."""
    a: Any = arr
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)


def _freeze(arr: np.ndarray) -> None:
    """Make ``arr`` and every array it views read-only (arrays this module owns)."""
    a: Any = arr
    while isinstance(a, np.ndarray):
        a.setflags(write=False)
        a = a.base


def _owned(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """``arr`` as a C-contiguous ``dtype`` array that no caller can write to: a copy, unless ``arr``
    already is one (a scenario's own arrays, so :meth:`Scenario.replace` and :meth:`Scenario.load`
    copy nothing)."""
    out = arr.astype(dtype, copy=False)
    if (out is arr and not _frozen(arr)) or not out.flags.c_contiguous:
        out = np.array(out, order="C")
    return out


def _as_array(name: str, value: Any, dtype: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - re-raised with the field name
        raise ScenarioError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object:
        raise ScenarioError(f"{name}: must be a numeric array, got ragged or non-numeric data")
    if arr.dtype.kind == "c":
        raise ScenarioError(f"{name}: must be real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":  # (numpy counts timedelta64 as an integer)
        raise ScenarioError(f"{name}: must be {'boolean' if dtype is bool else 'numeric'}, got dtype {arr.dtype}")
    if dtype is bool:
        if arr.dtype != bool:
            bad = ~np.isin(arr, (0, 1))
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]!r}: must be true/false (0 or 1)")
        return _owned(arr, bool)
    if dtype is np.int64:
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: must be a whole number")
            frac = arr != np.round(arr)
            if frac.any():
                idx = _first_bad(frac)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: must be a whole number of datapoints")
        kind = arr.dtype.kind
        limits = np.finfo(arr.dtype) if kind == "f" else np.iinfo(arr.dtype) if kind in "iu" else None
        if limits is not None and float(limits.max) > MAX_COUNT:  # before the cast, which would wrap
            huge = (arr > MAX_COUNT) | (arr < -MAX_COUNT)
            if huge.any():
                idx = _first_bad(huge)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: must be at most 2^53 = {MAX_COUNT} "
                                    "in magnitude (exact in float64)")
        return _owned(arr, np.int64)
    return _owned(arr, np.float64)


#: A ``[T, n]`` or ``[T, E]`` array after construction; ``None`` is accepted by the constructor.
OptionalArray: TypeAlias = Any

@dataclass(frozen=True, eq=False)
class Scenario:
    """A fog network over ``T`` slots (paper Sec. III-A, docs/model.md §1).

    Parameters
    ----------
    collected : int ``[T, n]``
        ``D_i(t)``, datapoints collected by device ``i`` in slot ``t`` (≥ 0; 0 where inactive).
    proc_cost : float ``[T, n]``
        ``c_i(t)``, per-point processing cost (≥ 0, finite).
    error_weight : float ``[T, n]``
        ``f_i(t)``, weight of the error term: the per-point discard cost of the linear model,
        the coefficient of ``1/sqrt(G_i(t))`` in the square-root model (≥ 0, finite).
    src, dst : int ``[E]``
        The static directed edge list ``E``: link ``e`` goes ``src[e] -> dst[e]``
        (no self-loops, no duplicates, devices in ``0..n-1``).
    link_cost : float ``[T, E]``
        ``c_ij(t)``, per-point transfer cost (≥ 0, finite).
    proc_cap : float ``[T, n]``, optional
        ``C_i(t)``, processing capacity in points (≥ 0; ``inf`` = none). Default: none.
    link_cap : float ``[T, E]``, optional
        ``C_ij(t)``, link capacity in points (≥ 0; ``inf`` = none). Default: none.
    link_up : bool ``[T, E]``, optional
        ``E(t)``: whether link ``e`` works in slot ``t``. Default: all up.
    active : bool ``[T, n]``, optional
        ``V(t)``: whether device ``i`` is active in slot ``t``. Default: all active.
    info : dict, optional
        Provenance (generator, seed, topology ...); saved with the scenario, TOML-serialisable.
    """

    collected: np.ndarray
    proc_cost: np.ndarray
    error_weight: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    link_cost: np.ndarray
    # ``None`` at construction means "none / all": __post_init__ replaces it by the full array
    # (inf capacities, every link up, every device active). Typed ``OptionalArray`` because a
    # dataclass field cannot say "np.ndarray | None in, np.ndarray out".
    proc_cap: OptionalArray = None
    link_cap: OptionalArray = None
    link_up: OptionalArray = None
    active: OptionalArray = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        collected = _as_array("collected", self.collected, np.int64)
        if collected.ndim != 2:
            raise ScenarioError(f"collected: must be a [T, n] array, got shape {collected.shape}")
        T, n = collected.shape
        if T < 1 or n < 1:
            raise ScenarioError(f"collected: needs at least one slot and one device, got shape {collected.shape}")
        src = _as_array("src", self.src, np.int64)
        dst = _as_array("dst", self.dst, np.int64)
        if src.ndim > 1 or dst.ndim > 1:
            raise ScenarioError("src/dst: must be one-dimensional edge lists")
        src, dst = src.reshape(-1), dst.reshape(-1)
        if src.shape != dst.shape:
            raise ScenarioError(f"dst: must have the same length as src ({src.shape[0]}), got {dst.shape[0]}")
        E = src.shape[0]
        for name, arr in (("src", src), ("dst", dst)):
            bad = (arr < 0) | (arr >= n)
            if bad.any():
                e = int(np.argmax(bad))
                raise ScenarioError(f"{name}[{e}] = {arr[e]}: must name a device in 0..{n - 1}")
        loops = src == dst
        if loops.any():
            e = int(np.argmax(loops))
            raise ScenarioError(f"src[{e}] = dst[{e}] = {src[e]}: self-loops are not links")
        if E:
            key = src * n + dst
            if bool(np.all(key[1:] >= key[:-1])):  # sorted (as the generators give it): duplicates are adjacent, O(E)
                twice = np.flatnonzero(key[1:] == key[:-1])
                k = key[twice[0]] if twice.size else None
            else:
                uniq, counts = np.unique(key, return_counts=True)
                k = uniq[np.argmax(counts > 1)] if (counts > 1).any() else None
            if k is not None:
                dup = np.flatnonzero(key == k)
                raise ScenarioError(
                    f"src/dst: link {int(src[dup[0]])}->{int(dst[dup[0]])} appears twice (edges {dup[0]} and {dup[1]})"
                )
        set_(self, "collected", collected)
        set_(self, "src", src)
        set_(self, "dst", dst)

        def device(name: str, value: Any, default: Any, dtype: Any) -> np.ndarray:
            arr = np.full((T, n), default, dtype=np.float64 if dtype is not bool else bool) if value is None \
                else _as_array(name, value, dtype)
            if arr.shape != (T, n):
                raise ScenarioError(f"{name}: must have shape [T, n] = {(T, n)}, got {arr.shape}")
            return arr

        def link(name: str, value: Any, default: Any, dtype: Any) -> np.ndarray:
            arr = np.full((T, E), default, dtype=np.float64 if dtype is not bool else bool) if value is None \
                else _as_array(name, value, dtype)
            if arr.shape != (T, E):
                raise ScenarioError(f"{name}: must have shape [T, E] = {(T, E)}, got {arr.shape}")
            return arr

        proc_cost = device("proc_cost", self.proc_cost, 0.0, np.float64)
        error_weight = device("error_weight", self.error_weight, 0.0, np.float64)
        proc_cap = device("proc_cap", self.proc_cap, np.inf, np.float64)
        active = device("active", self.active, True, bool)
        link_cost = link("link_cost", self.link_cost, 0.0, np.float64)
        link_cap = link("link_cap", self.link_cap, np.inf, np.float64)
        link_up = link("link_up", self.link_up, True, bool)

        for name, arr in (("proc_cost", proc_cost), ("error_weight", error_weight), ("link_cost", link_cost)):
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: costs must be finite numbers")
            bad = arr < 0
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: costs must be ≥ 0")
            bad = arr > MAX_COST
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: costs must be ≤ {MAX_COST:g} "
                                    "(so that a plan's total cost stays finite)")
        for name, arr in (("proc_cap", proc_cap), ("link_cap", link_cap)):
            bad = np.isnan(arr) | (arr < 0)
            if bad.any():
                idx = _first_bad(bad)
                raise ScenarioError(f"{name}{_fmt_index(idx)} = {arr[idx]}: capacities must be ≥ 0 (inf = none)")
        bad = collected < 0
        if bad.any():
            idx = _first_bad(bad)
            raise ScenarioError(f"collected{_fmt_index(idx)} = {collected[idx]}: counts must be ≥ 0")
        total = float(collected.sum(dtype=np.float64))  # an int64 sum could wrap negative
        if total > MAX_COUNT:
            raise ScenarioError(f"collected: total Σ D_i(t) = {total:.17g} must be at most 2^53 = {MAX_COUNT} "
                                "(exact in float64)")
        bad = (~active) & (collected > 0)
        if bad.any():
            idx = _first_bad(bad)
            raise ScenarioError(
                f"collected{_fmt_index(idx)} = {collected[idx]}: an inactive device "
                f"(active{_fmt_index(idx)} = false) collects nothing"
            )
        if not isinstance(self.info, dict):
            raise ScenarioError("info: must be a dict of TOML-serialisable provenance")
        try:
            tomli_w.dumps(_toml_safe(self.info))
        except (TypeError, ValueError) as exc:  # else save() would fail long after the mistake
            raise ScenarioError(f"info: must be a dict of TOML-serialisable provenance ({exc})") from None
        for name, arr in (("proc_cost", proc_cost), ("error_weight", error_weight), ("proc_cap", proc_cap),
                          ("active", active), ("link_cost", link_cost), ("link_cap", link_cap), ("link_up", link_up)):
            _freeze(arr)
            set_(self, name, arr)
        for arr in (collected, src, dst):
            _freeze(arr)

    # ------------------------------------------------------------------ shape
    @property
    def horizon(self) -> int:
        """``T``, the number of slots."""
        return int(self.collected.shape[0])

    @property
    def n_devices(self) -> int:
        """``n``, the number of devices."""
        return int(self.collected.shape[1])

    @property
    def n_edges(self) -> int:
        """``|E|``, the number of directed links in the static edge list."""
        return int(self.src.shape[0])

    @property
    def device_names(self) -> list[str]:
        """Device ``i``'s name: ``info["device_names"][i]`` when ``info`` names every device (a replayed
        trace's node ids, docs/traces.md), else ``"0"`` … ``"n-1"``."""
        names = self.info.get("device_names")
        if isinstance(names, list) and len(names) == self.n_devices and all(isinstance(x, str) for x in names):
            return list(names)
        return [str(i) for i in range(self.n_devices)]

    @property
    def has_capacities(self) -> bool:
        """Whether any finite capacity ``C_i(t)`` or ``C_ij(t)`` is set."""
        return bool(np.isfinite(self.proc_cap).any() or np.isfinite(self.link_cap).any())

    @property
    def total_collected(self) -> int:
        """``|D_V|``: all datapoints collected in the run."""
        return int(self.collected.sum())

    # ------------------------------------------------------ derived availability
    def usable_links(self) -> np.ndarray:
        """Bool ``[T, E]``: offloading on link ``e`` at ``t`` is allowed.

        A link is usable when it is up, both ends are active at ``t``, the receiver is active at
        ``t + 1`` (where it processes the data) and ``t < T`` (offloading in the last slot is
        forbidden, docs/model.md §2).
        """
        T = self.horizon
        ok = self.link_up & self.active[:, self.src] & self.active[:, self.dst]
        ok[:-1] &= self.active[1:, self.dst]
        ok[T - 1] = False
        return ok

    def effective_proc_cap(self) -> np.ndarray:
        """``C_i(t)`` with inactive devices at 0 (they process nothing)."""
        return np.where(self.active, self.proc_cap, 0.0)

    # --------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scenario losslessly to ``path`` (a ``.npz`` holding the arrays and a TOML header).

        The write is atomic (temporary file + rename).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        header = {"format": FORMAT, "version": FORMAT_VERSION, "n_devices": self.n_devices,
                  "horizon": self.horizon, "n_edges": self.n_edges, "info": _toml_safe(self.info)}
        arrays = {name: getattr(self, name) for name in (*_DEVICE_FIELDS, *_LINK_FIELDS, "src", "dst")}
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.frombuffer(tomli_w.dumps(header).encode(), dtype=np.uint8), **arrays)
        try:
            return atomic_write(path, buf.getvalue())
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot write the scenario ({exc.strerror or exc})") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scenario:
        """Read a scenario written by :meth:`save`; a file that is not one raises :class:`ScenarioError`.

        The TOML header is read first; each array's ``.npy`` header must then give the shape the
        header says (``[T, n]``, ``[T, E]``, ``[E]``) and the dtype :meth:`save` writes, and fit in
        what the archive holds, before its data is read (:func:`foglearn.npzfile.read_npz`): a
        file claiming huge arrays allocates nothing, and loading takes the arrays' size, once.
        """
        path = Path(path)
        if not path.exists():
            raise ScenarioError(f"{path}: no such scenario file")
        if not path.is_file():
            raise ScenarioError(f"{path}: not a file")

        def header_rule(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
            if name == "header":
                return None if dtype == np.uint8 and len(shape) == 1 and shape[0] <= _MAX_HEADER_BYTES \
                    else f"must be at most {_MAX_HEADER_BYTES} bytes of TOML text"
            return None

        try:
            with zipfile.ZipFile(path) as zf:
                names = {m.removesuffix(".npy") for m in zf.namelist()}
        except (OSError, zipfile.BadZipFile) as exc:
            raise ScenarioError(f"{path}: not a foglearn scenario file ({type(exc).__name__}: {exc})") from exc
        if "header" not in names:
            raise ScenarioError(f"{path}: not a foglearn scenario (no header)")
        try:
            head = read_npz(path, ["header"], ScenarioError, header_rule)["header"]
            header = tomllib.loads(head.tobytes().decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"{path}: not a foglearn scenario file (header: {exc})") from exc
        if header.get("format") != FORMAT:
            raise ScenarioError(f"{path}: not a foglearn scenario (format = {header.get('format')!r})")
        sizes = {}
        for key in ("version", "horizon", "n_devices", "n_edges"):
            value = header.get(key)
            if type(value) is not int or value < 0:
                raise ScenarioError(f"{path}: header {key} = {value!r}: must be a whole number ≥ 0")
            sizes[key] = value
        if sizes["version"] > FORMAT_VERSION:
            raise ScenarioError(f"{path}: scenario format version {sizes['version']} is newer "
                                f"than this foglearn reads ({FORMAT_VERSION})")
        T, n, E = sizes["horizon"], sizes["n_devices"], sizes["n_edges"]
        shapes = {**dict.fromkeys(_DEVICE_FIELDS, (T, n)), **dict.fromkeys(_LINK_FIELDS, (T, E)), "src": (E,),
                  "dst": (E,)}

        def array_rule(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
            want = _FILE_DTYPES.get(name, np.dtype(np.float64))
            if shape != shapes[name] or dtype != want:
                return (f"must be {want} of shape {list(shapes[name])} (T = {T}, n = {n}, E = {E} from the header), "
                        f"got {dtype} of shape {list(shape)}")
            return None

        extra = sorted(names - {"header", *shapes})
        if extra:
            raise ScenarioError(f"{path}: unexpected arrays {extra} (a scenario file holds {['header', *shapes]})")
        arrays = read_npz(path, shapes, ScenarioError, array_rule)
        for arr in arrays.values():  # ours alone: frozen, the constructor keeps them without a copy
            _freeze(arr)
        info = header.get("info", {})
        try:
            return cls(info=info, **arrays)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> Scenario:
        """A new, validated scenario with some fields changed."""
        fields = {name: getattr(self, name) for name in
                  (*_DEVICE_FIELDS, *_LINK_FIELDS, "src", "dst", "info")}
        fields.update(changes)
        return Scenario(**fields)

    def window(self, start: int, stop: int) -> Scenario:
        """Slots ``start..stop-1`` as a scenario of their own (same devices and edges)."""
        if not (isinstance(start, int | np.integer) and isinstance(stop, int | np.integer)
                and 0 <= start < stop <= self.horizon):
            raise ScenarioError(f"window: need 0 ≤ start < stop ≤ T = {self.horizon}, got {start}..{stop}")
        sl = slice(start, stop)
        return self.replace(**{k: getattr(self, k)[sl] for k in (*_DEVICE_FIELDS, *_LINK_FIELDS)},
                            info={**self.info, "window": [start, stop]})

    def summary(self) -> dict[str, Any]:
        """Headline numbers for tables and reports."""
        return {"n_devices": self.n_devices, "horizon": self.horizon, "n_edges": self.n_edges,
                "collected": self.total_collected, "capacities": self.has_capacities,
                "active_fraction": float(self.active.mean()),
                "links_up_fraction": float(self.link_up.mean()) if self.n_edges else 1.0}

    def __repr__(self) -> str:
        return (f"Scenario(n_devices={self.n_devices}, horizon={self.horizon}, n_edges={self.n_edges}, "
                f"collected={self.total_collected}, capacities={self.has_capacities})")


def _toml_safe(value: Any) -> Any:
    """Provenance as TOML can hold it (None dropped, numpy scalars unwrapped, tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_safe(v) for v in value if v is not None]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
