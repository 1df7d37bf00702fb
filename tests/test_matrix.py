"""The op x dtype x mode matrix as the C extension reports it (``_scanad.ops()``):
everything Python knows about the scans comes from there, and the matrix must agree
with what the functions do."""

import numpy as np
import pytest

import scanad as sa
from scanad import _reference
from scanad import _scanad as _C

pytestmark = pytest.mark.quick

ROWS = _C.ops()
ALL = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
       "float16", "float32", "float64", "complex64", "complex128")


def test_rows_are_numbered_in_order_and_complete():
    assert [row[0] for row in ROWS] == list(range(len(ROWS)))
    for _index, _name, rule, identity, shape, modes, accepts in ROWS:
        assert set(modes) == {"forward", "jvp", "vjp", "vjp_jvp"}
        assert rule in ("accumulate", "order", "log") and identity
        assert shape in ("linear", "piecewise linear", "curved")
        # every dtype x may have reaches a forward kernel, so it is a dtype scanad knows
        assert set(modes["forward"]) <= set(accepts) <= set(ALL)
        assert set(modes["vjp"]) <= set(modes["forward"])


@pytest.mark.parametrize("row", ROWS, ids=[row[1] for row in ROWS])
def test_each_row_reaches_the_registry_the_package_and_the_reference(row):
    index, name, rule, identity, shape, modes, accepts = row
    spec = sa.OPS[name]
    assert spec.fn is getattr(sa, name)
    assert callable(getattr(_reference, name))
    assert (spec.rule, spec.identity_kind, spec.shape) == (rule, identity, shape)
    assert spec.dtypes_forward == accepts and spec.dtypes_derivative == modes["vjp"]
    assert modes["jvp"] == modes["vjp"] == modes["vjp_jvp"]


@pytest.mark.parametrize("row", ROWS, ids=[row[1] for row in ROWS])
@pytest.mark.parametrize("dtype", ALL)
def test_the_matrix_says_what_each_function_accepts(row, dtype):
    name, accepts, derivative = row[1], row[6], row[5]["vjp"]
    fn = getattr(sa, name)
    x = np.ones(5, dtype=dtype)
    if dtype in accepts:
        assert fn(x).shape == (5,)
    else:
        with pytest.raises(TypeError, match="x must be"):
            fn(x)
    if dtype in derivative:
        y, pullback = sa.vjp(name, x)
        assert pullback(np.ones_like(y)).dtype == np.dtype(dtype)
    else:
        with pytest.raises(TypeError):
            sa.vjp(name, x)[1](np.ones(5))


# linear_scan is not a row of the scans' matrix (several inputs, log_a): the C
# extension reports its kernels apart, and the registry derives its dtypes from them
LINEAR = _C.linear_scan_dtypes()


def test_linear_scan_dtypes_come_from_its_kernels():
    spec = sa.OPS["linear_scan"]
    assert set(LINEAR) == {"forward", "jvp", "vjp", "vjp_jvp"}
    assert spec.dtypes_derivative == LINEAR["vjp"] == LINEAR["jvp"] == LINEAR["vjp_jvp"]
    assert set(LINEAR["vjp"]) <= set(LINEAR["forward"]) <= set(spec.dtypes_forward)
    assert set(spec.dtypes_forward) <= set(ALL)


@pytest.mark.parametrize("dtype", ALL + ("longdouble", "object"))
def test_the_matrix_says_what_linear_scan_accepts(dtype):
    x = np.ones(5, dtype=dtype)
    if np.dtype(dtype).name in sa.OPS["linear_scan"].dtypes_forward:
        h = sa.linear_scan(x, x)
        assert h.dtype.name in LINEAR["forward"] and h[-1] == 5
    else:
        with pytest.raises(TypeError, match="a, b and h0 must be"):
            sa.linear_scan(x, x)
    if np.dtype(dtype).name in LINEAR["forward"]:
        assert sa.linear_scan(1, x, dtype=dtype).dtype == np.dtype(dtype)
    else:
        with pytest.raises(TypeError, match="dtype must be"):
            sa.linear_scan(1, 1.0, dtype=dtype)
