"""HDF5 files written from a template of their structure (``saving.h5_template``).

Real files read back with h5py: the file written from the template is byte-identical to
the one h5py made for the same arrays, holds the new arrays when they change, and
structures the template cannot hold (non-native byte order) are written by h5py each
time.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from deeptrain.saving.h5_template import template_of, write_h5


def groups_of(rng: np.random.Generator, name: str = "model") -> list:
    return [
        ("vars", {"name": name}, []),
        (
            "layers/dense/vars",
            {"name": "dense"},
            [
                ("0", rng.normal(size=(300, 7)).astype("float32"), {}),  # 8 KB
                ("1", rng.normal(size=7).astype("float16"), {}),
                ("2", np.asarray(rng.integers(0, 9), dtype="int64"), {}),  # 0-d
                ("3", rng.normal(size=(3, 4)).astype("float64")[:, ::2], {}),  # strided
                ("4", np.zeros((0, 5), "float32"), {}),  # no bytes
                ("5", rng.random(6) > 0.5, {"kind": "mask"}),
            ],
        ),
        ("optimizer/vars", {"name": "adam"}, [("0", np.asarray(7, "int64"), {})]),
    ]


def read_all(path: Path) -> list:
    found = []

    def visit(name, obj):
        attrs = sorted((k, str(v)) for k, v in obj.attrs.items())
        if isinstance(obj, h5py.Dataset):
            found.append((name, attrs, obj.shape, obj.dtype.str, obj[()].tobytes()))
        else:
            found.append((name, attrs))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def expected(groups: list) -> list:
    """What h5py reads from a file of ``groups`` (intermediate groups included)."""
    tree: dict[str, tuple] = {}
    for path, attrs, datasets in groups:
        parts = path.split("/")
        for i in range(1, len(parts)):
            tree.setdefault("/".join(parts[:i]), ("/".join(parts[:i]), []))
        tree[path] = (path, sorted((k, str(v)) for k, v in attrs.items()))
        for name, array, ds_attrs in datasets:
            a = np.array(array, order="C")  # (0-d stays 0-d)
            tree[f"{path}/{name}"] = (
                f"{path}/{name}",
                sorted((k, str(v)) for k, v in ds_attrs.items()),
                a.shape,
                a.dtype.str,
                a.tobytes(),
            )
    return [tree[k] for k in sorted(tree)]


def test_later_files_come_from_the_template_byte_for_byte(tmp_path):
    rng = np.random.default_rng(0)
    first = groups_of(rng, "first-structure")
    assert template_of(first) is None
    write_h5(tmp_path / "a.h5", first)  # h5py makes it; its structure is kept
    assert template_of(first) is not None
    assert read_all(tmp_path / "a.h5") == expected(first)
    write_h5(tmp_path / "b.h5", first)  # from the template: the same bytes
    assert (tmp_path / "b.h5").read_bytes() == (tmp_path / "a.h5").read_bytes()
    changed = groups_of(np.random.default_rng(1), "first-structure")  # same structure
    write_h5(tmp_path / "c.h5", changed)
    assert read_all(tmp_path / "c.h5") == expected(changed)
    assert read_all(tmp_path / "c.h5") != read_all(tmp_path / "a.h5")


def test_a_new_structure_gets_its_own_template(tmp_path):
    rng = np.random.default_rng(2)
    groups = groups_of(rng, "second-structure")
    write_h5(tmp_path / "a.h5", groups)
    other = groups_of(rng, "second-structure")
    other[1][2][0] = ("0", rng.normal(size=(301, 7)).astype("float32"), {})  # a new shape
    assert template_of(other) is None
    write_h5(tmp_path / "b.h5", other)
    assert read_all(tmp_path / "b.h5") == expected(other)
    write_h5(tmp_path / "a.h5", groups)  # an existing file is replaced
    assert read_all(tmp_path / "a.h5") == expected(groups)


def test_arrays_hdf5_stores_differently_go_through_h5py_every_time(tmp_path):
    rng = np.random.default_rng(3)
    groups = groups_of(rng, "big-endian")
    groups[1][2].append(("6", np.arange(5, dtype=">i4"), {}))  # not native: converted
    for name in ("a.h5", "b.h5"):
        write_h5(tmp_path / name, groups)
        assert template_of(groups) is None
        with h5py.File(tmp_path / name, "r") as f:
            np.testing.assert_array_equal(f["layers/dense/vars/6"][()], np.arange(5))


def test_attributes_other_than_plain_scalars_get_no_template(tmp_path):
    groups = groups_of(np.random.default_rng(4), "array-attribute")
    groups[0][1]["scale"] = np.arange(3)
    for name in ("a.h5", "b.h5"):
        write_h5(tmp_path / name, groups)
        assert template_of(groups) is None
        assert read_all(tmp_path / name) == expected(groups)


def test_ml_dtypes_arrays_get_no_template(tmp_path):
    """bfloat16 (stored opaque, as Keras' H5IOStore does) is not NumPy's own number type."""
    import ml_dtypes

    groups = groups_of(np.random.default_rng(5), "bfloat16")
    groups[1][2].append(("6", np.arange(4).astype(ml_dtypes.bfloat16), {"dtype": "bfloat16"}))
    for name in ("a.h5", "b.h5"):
        write_h5(tmp_path / name, groups)
        assert template_of(groups) is None
        with h5py.File(tmp_path / name, "r") as f:
            raw = f["layers/dense/vars/6"][()]
        np.testing.assert_array_equal(raw.view(ml_dtypes.bfloat16).astype("float32"), np.arange(4))


def test_parts_are_written_in_order_whatever_each_system_call_takes(tmp_path, monkeypatch):
    """More parts than one writev takes, empty parts, and writes the kernel cuts short
    (real writev calls given at most 7 bytes: a regular file is cut short only at a signal
    or a full disk)."""
    import os

    from deeptrain.saving import h5_template

    rng = np.random.default_rng(6)
    parts = [memoryview(rng.bytes(int(n))) for n in rng.integers(0, 40, 2500)]
    expected_bytes = b"".join(parts)
    for name, limit in (("whole", None), ("short", 7)):
        if limit is not None:
            real = os.writev

            def short(fd, buffers, real=real, limit=limit):
                out, left = [], limit
                for b in buffers:
                    if left <= 0:
                        break
                    out.append(b[:left])
                    left -= len(out[-1])
                return real(fd, out)

            monkeypatch.setattr(os, "writev", short)
        fd = os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT)
        try:
            h5_template._writev_all(fd, list(parts))
        finally:
            os.close(fd)
        assert (tmp_path / name).read_bytes() == expected_bytes


def test_dtypes_with_metadata_get_no_template(tmp_path):
    """h5py's enum types are NumPy integers with metadata: a file of plain int8 made after
    one of enum int8 of the same structure holds plain integers."""
    enum = h5py.enum_dtype({"off": 0, "on": 1}, basetype="i1")
    groups = [("vars", {}, [("0", np.array([0, 1, 1], dtype=enum), {})])]
    write_h5(tmp_path / "enum.h5", groups)
    assert template_of(groups) is None
    plain = [("vars", {}, [("0", np.array([0, 1, 1], dtype="i1"), {})])]
    write_h5(tmp_path / "plain.h5", plain)
    with h5py.File(tmp_path / "enum.h5", "r") as f:
        assert h5py.check_enum_dtype(f["vars/0"].dtype) == {"off": 0, "on": 1}
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert h5py.check_enum_dtype(f["vars/0"].dtype) is None
        np.testing.assert_array_equal(f["vars/0"][()], [0, 1, 1])
