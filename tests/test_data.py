"""Reading and checking tables: every bad input gives one clear DataError; inputs stay untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discovery.data import DataWarning, Table, bundled, list_bundled, load_table
from discovery.errors import DataError

REPO = Path(__file__).resolve().parent.parent
GOOD = "x1,x2,y\n" + "".join(f"{i},{(i * 7) % 5},{i + (i * 7) % 5}\n" for i in range(12))


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error(data, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_table(data, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------- good input


def test_good_csv_reads_exact_float64_and_defaults_target_to_last_column(tmp_path):
    path = write(tmp_path, GOOD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_table(path)
    assert isinstance(table, Table)
    assert table.feature_names == ["x1", "x2"] and table.target_name == "y"
    assert table.X.dtype == np.float64 and table.X.shape == (12, 2) and table.y.shape == (12,)
    np.testing.assert_array_equal(table.y, table.X.sum(axis=1))
    assert table.source == str(path) and table.warnings == [] and table.renamed == {}


def test_full_precision_values_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "y"])
    path = tmp_path / "precise.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    table = load_table(path)
    np.testing.assert_array_equal(table.X, frame[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(table.y, frame["y"].to_numpy())


def test_target_and_features_select_columns(tmp_path):
    path = write(tmp_path, "a,b,c,d\n" + "".join(f"{i},{i % 3},{i * i},{i % 4}\n" for i in range(15)))
    table = load_table(path, target="c", features=["d", "a"])
    assert table.target_name == "c" and table.feature_names == ["d", "a"]
    np.testing.assert_array_equal(table.X[:, 1] ** 2, table.y)


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    for sep in (";", "\t"):
        path = write(tmp_path, GOOD.replace(",", sep), name=f"sep{ord(sep)}.csv")
        assert load_table(path).X.shape == (12, 2)


def test_dataframe_input_is_left_unchanged(tmp_path):
    frame = pd.DataFrame({"gamma": [1.0, 2, 3, 4, np.nan, 6], "k": [5.0] * 6, "z": [1.0, 0, 2, 5, 3, 4],
                          "y": [2.0, 3, 5, 4, 6, 1]})
    before = frame.copy(deep=True)
    with pytest.warns(DataWarning):
        table = load_table(frame, min_rows=3)
    pd.testing.assert_frame_equal(frame, before)
    assert table.source is None and table.feature_names == ["gamma", "z"]
    table.X[:] = 0  # the table owns its arrays
    pd.testing.assert_frame_equal(frame, before)


def test_input_file_is_never_modified(tmp_path):
    text = "gamma,E,2 x\n1,2,3\n,5,6\n" + "".join(f"{i},{i % 3},{i * 2}\n" for i in range(3, 20))
    path = write(tmp_path, text)
    before, mtime = digest(path), path.stat().st_mtime_ns
    with pytest.warns(DataWarning):
        load_table(path)
    with pytest.raises(DataError):
        load_table(path, target="nope")
    assert digest(path) == before and path.stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------------- warnings, drops


def test_rows_with_missing_values_are_dropped_with_a_count(tmp_path):
    lines = ["x1,x2,y"] + [f"{i},{i % 4},{2 * i}" for i in range(20)]
    lines[3] = "2,,4"
    lines[7] = "6,2,NA"
    lines[9] = "8,0,nan"
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.warns(DataWarning, match=r"dropped 3 of 20 rows with missing values") as record:
        table = load_table(path)
    assert table.dropped_rows == 3 and table.X.shape == (17, 2)
    assert any("'y' (2)" in str(w.message) and "'x2' (1)" in str(w.message) for w in record)
    assert table.warnings and "dropped 3 of 20" in table.warnings[0]


def test_blank_lines_are_not_data_and_not_counted(tmp_path):
    path = write(tmp_path, GOOD.replace("\n3,", "\n\n3,") + "\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_table(path)
    assert table.X.shape == (12, 2) and table.dropped_rows == 0


def test_constant_feature_columns_are_dropped_with_a_warning(tmp_path):
    path = write(tmp_path, "a,k,b,y\n" + "".join(f"{i},3.5,{i % 5},{i * 2 + i % 5}\n" for i in range(12)))
    with pytest.warns(DataWarning, match=r"dropped constant feature column\(s\) 'k'"):
        table = load_table(path)
    assert table.feature_names == ["a", "b"] and table.dropped_columns == ["k"]


@pytest.mark.parametrize(
    "column",
    ["gamma", "E", "I", "S", "N", "O", "Q", "pi", "sin", "beta", "lambda", "flow rate", "x-1", "2theta",
     "temp (°C)", "mass"],
)
def test_column_names_are_kept_exactly_without_a_warning(column):
    # Names that SymPy or Python define, or that are not identifiers, were once renamed
    # ("gamma" -> "gamma_", "temp (°C)" -> "temp___C_"); formulas now carry them as they are.
    frame = pd.DataFrame({column: np.arange(12.0), "y": np.arange(12.0) ** 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_table(frame)
    assert table.feature_names == [column] and table.renamed == {} and table.warnings == []


def test_sympy_like_target_and_feature_names_are_kept_in_a_csv(tmp_path):
    text = "gamma,temp (°C),E\n" + "".join(f"{i},{i % 5},{i * i}\n" for i in range(12))
    path = write(tmp_path, text.encode("utf-8"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_table(path)
    assert table.target_name == "E" and table.feature_names == ["gamma", "temp (°C)"]
    assert table.renamed == {}


def test_bundled_energy_keeps_its_names_E_m_c():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_table(bundled("energy"))
    assert table.target_name == "E" and table.feature_names == ["m", "c"]
    np.testing.assert_allclose(table.y, table.X[:, 0] * table.X[:, 1] ** 2, rtol=1e-15)


# ---------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    message = error(tmp_path / "absent.csv")
    assert "absent.csv" in message and "no such file" in message


def test_folder_instead_of_file(tmp_path):
    assert "folder" in error(tmp_path)


def test_empty_file(tmp_path):
    assert "empty" in error(write(tmp_path, ""))
    assert "empty" in error(write(tmp_path, "  \n\n", name="blank.csv"))


def test_header_without_rows(tmp_path):
    assert "no data rows" in error(write(tmp_path, "x,y\n"))


def test_binary_file_is_not_a_csv(tmp_path):
    path = write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" * 20, name="book.xlsx")
    assert "binary file, not a CSV" in error(path)


def test_text_blob_is_not_a_table(tmp_path):
    path = write(tmp_path, "This is a lab notebook entry and not a table of numbers.\nMore words here.\n")
    message = error(path)
    assert "found 1 column" in message and "at least one feature" in message


def test_ragged_rows_cannot_be_parsed(tmp_path):
    message = error(write(tmp_path, "x,y\n1,2\n3,4,5,6\n"))
    assert "cannot be read as a CSV" in message and "as many" in message


def test_row_index_written_by_pandas_is_refused_not_read_as_a_feature(tmp_path):
    """``to_csv`` without ``index=False`` leaves the first header cell empty; pandas would name
    that column 'Unnamed: 0' and the row numbers would become a feature."""
    frame = pd.DataFrame({"x": np.arange(12.0), "y": np.arange(12.0) % 5})
    path = tmp_path / "indexed.csv"
    frame.to_csv(path)
    message = error(path)
    assert message.startswith(f"load_table({str(path)!r}): the header cell of column 1 (A) is empty;"), message
    assert "index=False" in message and "Unnamed" not in message and "\n" not in message, message


@pytest.mark.parametrize("header,where,hint", [
    ("a,,y", "the header cell of column 2 (B) is empty; write a name into it", None),
    ("a, ,y", "the header cell of column 2 (B) is empty; write a name into it", None),
    ('a,"",y', "the header cell of column 2 (B) is empty; write a name into it", None),
    ("a;;b;y", "the header cell of column 2 (B) is empty", None),
    ("a,b,y,", "the header cell of column 4 (D) is empty", "separator at the end of each line"),
    (",a,,y", "the header cells of columns 1 (A), 3 (C) are empty; write a name into each", "row numbers"),
], ids=["middle", "spaces", "quoted", "semicolon", "trailing-separator", "two"])
def test_empty_header_cell_names_its_column_and_the_fix(tmp_path, header, where, hint):
    n = header.count(";") + 1 if ";" in header else header.count(",") + 1
    sep = ";" if ";" in header else ","
    rows = "".join(sep.join(str((i * (k + 3)) % 7) for k in range(n)) + "\n" for i in range(12))
    message = error(write(tmp_path, header + "\n" + rows))
    assert where in message, message
    assert hint is None or hint in message, message
    assert "Unnamed" not in message and "duplicate" not in message and "\n" not in message, message


def test_missing_target_lists_the_columns(tmp_path):
    message = error(write(tmp_path, GOOD), target="z")
    assert "'z'" in message and "'x1', 'x2', 'y'" in message


def test_unknown_feature_lists_the_columns(tmp_path):
    message = error(write(tmp_path, GOOD), features=["x1", "x9"])
    assert "'x9'" in message and "'x1', 'x2', 'y'" in message


def test_target_listed_as_feature(tmp_path):
    assert "also listed in features" in error(write(tmp_path, GOOD), target="y", features=["x1", "y"])


def test_duplicate_column_names_in_file_header(tmp_path):
    # pandas would silently rename the second "a" to "a.1"; the raw header is checked instead.
    message = error(write(tmp_path, "a,b,a,y\n" + "1,2,3,4\n" * 12))
    assert "duplicate column names 'a' (2 times)" in message


def test_duplicate_column_names_in_dataframe():
    frame = pd.DataFrame(np.arange(36.0).reshape(12, 3), columns=["a", "a", "y"])
    assert "duplicate column names 'a'" in error(frame)


def test_non_numeric_value_names_column_value_and_file_row(tmp_path):
    lines = ["x1,x2,y"] + [f"{i},{i % 3},{i}" for i in range(12)]
    lines[5] = "4,oops,4"  # the fifth data row, on line 6 of the file
    lines[8] = "7,bad,7"
    message = error(write(tmp_path, "\n".join(lines) + "\n"))
    assert "column 'x2' is not numeric" in message
    assert "first bad value 'oops'" in message and "row 6 of the file (the header is row 1)" in message
    assert "1 more like it" in message and "features=" in message


def test_decimal_comma_gets_a_hint(tmp_path):
    path = write(tmp_path, "x;y\n" + "".join(f"{i},5;{i}\n" for i in range(12)))
    assert "decimal comma" in error(path)


def test_non_numeric_in_dataframe_names_the_index_label():
    frame = pd.DataFrame({"a": [1, 2, "three", 4] * 3, "y": np.arange(12.0)},
                         index=[f"r{i}" for i in range(12)])
    message = error(frame)
    assert "column 'a'" in message and "'three'" in message and "index label 'r2'" in message


def test_unused_text_columns_are_ignored_when_features_are_given(tmp_path):
    path = write(tmp_path, "id,x,y\n" + "".join(f"s{i},{i},{2 * i}\n" for i in range(12)))
    assert "column 'id' is not numeric" in error(path)
    assert load_table(path, features=["x"]).feature_names == ["x"]


def test_infinite_value_names_column_and_row(tmp_path):
    lines = ["x1,x2,y"] + [f"{i},{i % 3},{i}" for i in range(12)]
    lines[3] = "2,inf,2"
    message = error(write(tmp_path, "\n".join(lines) + "\n"))
    assert "column 'x2' has an infinite value (inf)" in message and "row 4 of the file" in message


def test_constant_target(tmp_path):
    message = error(write(tmp_path, "x,y\n" + "".join(f"{i},7\n" for i in range(12))))
    assert "target 'y' is constant" in message


def test_every_feature_constant(tmp_path):
    assert "every feature column is constant" in error(
        write(tmp_path, "x,y\n" + "".join(f"3,{i}\n" for i in range(12)))
    )


def test_too_few_rows_after_dropping(tmp_path):
    text = "x,y\n" + "".join(f"{i},{i * 2}\n" for i in range(8)) + "".join(f"{i},\n" for i in range(5))
    message = error(write(tmp_path, text))
    assert "only 8 usable rows after dropping 5 with missing values" in message
    assert "at least 10" in message and "min_rows=" in message
    with pytest.warns(DataWarning):
        assert load_table(write(tmp_path, text, "again.csv"), min_rows=8).n_rows == 8


def test_wrong_data_type():
    assert "pass a CSV path or a pandas DataFrame" in error([[1, 2], [3, 4]])


# -------------------------------------------------------------------------------- bundled files


def test_every_bundled_dataset_loads_with_2000_rows_and_target_last():
    names = list_bundled()
    assert {"paper_quadratic", "paper_five", "momentum", "energy", "gravitation", "torricelli",
            "saddle", "sine_quadratic", "gaussian"} <= set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for name in names:
            table = load_table(bundled(name))
            assert table.n_rows == 2000 and table.dropped_rows == 0


def test_bundled_unknown_name_lists_the_choices():
    with pytest.raises(DataError, match="paper_quadratic"):
        bundled("nope")
    assert bundled("momentum.csv") == bundled("momentum")


def test_bundled_values_follow_their_laws():
    t = load_table(bundled("paper_five"))
    x1, x2, x3, x4, x5 = t.X.T
    np.testing.assert_allclose(t.y, 0.5 + x1 + 0.6 * x2 * x3 - 0.8 * x2 * x4 + x1 * x2 * x3 - x3 * x5,
                               rtol=0, atol=1e-14)
    g = load_table(bundled("gravitation"))
    np.testing.assert_allclose(g.y, 6.674 * g.X[:, 0] * g.X[:, 1] / g.X[:, 2] ** 2, rtol=1e-14)
    assert g.X.min() >= 1 and g.X.max() <= 5


def test_generator_reproduces_the_bundled_files(tmp_path):
    """Same columns and rows; features bit for bit (they come from the seeded generator), targets
    to a few ulps (``exp``/``sin`` may round the last bit differently across NumPy builds)."""
    script = (
        "import sys; sys.path.insert(0, {d!r}); import generate\n"
        "from pathlib import Path\n"
        "for law in generate.LAWS:\n"
        "    generate.write(generate.table(law), Path({o!r}) / (law.name + '.csv'))\n"
    ).format(d=str(REPO / "datasets"), o=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], check=True)
    for path in sorted((REPO / "datasets").glob("*.csv")):
        bundled_frame = pd.read_csv(path, float_precision="round_trip")
        fresh = pd.read_csv(tmp_path / path.name, float_precision="round_trip")
        assert list(bundled_frame.columns) == list(fresh.columns), path.name
        assert bundled_frame.shape == fresh.shape, path.name
        features, target = bundled_frame.columns[:-1], bundled_frame.columns[-1]
        np.testing.assert_array_equal(bundled_frame[features].to_numpy(), fresh[features].to_numpy(), err_msg=path.name)
        np.testing.assert_allclose(bundled_frame[target], fresh[target], rtol=1e-14, atol=0, err_msg=path.name)


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_a_number_file_is_read_from_disk_without_its_bytes_in_memory(tmp_path, monkeypatch, sep):
    import discovery.data as data_module

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(500, 3)) * 10.0 ** rng.integers(-8, 8, (500, 3)), columns=["a b", "c", "y"])
    path = tmp_path / "numbers.csv"
    frame.to_csv(path, index=False, sep=sep, float_format="%.17g")
    monkeypatch.setattr(data_module, "_read_number_file", lambda p, call: None)  # the full reader
    full = load_table(path)
    monkeypatch.undo()

    def no_whole_file(self):
        raise AssertionError("the whole file was read into memory")

    monkeypatch.setattr(Path, "read_bytes", no_whole_file)
    fast = load_table(path)
    assert fast.feature_names == full.feature_names == ["a b", "c"] and fast.target_name == "y"
    np.testing.assert_array_equal(fast.X, full.X)
    np.testing.assert_array_equal(fast.y, full.y)
    np.testing.assert_array_equal(fast.X, frame[["a b", "c"]].to_numpy())  # %.17g round-trips exactly


def test_a_file_with_words_or_gaps_still_takes_the_reader_that_explains_them(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("x,y\n1,2\n2,abc\n3,4\n")
    with pytest.raises(DataError, match=r"column 'y' is not numeric: first bad value 'abc'"):
        load_table(path, min_rows=2)
