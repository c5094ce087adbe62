"""Strict reading of a results folder's input files, for the reports.

A report draws from its folder's files alone, so a torn, unparsable or inconsistent file
must stop it before it writes anything: every reader here raises a `ValueError` naming the
file, the problem and `fix` (what to do about it). `harness.common.cli.guarded` prints it
as one line and exits 2.

What is refused: a CSV that does not end in a newline (every file the harness writes does,
so a missing one is the sign of a cut write), a row with more or fewer fields than the
header (pandas would fill a short last row with NaN), a non-number in a numeric column,
anything but True / False in a flag column, an empty cell in an identity column, two rows
with the same key, JSON that does not parse, a torch file that does not load.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.common.io import load_torch
from harness.pipeline.provenance import HASH_COLUMNS


def _text(path: Path, fix: str) -> str:
    """The whole of the text file `path`, which must end in a newline."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {fix}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason}): {fix}") from None
    if not text:
        raise ValueError(f"{path} is empty: {fix}")
    if not text.endswith("\n"):
        tail = text.rsplit("\n", 1)[-1][-40:]
        raise ValueError(
            f"{path} does not end in a newline, so its last line ({tail!r}) was cut mid-write: "
            f"{fix}"
        )
    return text


def _check_fields(path: Path, text: str, fix: str) -> None:
    """Every row has as many fields as the header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        for row in reader:
            if row and len(row) != len(header):
                raise ValueError(
                    f"{path} line {reader.line_num} has {len(row)} fields where the header "
                    f"has {len(header)} (a cut or hand-edited row): {fix}"
                )
    except csv.Error as err:
        raise ValueError(
            f"{path} is not valid CSV near line {reader.line_num} ({err}): {fix}"
        ) from None


def _first_bad(path: Path, frame: pd.DataFrame, col: str, bad: pd.Series, what: str,
               fix: str) -> None:  # fmt: skip
    if bad.any():
        i = bad.to_numpy().argmax()
        value = frame[col].iloc[i]
        shown = "nothing" if pd.isna(value) else repr(value)
        raise ValueError(f"{path} line {i + 2}: column {col!r} holds {shown}, {what}: {fix}")


def read_csv_strict(
    path: str | Path,
    fix: str,
    filled: Sequence[str] = (),
    numeric: Sequence[str] = (),
    flags: Sequence[str] = (),
    key: Sequence[str] = (),
) -> pd.DataFrame:
    """The CSV at `path`, read as `pd.read_csv` reads it (the hash columns of
    provenance.HASH_COLUMNS as text), once it is whole and consistent.
    filled: columns that must exist with no empty cell (identity columns);
    numeric: columns that, where present, hold numbers or nothing;
    flags: columns that, where present, hold True or False in every row;
    key: columns whose values no two rows may share."""
    path = Path(path)
    text = _text(path, fix)
    _check_fields(path, text, fix)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={c: str for c in HASH_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path} does not parse as CSV ({err}): {fix}") from None
    missing = [c for c in (*filled, *key) if c not in frame]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {list(dict.fromkeys(missing))} (written by "
            f"an older harness or by hand): {fix}"
        )
    for col in filled:
        _first_bad(path, frame, col, frame[col].isna(), "where an identity belongs", fix)
    for col in (c for c in numeric if c in frame):
        values = frame[col]
        if pd.api.types.is_bool_dtype(values):  # True / False where a number belongs
            _first_bad(path, frame, col, values.notna(), "not a number", fix)
        elif not pd.api.types.is_numeric_dtype(values):
            bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
            _first_bad(path, frame, col, bad, "not a number", fix)
    for col in (c for c in flags if c in frame):
        if not pd.api.types.is_bool_dtype(frame[col]):
            bad = ~frame[col].astype(str).isin(["True", "False"])
            _first_bad(path, frame, col, bad, "not True or False", fix)
    if key:
        twice = frame.duplicated(list(key), keep=False)
        if twice.any():
            first = frame.loc[twice, list(key)].iloc[0].to_dict()
            raise ValueError(
                f"{path} holds {int(twice.sum())} rows for the same {', '.join(key)} "
                f"(e.g. {first}), where the report reads one: {fix}"
            )
    return frame


def read_json_strict(path: str | Path, fix: str) -> dict:
    """The JSON object in `path`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {fix}")
    try:
        found = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} does not parse as JSON ({err}; torn?): {fix}") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path} holds a JSON {type(found).__name__}, not an object: {fix}")
    return found


def load_torch_strict(path: str | Path, fix: str) -> Any:
    """torch.load of `path` (a file the harness saved: weights_only=False); a torn file is
    a ValueError naming it and `fix`."""
    return load_torch(path, "saved results file", fix, weights_only=False)


def load_npz_strict(path: str | Path, fix: str, videos: Sequence[str] = ("videos",),
                    ) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of the .npz of samples at `path` (no pickles): each of `videos` uint8
    (N, C, F, H, W), and `captions`, one per video. A torn, foreign or inconsistent file is
    a ValueError naming it and `fix`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {fix}")
    try:
        with np.load(path, allow_pickle=False) as found:
            arrays = {k: found[k] for k in found.files}
    except Exception as err:  # a cut zip, a bad member, a foreign file
        what = f"{path} is not a readable .npz of samples ({type(err).__name__}: {err}; torn?)"
        raise ValueError(f"{what}: {fix}") from None
    missing = [k for k in (*videos, "captions") if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing} (holds {sorted(arrays)}): {fix}")
    for k in videos:
        v = arrays[k]
        if v.dtype != np.uint8 or v.ndim != 5 or len(v) != len(arrays["captions"]):
            n = len(arrays["captions"])
            raise ValueError(f"{path}: {k} is {v.dtype} {v.shape}, not uint8 (N, C, F, H, W) "
                             f"with one of its {n} captions each: {fix}")  # fmt: skip
    return arrays
