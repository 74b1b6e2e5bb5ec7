"""Fuzzing the CSV reader, ``discover`` and ``discovery run`` with small, odd tables.

Whatever the file holds (odd names, missing or infinite cells, text, another delimiter or
encoding, no rows at all), reading it either gives a table or raises one ``DataError`` whose
message is one line starting with the call form; no other exception escapes, and the file is
byte for byte what it was. ``discover`` and the command line keep the same contract on tiny
tables (one network of 4 units, 2 epochs: the contract, not the fit, is under test).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import discovery
from discovery.cli import main
from discovery.data import DataWarning, load_table
from discovery.errors import DataError

# Names: plain, with spaces, unicode (Latin-1 and beyond), SymPy clashes, empty, duplicates.
NAME_ALPHABET = st.sampled_from(list("abxyzXY_019 -.éüßµΔπ中") + ["gamma", "E", "lambda"])
NAMES = st.lists(NAME_ALPHABET, min_size=0, max_size=4).map("".join)
SOME_NAME = st.lists(NAME_ALPHABET, min_size=1, max_size=4).map("".join)  # a blank one is rarer
NUMBER = st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr)
ODD_CELL = st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "NA", "?", "abc", "1,5", "1e400", "0x1p3", "TRUE"])
GAP = st.sampled_from(["", "nan", "NA", "?"])
INFINITE = st.sampled_from(["inf", "-inf", "Infinity", "1e400"])
# discover's own arithmetic (means, squares, polynomial terms) overflows near the float64 limit,
# see test_discover_on_values_near_the_float64_limit below; its fuzz stays within 1e30.
MODERATE = st.floats(-1e30, 1e30, allow_nan=False, width=64).map(repr)


def cells(number):
    """Per table: only numbers, numbers with a few gaps, with a few infinities, or anything at all."""
    return {"clean": number, "gaps": st.one_of(*[number] * 6, GAP), "infinite": st.one_of(*[number] * 12, INFINITE),
            "odd": st.one_of(number, number, ODD_CELL)}


DELIMITERS = [",", ";", "\t"]
ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "utf-16"]  # Python's "utf-16" writes a BOM

SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw, min_rows: int = 0, max_rows: int = 14, min_cols: int = 0, number=NUMBER, names=NAMES):
    """(header, rows): min_cols-4 columns, min_rows-max_rows rows; rows may be short or long."""
    n_cols = draw(st.integers(min_cols, 4))
    header = draw(st.lists(names, min_size=n_cols, max_size=n_cols))
    if n_cols >= 2 and draw(st.integers(0, 5)) == 0:
        header[1] = header[0]  # a duplicate name
    n_rows = draw(st.integers(min_rows, max_rows))
    width = st.integers(max(n_cols - 1, 0), n_cols + 1) if draw(st.integers(0, 9)) == 0 else st.just(n_cols)
    kinds = cells(number)
    cell = kinds[draw(st.sampled_from(sorted(kinds)))]
    rows = [draw(st.lists(cell, min_size=w, max_size=w)) for w in [draw(width) for _ in range(n_rows)]]
    return header, rows


def render(header, rows, delimiter: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def encode(text: str, encoding: str) -> bytes | None:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return None  # e.g. a CJK name in Latin-1: such a file cannot exist


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outcome(read, path: Path, call: str | tuple[str, ...]):
    """Run ``read(path)``: the result, or the DataError's message; checks message and file.

    ``call`` is the call form (or forms) a message may start with.
    """
    before = digest(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            result = read(path)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(call), message
        result = message
    assert digest(path) == before, "the input file was modified"
    return result


def check_table(table, min_rows: int) -> None:
    assert table.X.dtype == np.float64 and table.y.dtype == np.float64
    assert table.X.ndim == 2 and table.X.shape[0] == table.y.shape[0] >= min_rows
    assert np.isfinite(table.X).all() and np.isfinite(table.y).all() and np.ptp(table.y) > 0
    names = [table.target_name, *table.feature_names]
    # names are kept as written (no renaming), so only uniqueness and the absence of pandas'
    # placeholder for a blank header cell (the fuzz alphabet cannot spell it) can be asserted here
    assert len(set(names)) == len(names) and all(n.strip() for n in names), names
    assert not any(n.startswith("Unnamed:") for n in names), names
    assert len(table.feature_names) == table.X.shape[1] >= 1


@settings(max_examples=200, **SETTINGS)
@given(tables(), st.sampled_from(DELIMITERS), st.sampled_from(ENCODINGS))
def test_load_table_gives_a_table_or_one_data_error_and_never_touches_the_file(table, delimiter, encoding):
    raw = encode(render(*table, delimiter), encoding)
    if raw is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(raw)
        got = outcome(lambda p: load_table(p, min_rows=2), path, f"load_table({str(path)!r})")
        event(f"refused: {got.split(': ', 1)[-1][:30]}" if isinstance(got, str) else "read")
        if not isinstance(got, str):
            check_table(got, 2)
        if encoding in ("utf-8-sig", "utf-16"):
            # The byte-order mark says which encoding it is: same outcome as plain UTF-8.
            path.write_bytes(render(*table, delimiter).encode("utf-8"))
            plain = outcome(lambda p: load_table(p, min_rows=2), path, f"load_table({str(path)!r})")
            same(got, plain)


def same(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, str):
        assert a == b
    else:
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        assert (a.feature_names, a.target_name, a.renamed) == (b.feature_names, b.target_name, b.renamed)


@settings(max_examples=150, **SETTINGS)
@given(
    st.integers(2, 4),
    st.integers(2, 12),
    st.sampled_from(DELIMITERS),
    st.sampled_from(ENCODINGS),
    st.data(),
)
def test_finite_numbers_under_unique_names_read_back_exactly(n_cols, n_rows, delimiter, encoding, data):
    """An oracle: a clean table comes back with every value bit for bit, in its columns' order."""
    names = data.draw(st.lists(NAMES.filter(lambda s: s.strip() != ""), min_size=n_cols, max_size=n_cols,
                               unique_by=lambda s: s.strip()))
    values = np.array(data.draw(st.lists(st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=n_cols,
                                                  max_size=n_cols), min_size=n_rows, max_size=n_rows)))
    fmt = data.draw(st.sampled_from([repr, "{:.17g}".format, "{:.6e}".format]))
    values = np.array([[float(fmt(float(v))) for v in row] for row in values]).reshape(n_rows, n_cols)
    raw = encode(render(names, [[fmt(float(v)) for v in row] for row in values], delimiter), encoding)
    if raw is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clean.csv"
        path.write_bytes(raw)
        got = outcome(lambda p: load_table(p, min_rows=2), path, f"load_table({str(path)!r})")
    y, X = values[:, -1], values[:, :-1]
    if isinstance(got, str):
        # the only refusals a clean table can earn: a constant target or only constant features
        assert np.ptp(y) == 0 or all(np.ptp(X, axis=0) == 0), got
        return
    varying = np.ptp(X, axis=0) > 0
    np.testing.assert_array_equal(got.y, y)
    np.testing.assert_array_equal(got.X, X[:, varying])
    original = [n.strip() for n in names]
    kept = [n for n, v in zip(original[:-1], varying) if v]
    assert got.feature_names == [got.renamed.get(n, n) for n in kept]
    assert got.target_name == got.renamed.get(original[-1], original[-1])


@settings(max_examples=40, **SETTINGS)
@given(st.sampled_from([b"", b"\n", b" \n\n", b"\xef\xbb\xbf", b"\xff\xfe", "a,b\n".encode("utf-16"),
                        b"a,b\n", b"a;b\r\n", b"a\tb", "é,ü\n".encode("latin-1"), b"\x00\x01binary",
                        b"a,b\n1,2\n3", b"\"a,b\n1,2\n"]))
def test_degenerate_files_are_refused_in_one_line(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "odd.csv"
        path.write_bytes(raw)
        got = outcome(lambda p: load_table(p, min_rows=2), path, f"load_table({str(path)!r})")
    assert isinstance(got, str), f"{raw!r} gave a table"


TINY_FIT = {"hidden": (4,), "max_epochs": 2, "lbfgs_steps": 0}


@settings(max_examples=20, **SETTINGS)
@given(tables(min_rows=9, max_rows=16, min_cols=2, number=MODERATE, names=SOME_NAME), st.sampled_from(DELIMITERS), st.sampled_from(ENCODINGS))
def test_discover_on_tiny_tables_gives_a_result_or_one_data_error(table, delimiter, encoding):
    raw = encode(render(*table, delimiter), encoding)
    if raw is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.csv"
        path.write_bytes(raw)

        def run(p):
            return discovery.discover(p, order=2, crosscheck="off", members=1, progress=False,
                                      fit_options=TINY_FIT)

        got = outcome(run, path, "")  # any stage's call form: load_table(...), fit_ensemble(...), ...
        event(f"refused: {got.split(': ', 1)[-1][:40]}" if isinstance(got, str) else "discovered")
        assert sorted(p.name for p in Path(folder).iterdir()) == ["tiny.csv"], "discover wrote next to the input"
    if not isinstance(got, str):
        names = {str(s) for s in got.formula.free_symbols}
        assert names <= set(got.names), (got.formula, got.names)


@settings(max_examples=15, **SETTINGS)
@given(tables(min_rows=9, max_rows=16, min_cols=2, number=MODERATE, names=SOME_NAME), st.sampled_from(DELIMITERS), st.sampled_from(ENCODINGS))
def test_command_line_on_tiny_tables_succeeds_or_says_why_in_one_line(table, delimiter, encoding):
    raw = encode(render(*table, delimiter), encoding)
    if raw is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.csv"
        path.write_bytes(raw)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", str(path), "--members", "1", "--crosscheck", "off", "--no-report",
                         "--quiet", "--out", str(Path(folder) / "result")])
        assert path.read_bytes() == raw, "the input file was modified"
    event("refused" if code else "discovered")
    if code:
        # 2: a refusal the user can act on; 1 would be an unexpected exception
        assert code == 2 and err.getvalue().count("\n") == 1 and err.getvalue().startswith("discovery run: "), \
            (code, err.getvalue())
    else:
        assert out.getvalue().strip(), "no formula printed"


@pytest.mark.parametrize("big", ["8.98846567431158e+307", "1.3407807929942597e+154"])
def test_discover_on_values_near_the_float64_limit(big):
    # Found by the fuzz test above: one huge feature value among zeros, the target 0 or 1. Its
    # square overflows, so the column cannot be standardised: one DataError naming the column,
    # not a ValueError from scikit-learn or a LinAlgError from NumPy.
    rows = [["0.0", "0.0", "0.0", "0.0"]] * 9 + [["0.0", "0.0", big, "1.0"]]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.csv"
        path.write_text(render(["z", "a", "aa", "aaa"], rows, ","))
        message = outcome(lambda p: discovery.discover(p, order=2, crosscheck="off", members=1, progress=False,
                                                       fit_options=TINY_FIT), path, "discover(data, ...): ")
    assert isinstance(message, str), message
    assert "column 'aa'" in message and "rescale" in message
