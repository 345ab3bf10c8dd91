"""junit.xml in the bundle validates against the schema pytest tests its own output with."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from pytest_spark.evidence.bundle import CheckRecord
from pytest_spark.evidence.junit import carry_gate_properties
from pytest_spark.gate import GO, Verdict

from .conftest import latest_bundle

SCHEMA = Path(__file__).parent / "data" / "junit-10.xsd"


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def assert_valid(schema: etree.XMLSchema, path: Path) -> etree._ElementTree:
    document = etree.parse(str(path))
    assert schema.validate(document), f"{path.name}: {schema.error_log}"
    return document


def suite_properties(document: etree._ElementTree) -> dict[str, str]:
    return {
        p.get("name"): p.get("value") for p in document.findall("testsuite/properties/property")
    }


def test_the_bundle_junit_is_valid_and_carries_the_gate(
    gate_project: pytest.Pytester, schema: etree.XMLSchema
) -> None:
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider", "--spark-release", "v2.0.0")
    bundle = latest_bundle(gate_project)
    document = assert_valid(schema, bundle / "junit.xml")
    properties = suite_properties(document)
    assert properties["spark.verdict"] == GO
    assert properties["spark.gate"] == "tiny"
    assert properties["spark.release"] == "v2.0.0"
    assert properties["spark.run_id"] == bundle.name
    assert properties["spark.items[test_suite.py::test_a1]"] == "G1"
    assert properties["spark.items[test_suite.py::test_a2]"] == "M2"
    assert not document.findall(".//testcase/properties")


def test_a_no_go_with_failures_and_skips_is_valid(
    gate_project: pytest.Pytester, schema: etree.XMLSchema
) -> None:
    gate_project.makepyfile(
        test_more="""
import pytest

@pytest.mark.go_nogo("G1")
def test_a1_fails():
    assert False, "offset 250 ms"

@pytest.mark.go_nogo("G1")
def test_a1_skipped():
    pytest.skip("no NTP server configured")
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 1
    document = assert_valid(schema, latest_bundle(gate_project) / "junit.xml")
    properties = suite_properties(document)
    assert properties["spark.verdict"] == "NO-GO"
    assert properties["spark.items[test_more.py::test_a1_fails]"] == "G1"


def test_a_user_chosen_junit_path_is_copied_in_valid(
    gate_project: pytest.Pytester, schema: etree.XMLSchema
) -> None:
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider", "--junitxml=out/junit.xml")
    assert_valid(schema, gate_project.path / "out/junit.xml")
    document = assert_valid(schema, latest_bundle(gate_project) / "junit.xml")
    assert suite_properties(document)["spark.items[test_suite.py::test_a1]"] == "G1"


def test_per_testcase_properties_move_to_the_suite(tmp_path: Path, schema: etree.XMLSchema) -> None:
    """What record_property and the old spark_item properties wrote, made valid."""
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        '<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="1" time="0.010">'
        '<testcase classname="test_suite" name="test_a1" time="0.001"><properties>'
        '<property name="spark_item" value="G1"/><property name="ntp_server" value="ntp1"/>'
        "</properties></testcase></testsuite></testsuites>"
    )
    verdict = Verdict(gate="tiny", release="v1.4.0", verdict=GO, items={})
    records = {"test_suite.py::test_a1": CheckRecord("test_suite.py::test_a1", ("G1", "G3"))}
    carry_gate_properties(junit, verdict, "20990101T000000Z-abcdef", records, str.upper)
    document = assert_valid(schema, junit)
    properties = suite_properties(document)
    assert properties["SPARK.ITEMS[TEST_SUITE.PY::TEST_A1]"] == "G1 G3"  # redacted as written
    assert properties["TESTCASE[TEST_SUITE::TEST_A1].NTP_SERVER"] == "NTP1"
    assert not any("SPARK_ITEM" in name for name in properties)
