"""Reading and checking tables of observations (CSV files or DataFrames); no torch here.

:func:`load_table` turns a CSV path or a :class:`pandas.DataFrame` into a :class:`Table` of
float64 arrays under the columns' own names, or raises :class:`~discovery.errors.DataError` with
one message that says what is wrong and what to pass instead. Everything it changes on the way
(rows with missing values, constant feature columns) is recorded on the table and emitted as a
:class:`DataWarning`. Names are never changed: formulas use them as SymPy symbols exactly
(see :mod:`discovery.symbolic`). The input file and the caller's DataFrame are never modified.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from discovery.errors import DataError

__all__ = ["DataWarning", "Table", "bundled", "list_bundled", "load_table"]

_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024
# A source checkout or editable install keeps datasets/ next to the package; a wheel built with
# setuptools data-files puts them under <prefix>/share/discovery/datasets.
_DATASETS_DIRS = (
    Path(__file__).resolve().parent.parent / "datasets",
    Path(sys.prefix) / "share" / "discovery" / "datasets",
)


def _datasets_dir() -> Path | None:
    return next((d for d in _DATASETS_DIRS if d.is_dir() and any(d.glob("*.csv"))), None)


class DataWarning(UserWarning):
    """The table was usable but something was changed on the way (rows or columns dropped)."""


@dataclass
class Table:
    """A validated table: float64 features and target under the columns' own names.

    Attributes
    ----------
    X : numpy.ndarray
        ``(n, p)`` float64 features; rows with missing values are dropped.
    y : numpy.ndarray
        ``(n,)`` float64 target.
    feature_names : list of str
        The feature columns' names, exactly as in the header (surrounding spaces stripped);
        formulas use them as they are (``"temp (°C)"``, ``"gamma"``, ``"I"``).
    target_name : str
        Name of the target column.
    renamed : dict
        Always empty: no column is renamed. Kept so code that maps names back still works.
    dropped_rows : int
        Rows dropped because a selected column had a missing value.
    dropped_columns : list of str
        Constant feature columns dropped (original names).
    warnings : list of str
        Every warning, also emitted through :func:`warnings.warn` as :class:`DataWarning`.
    source : str or None
        The file path, or ``None`` for a DataFrame.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    renamed: dict[str, str] = field(default_factory=dict)
    dropped_rows: int = 0
    dropped_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str | None = None

    @property
    def n_rows(self) -> int:
        """Number of rows kept."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns kept."""
        return int(self.X.shape[1])


def load_table(
    data: str | Path | pd.DataFrame,
    target: str | None = None,
    features: Sequence[str] | None = None,
    *,
    min_rows: int = 10,
) -> Table:
    """Read and check a table of observations.

    Parameters
    ----------
    data : str, Path or pandas.DataFrame
        A CSV file (comma, semicolon, tab or ``|`` separated; header on the first line) or a
        DataFrame. Neither is modified.
    target : str, optional
        Column to explain. Defaults to the last column.
    features : sequence of str, optional
        Columns to explain it with. Defaults to every other column.
    min_rows : int, default 10
        Fewest rows accepted after rows with missing values are dropped.

    Returns
    -------
    Table

    Raises
    ------
    DataError
        Missing, empty or non-CSV file; unknown target or feature; duplicate column names;
        non-numeric or infinite values; constant target; too few rows.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"m": [1.0, 2, 3, 4], "v": [2.0, 1, 4, 3], "p": [2.0, 2, 12, 12]})
    >>> t = load_table(df, target="p", min_rows=4)
    >>> t.feature_names, t.target_name, t.X.shape
    (['m', 'v'], 'p', (4, 2))
    """
    if isinstance(data, pd.DataFrame):
        call = "load_table(DataFrame)"
        frame = data
        source = None
        locate = _frame_locator(data)
    elif isinstance(data, (str, Path)):
        call = f"load_table({str(data)!r})"
        frame = _read_csv(Path(data), call)
        source = str(data)
        locate = _file_locator
    else:
        raise DataError(
            f"load_table(data): data is a {type(data).__name__}; pass a CSV path or a pandas DataFrame"
        )
    if isinstance(min_rows, bool) or not isinstance(min_rows, (int, np.integer)) or min_rows < 2:
        raise DataError(f"{call}: min_rows={min_rows!r}; pass an integer >= 2")

    columns = [str(c) for c in frame.columns]
    _check_duplicates(columns, call)
    if len(columns) < 2:
        listed = ", ".join(repr(c) for c in columns)
        raise DataError(
            f"{call}: found {len(columns)} column ({listed}); a table needs at least one feature "
            "and a target. If the file is not comma-separated, save it as CSV with a header line"
        )
    target_col = _resolve_target(target, columns, call)
    feature_cols = _resolve_features(features, target_col, columns, call)

    # Positions, not labels: the frame may have non-string or odd column labels.
    position = {c: i for i, c in enumerate(columns)}
    selected = [target_col, *feature_cols]
    raw = frame.iloc[:, [position[c] for c in selected]]
    if all(pd.api.types.is_float_dtype(dtype) for dtype in raw.dtypes):  # a number file: one copy
        matrix = raw.to_numpy(dtype=np.float64)
    else:
        matrix = np.column_stack([_numeric_column(raw.iloc[:, k], c, call, locate) for k, c in enumerate(selected)])

    for k, c in enumerate(selected if np.isinf(matrix).any() else []):
        bad = np.flatnonzero(np.isinf(matrix[:, k]))
        if bad.size:
            where = locate(int(bad[0]))
            raise DataError(
                f"{call}: column {c!r} has an infinite value ({matrix[bad[0], k]}) at {where}"
                f"{_more(bad.size)}; replace it with a finite number or leave the cell empty to drop the row"
            )

    notes: list[str] = []
    nan = np.isnan(matrix)
    blank = nan.all(axis=1)
    missing = nan.any(axis=1) & ~blank
    n_missing = int(missing.sum())
    if n_missing:
        counts = {c: int(nan[~blank, k].sum()) for k, c in enumerate(selected)}
        which = ", ".join(f"{c!r} ({n})" for c, n in counts.items() if n)
        notes.append(
            f"{call}: dropped {n_missing} of {int((~blank).sum())} rows with missing values "
            f"(empty cells per column: {which})"
        )
    keep = ~(missing | blank)
    if not keep.all():
        matrix = matrix[keep]

    if matrix.shape[0] < min_rows:
        raise DataError(
            f"{call}: only {matrix.shape[0]} usable rows"
            + (f" after dropping {n_missing} with missing values" if n_missing else "")
            + f"; at least {min_rows} are needed. Add observations or pass min_rows= to accept fewer"
        )
    y = matrix[:, 0].copy()
    if np.ptp(y) == 0:
        raise DataError(
            f"{call}: the target {target_col!r} is constant ({y[0]:g} in every row); there is "
            "nothing to explain. Pass a target that varies with target=..."
        )

    X = matrix[:, 1:]
    constant = [c for k, c in enumerate(feature_cols) if np.ptp(X[:, k]) == 0]
    if constant:
        if len(constant) == len(feature_cols):
            raise DataError(
                f"{call}: every feature column is constant ({', '.join(map(repr, constant))}); "
                "pass features that vary with features=[...]"
            )
        notes.append(
            f"{call}: dropped constant feature column(s) {', '.join(map(repr, constant))} "
            "(one value in every row, so they cannot explain the target)"
        )
        kept = [k for k, c in enumerate(feature_cols) if c not in constant]
        X = X[:, kept]
        feature_cols = [feature_cols[k] for k in kept]

    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return Table(
        X=np.ascontiguousarray(X, dtype=np.float64),
        y=y,
        feature_names=list(feature_cols),
        target_name=target_col,
        renamed={},
        dropped_rows=n_missing,
        dropped_columns=constant,
        warnings=notes,
        source=source,
    )


def list_bundled() -> list[str]:
    """Names of the bundled example datasets (without ``.csv``).

    Examples
    --------
    >>> "paper_quadratic" in list_bundled()
    True
    """
    folder = _datasets_dir()
    return [] if folder is None else sorted(p.stem for p in folder.glob("*.csv"))


def bundled(name: str) -> Path:
    """Path of a bundled example dataset, e.g. ``bundled("paper_quadratic")``.

    The CSVs live in the ``datasets/`` folder next to the ``discovery`` package (a source
    checkout or an editable install), or under ``<prefix>/share/discovery/datasets`` when a
    wheel installs them as data files; ``datasets/README.md`` states each true law.

    Examples
    --------
    >>> bundled("momentum").name
    'momentum.csv'
    """
    stem = str(name)[:-4] if str(name).endswith(".csv") else str(name)
    folder = _datasets_dir()
    path = folder / f"{stem}.csv" if folder is not None else None
    if path is None or not path.is_file():
        available = list_bundled()
        if not available:
            raise DataError(
                f"bundled({name!r}): no bundled CSVs in {' or '.join(map(str, _DATASETS_DIRS))}; "
                "they ship with a source checkout (pip install -e .). Pass the path of your own CSV"
            )
        raise DataError(f"bundled({name!r}): no such dataset; pass one of {', '.join(available)}")
    return path


# --------------------------------------------------------------------------------------- reading


def _read_csv(path: Path, call: str) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{call}: no such file; pass the path of an existing CSV file")
    if path.is_dir():
        raise DataError(f"{call}: is a folder; pass the path of a CSV file inside it")
    frame = _read_number_file(path, call)
    if frame is not None:
        return frame
    raw = path.read_bytes()
    empty = f"{call}: the file is empty; pass a CSV with a header line and data rows"
    if not raw.strip():
        raise DataError(empty)
    binary = (
        f"{call}: this is a binary file, not a CSV (a spreadsheet or Parquet file?); "
        "export it as CSV with a header line"
    )
    # A UTF-16 byte-order mark names the encoding (Excel's "Unicode text"); its NUL bytes are text.
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if b"\x00" in raw[:_SNIFF_BYTES] and not utf16:
        raise DataError(binary)
    for encoding in ("utf-16",) if utf16 else ("utf-8-sig", "cp1252"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DataError(
            f"{call}: the file is not text in UTF-8, UTF-16 (with a byte-order mark) or "
            "Windows-1252; save it as a UTF-8 CSV"
        )
    if "\x00" in text[:_SNIFF_BYTES]:
        raise DataError(binary)
    if not text.strip():
        raise DataError(empty)
    delimiter = _delimiter_of(next((line for line in text.splitlines() if line.strip()), ""), call)
    try:
        frame = _read_numbers(raw, delimiter)
        if frame is None:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=delimiter,
                skipinitialspace=True,
                skip_blank_lines=False,
                dtype=str,
                keep_default_na=False,
            )
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(
            f"{call}: cannot be read as a CSV ({detail}); check that every line has as many "
            f"{_delimiter_name(delimiter)}-separated fields as the header"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{call}: the file is empty; pass a CSV with a header line and data rows") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[0] == 0:
        raise DataError(f"{call}: the file has a header line but no data rows; add observations")
    return frame


def _delimiter_of(header_line: str, call: str) -> str:
    """The delimiter the header line uses most (comma when none); its names checked."""
    delimiter = max(_DELIMITERS, key=header_line.count)
    if header_line.count(delimiter) == 0:
        delimiter = ","
    header = next(csv.reader([header_line], delimiter=delimiter, skipinitialspace=True))
    _check_header_names(header, call)
    _check_duplicates([h.strip() for h in header], call)
    return delimiter


def _read_number_file(path: Path, call: str) -> pd.DataFrame | None:
    """The fast path of :func:`_read_csv` without holding the file in memory: a UTF-8 file with a
    plain header line, read by pandas' C parser straight from disk when every cell is a number
    (a million rows: half the time, and no copy of the file's bytes and text). ``None`` for
    anything else, which the full reader then reads and explains."""
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip() or b"\x00" in head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:  # Windows-1252 or UTF-16 text: the full reader decodes it
        return None
    header_line = next((line for line in text.splitlines(keepends=True) if line.strip()), "")
    if not header_line.endswith(("\n", "\r")):  # the header did not fit the sniffed bytes
        return None
    delimiter = _delimiter_of(header_line.rstrip("\r\n"), call)
    frame = _read_numbers(path, delimiter)
    if frame is None or frame.shape[0] == 0:
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_numbers(raw: bytes | Path, delimiter: str) -> pd.DataFrame | None:
    """A UTF-8 file whose every cell is a plain number, as float64 columns; None for anything else.

    pandas' C parser reads such a file several times faster, and in a fraction of the memory,
    than as text; ``round_trip`` parses each number exactly as the text path does. Missing
    cells, words, blank lines or a decimal comma fail here and take the text path, which
    explains them.
    """
    try:
        with warnings.catch_warnings():
            # pandas 3 deprecates the option; where it is gone (TypeError) the text path reads the file.
            warnings.filterwarnings("ignore", message=".*float_precision.*")
            source = raw if isinstance(raw, Path) else io.BytesIO(raw)
            return pd.read_csv(source, sep=delimiter, engine="c", encoding="utf-8-sig",
                               skipinitialspace=True, skip_blank_lines=False, dtype=np.float64,
                               na_filter=False, float_precision="round_trip")
    except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error):
        return None


def _delimiter_name(delimiter: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]


_MISSING = {"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"}


def _numeric_column(column: pd.Series, name: str, call: str, locate) -> np.ndarray:
    """float64 values of one column; missing cells become NaN; text raises DataError."""
    if pd.api.types.is_complex_dtype(column.dtype):
        raise DataError(f"{call}: column {name!r} holds complex numbers; pass real-valued columns")
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    text = column.astype("string").str.strip()
    missing = (column.isna() | text.str.lower().isin(_MISSING)).to_numpy(dtype=bool)
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = np.flatnonzero(np.isnan(numbers) & ~missing)
    if not bad.size:
        # pandas' fast parser may be off by an ulp on 17-digit values; NumPy's cast is exact.
        present = ~missing
        try:
            numbers[present] = text[present].to_numpy(dtype=str).astype(np.float64)
        except ValueError:
            pass  # a spelling only pandas understands: keep its value
    if bad.size:
        value = str(text.iloc[bad[0]])
        hint = ""
        if re.fullmatch(r"[-+]?\d+,\d+", value):
            hint = " (a decimal comma? write numbers with a decimal point)"
        raise DataError(
            f"{call}: column {name!r} is not numeric: first bad value {value!r} at "
            f"{locate(int(bad[0]))}{_more(bad.size)}{hint}; fix or empty those cells, or leave "
            "the column out with features=[...]"
        )
    return numbers


def _more(count: int) -> str:
    return f" ({count - 1} more like it)" if count > 1 else ""


def _file_locator(i: int) -> str:
    # Blank lines are kept as rows while reading, so data row i sits on line i + 2.
    return f"row {i + 2} of the file (the header is row 1)"


def _frame_locator(frame: pd.DataFrame):
    labels = frame.index

    def locate(i: int) -> str:
        return f"index label {labels[i]!r} (position {i}, counting from 0)"

    return locate


# ----------------------------------------------------------------------------- names and columns


def _check_header_names(header: list[str], call: str) -> None:
    """Refuse a header cell without a name, saying where it is and how to fix it.

    pandas would call such a column ``Unnamed: 0``, a name the user never wrote; the usual
    source is a row index written by ``DataFrame.to_csv``, which must not become a feature.
    """
    blank = [k + 1 for k, cell in enumerate(header) if not cell.strip()]
    if not blank:
        return

    def place(k: int) -> str:
        letters, n = "", k
        while n:  # spreadsheet column letters: 1 -> A, 27 -> AA
            n, r = divmod(n - 1, 26)
            letters = chr(ord("A") + r) + letters
        return f"{k} ({letters})"

    one = len(blank) == 1
    cells = f"the header cell of column {place(blank[0])} is" if one else (
        f"the header cells of columns {', '.join(place(k) for k in blank)} are")
    fixes = ["write a name into " + ("it" if one else "each")]
    if blank[0] == 1:
        fixes.append("delete column 1 if it holds row numbers (pandas writes them unless "
                     "to_csv(..., index=False))")
    if blank[-1] == len(header):
        fixes.append("remove the separator at the end of each line")
    raise DataError(f"{call}: {cells} empty; {', or '.join(fixes)}")


def _check_duplicates(columns: list[str], call: str) -> None:
    seen: dict[str, int] = {}
    for c in columns:
        seen[c] = seen.get(c, 0) + 1
    dups = [c for c, n in seen.items() if n > 1]
    if dups:
        listed = ", ".join(f"{c!r} ({seen[c]} times)" for c in dups)
        raise DataError(
            f"{call}: duplicate column names {listed}; give every column a unique name in the header"
        )


def _resolve_target(target, columns: list[str], call: str) -> str:
    listed = ", ".join(repr(c) for c in columns)
    if target is None:
        return columns[-1]
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if -len(columns) <= target < len(columns):
            return columns[int(target)]
        raise DataError(f"{call}: target={target} is out of range; pass one of the columns: {listed}")
    name = str(target)
    if name in columns:
        return name
    if name.strip() in columns:
        return name.strip()
    raise DataError(f"{call}: no column named {name!r} for target=; pass one of the columns: {listed}")


def _resolve_features(features, target: str, columns: list[str], call: str) -> list[str]:
    if features is None:
        return [c for c in columns if c != target]
    if isinstance(features, str):
        features = [features]
    chosen = [str(f).strip() for f in features]
    listed = ", ".join(repr(c) for c in columns)
    unknown = [f for f in chosen if f not in columns]
    if unknown:
        raise DataError(
            f"{call}: no column(s) named {', '.join(map(repr, unknown))} for features=; "
            f"pass names from the columns: {listed}"
        )
    if target in chosen:
        raise DataError(
            f"{call}: the target {target!r} is also listed in features=; leave it out of features"
        )
    if len(set(chosen)) != len(chosen):
        raise DataError(f"{call}: features= lists a column twice; list each column once")
    if not chosen:
        raise DataError(f"{call}: features= is empty; pass at least one of the columns: {listed}")
    return chosen
