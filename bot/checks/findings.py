"""A check's outcome: one row of `python -m bot check`'s table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    """One row: what was checked, what was found, and for a ✗ what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Finding:
    return Finding(name, "ok", detail)


def fail(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, "fail", detail, fix)


def skip(name: str, why: str) -> Finding:
    return Finding(name, "skip", f"not checked: {why}")
