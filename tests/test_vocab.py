"""The Python vocabulary (format/vocab.py) and the C one (csrc/inn.h) are the same numbers.

Parsed from the header text, so a code added or renumbered on one side only fails here, before any
bundle is written with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import inn_mobile
from inn_mobile import native
from inn_mobile.format import vocab

CSRC = Path(inn_mobile.__file__).parent / "csrc"


def c_constants(*headers: str) -> dict[str, int]:
    """Every ``#define INN_X <int>`` and every ``INN_X = <int>`` enum member of the headers."""
    out: dict[str, int] = {}
    for h in headers:
        text = re.sub(r"/\*.*?\*/", "", (CSRC / h).read_text(), flags=re.S)
        for name, value in re.findall(r"#define\s+(INN_\w+)\s+\(?([0-9xXa-fA-F]+)u?", text):
            out[name] = int(value, 0)
        for name, value in re.findall(r"\b(INN_\w+)\s*=\s*([0-9xXa-fA-F]+)u?\b", text):
            out[name] = int(value, 0)
        for name, base, shift in re.findall(r"#define\s+(INN_\w+)\s+\((?:\(\w+\))?(\d+)u?\s*<<\s*(\d+)\)", text):
            out[name] = int(base) << int(shift)
    return out


C = c_constants("inn.h", "inn_internal.h")


def test_header_parser_reads_every_kind_of_definition():
    assert C["INN_VERSION_MAJOR"] == 1 and C["INN_UNIFORM"] == 0xFFFFFFFF and C["INN_MAX_DIM"] == 1 << 24
    assert C["INN_ERR_PARTITION"] == 11 and C["INN_LAYOUT_ITO"] == 2


def test_scalars():
    assert vocab.VERSION == (C["INN_VERSION_MAJOR"], C["INN_VERSION_MINOR"])
    assert vocab.FLAG_NORM == C["INN_FLAG_NORM"]
    assert vocab.TAPS == C["INN_TAPS"]
    assert vocab.UNIFORM == C["INN_UNIFORM"]
    assert vocab.MAX_DIM == C["INN_MAX_DIM"]
    assert vocab.RUNTIME_NAME == C["INN_RUNTIME_NAME"]
    assert vocab.BUCKET_RATIO == C["INN_BUCKET_RATIO"]
    assert vocab.CASCADE_NAME == C["INN_CASCADE_NAME"]


def test_reader_limits():
    assert vocab.MAX_UPSAMPLE == C["INN_MAX_UPSAMPLE"]
    assert vocab.HOLE_REUSE == C["INN_HOLE_REUSE"]
    assert vocab.GAP_RATIO == C["INN_GAP_RATIO"]
    assert vocab.GAP_FLOOR == C["INN_GAP_FLOOR"]


@pytest.mark.parametrize("table, prefix", [
    (vocab.STATUS, "INN_ERR_"),
    (vocab.QUADRATURES, "INN_QUAD_"),
    (vocab.KINDS, "INN_KIND_"),
    (vocab.LAYOUTS, "INN_LAYOUT_"),
    (vocab.OUTPUT_DTYPES, "INN_"),
    (vocab.HOLE_TENSORS, "INN_HOLE_"),
    (vocab.HOLE_DTYPES, "INN_HOLE_"),
    (vocab.COST_FIELDS, "INN_COST_"),
    (vocab.CASCADE_SCORES, "INN_SCORE_"),
    (vocab.CASCADE_TARGETS, "INN_TARGET_"),
    (vocab.CASCADE_FIELDS, "INN_CASCADE_"),
])
def test_enums(table, prefix):
    for name, code in table.items():
        c_name = "INN_OK" if (prefix, name) == ("INN_ERR_", "OK") else prefix + name.upper()
        assert C.get(c_name) == code, (c_name, C.get(c_name), code)
    c_members = {k for k, v in C.items() if k.startswith(prefix)}
    if prefix == "INN_ERR_":  # every C status has a Python name
        assert {"INN_ERR_" + n for n in table if n != "OK"} == c_members


def test_node_element_codes():
    for name in vocab.NODE_DTYPES:
        assert vocab.ELEMENTS[name] == C[f"INN_NODES_{name.upper()}"]


def test_status_names_come_from_the_core():
    for name, code in vocab.STATUS.items():
        assert native.lib().inn_status_name(code).decode() == name
