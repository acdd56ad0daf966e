"""Recording a benchmark's result into docs/benchmarks.md, leaving the prose around it alone."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devkit.paths import REPO

BENCHMARKS_DOC = REPO / "docs" / "benchmarks.md"


def record_in_section(path: Path, *, section: str, begin: str, end: str, entry: str) -> None:
    """Put `entry` (which starts with `begin` and ends with `end`) into docs/benchmarks.md.

    It replaces the previous entry between the same markers, else goes at the end of `section`,
    else in a new `section` at the end of the file. The prose around it stays.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + entry + rest.split(end, 1)[1]
    elif section in text:
        start = text.index(section)
        next_section = text.find("\n## ", start + len(section))
        cut = len(text) if next_section < 0 else next_section
        text = text[:cut].rstrip("\n") + "\n\n" + entry + "\n" + text[cut:]
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{entry}\n"
    path.write_text(text)


def record_json_result(
    path: Path, result: Mapping[str, Any], *, section: str, marker: str, heading: str
) -> None:
    """A benchmark's JSON line as a block between ``<!-- {marker} begin/end -->`` in ``section``.

    ``heading`` says how and where it was measured; the block for the same marker is replaced.
    """
    begin, end = f"<!-- {marker} begin -->", f"<!-- {marker} end -->"
    entry = f"{begin}\n{heading}:\n\n```json\n{json.dumps(result)}\n```\n{end}"
    record_in_section(path, section=section, begin=begin, end=end, entry=entry)
