"""Carry the gate's facts in junit.xml in a form the JUnit schema accepts.

pytest's default ``xunit2`` family follows the Jenkins xunit ``junit-10.xsd``, where only a
``<testsuite>`` may hold ``<properties>``; per-testcase properties (what ``user_properties``
become) make CI tools that validate the file reject it. So the verdict, gate, release, run
id and each test's checklist items go into suite-level properties, and any per-testcase
properties are moved there too.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path

from pytest_spark.evidence.bundle import CheckRecord
from pytest_spark.gate import Verdict

# Written by older versions of the gate as per-testcase properties; now spark.items[...].
LEGACY_ITEM_PROPERTY = "spark_item"


def carry_gate_properties(
    path: Path,
    verdict: Verdict,
    run_id: str,
    records: Mapping[str, CheckRecord],
    redact: Callable[[str], str] = lambda text: text,
) -> None:
    """Rewrite ``path`` in place (atomically) with the gate's suite-level properties.

    ``redact`` masks every value written here, as the bundle's own writes are masked.
    """
    tree = ET.parse(path)
    root = tree.getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if not suites:
        suites = [ET.SubElement(root, "testsuite", _empty_suite_counts())]
    moved: list[tuple[str, str]] = []
    for suite in suites:
        for case in suite.iter("testcase"):
            for properties in case.findall("properties"):
                case.remove(properties)
                where = f"{case.get('classname', '')}::{case.get('name', '')}"
                moved.extend(
                    (f"testcase[{where}].{p.get('name', '')}", p.get("value", ""))
                    for p in properties.findall("property")
                    if p.get("name") != LEGACY_ITEM_PROPERTY
                )
    facts = [
        ("spark.verdict", verdict.verdict),
        ("spark.gate", verdict.gate),
        ("spark.release", verdict.release),
        ("spark.run_id", run_id),
    ]
    facts += [
        (f"spark.items[{nodeid}]", " ".join(record.items))
        for nodeid, record in records.items()
        if record.items
    ]
    properties = _suite_properties(suites[0])
    for name, value in facts + moved:
        ET.SubElement(properties, "property", name=redact(name), value=redact(value))
    tmp = path.with_name(f".tmp-{path.name}")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def _suite_properties(suite: ET.Element) -> ET.Element:
    existing = suite.find("properties")
    if existing is not None:
        return existing
    # First child, where junitxml puts record_testsuite_property's properties.
    properties = ET.Element("properties")
    suite.insert(0, properties)
    return properties


def _empty_suite_counts() -> dict[str, str]:
    return {"name": "pytest", "tests": "0", "failures": "0", "errors": "0", "skipped": "0"}
