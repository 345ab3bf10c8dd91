"""G04's pure part: archiver state, the runbook's recovery settings, the restored server's log
(lines as PostgreSQL 15 wrote them in the drill) and the orders a restore kept or lost."""

from __future__ import annotations

import pytest

from pytest_spark.probes import pitr

STOPPED_BEFORE = """\
2026-11-30 00:29:06.522 UTC [12641] LOG:  starting point-in-time recovery to 2026-11-30 00:29:06.217399+00
2026-11-30 00:29:06.559 UTC [12641] LOG:  consistent recovery state reached at 0/4000100
2026-11-30 00:29:06.560 UTC [12641] LOG:  recovery stopping before commit of transaction 745, time 2026-11-30 00:29:06.221978+00
2026-11-30 00:29:06.566 UTC [12641] LOG:  selected new timeline ID: 2
2026-11-30 00:29:06.588 UTC [12641] LOG:  archive recovery complete
"""  # noqa: E501
ENDED_BEFORE = """\
2026-11-30 00:30:25.401 UTC [15104] LOG:  starting point-in-time recovery to 2026-11-30 00:29:55.23884+00
cp: cannot stat '/archive/000000010000000000000006': No such file or directory
2026-11-30 00:30:25.426 UTC [15104] FATAL:  recovery ended before configured recovery target was reached
2026-11-30 00:30:25.429 UTC [15100] LOG:  startup process (PID 15104) exited with exit code 1
"""  # noqa: E501
NO_TARGET = """\
2026-11-30 00:30:43.869 UTC [15728] LOG:  starting archive recovery
2026-11-30 00:30:43.921 UTC [15728] LOG:  redo done at 0/5006BD0 system usage: CPU: user: 0.00 s
2026-11-30 00:30:43.962 UTC [15728] LOG:  selected new timeline ID: 2
2026-11-30 00:30:43.985 UTC [15728] LOG:  archive recovery complete
"""


def test_a_restore_that_stopped_before_its_target_on_a_new_timeline_has_no_problems() -> None:
    log = pitr.read_recovery_log(STOPPED_BEFORE)
    assert log.target == "2026-11-30 00:29:06.217399+00"
    assert log.stopped_before and log.new_timeline == 2
    assert not log.ended_before_target and log.fatal == ()
    assert pitr.recovery_log_problems(log, source_timeline=1) == []


def test_a_restore_whose_archive_ends_before_the_target_is_named_as_such() -> None:
    log = pitr.read_recovery_log(ENDED_BEFORE)
    assert log.ended_before_target and log.new_timeline is None
    problems = pitr.recovery_log_problems(log, source_timeline=1)
    assert len(problems) == 2, problems
    assert "does not hold the WAL up to the target" in problems[0]
    assert "not promoted" in problems[1]


def test_a_restore_without_a_target_replays_to_the_end_and_is_caught() -> None:
    log = pitr.read_recovery_log(NO_TARGET)
    assert log.target is None and log.stopping is None and log.new_timeline == 2
    problems = pitr.recovery_log_problems(log, source_timeline=1)
    assert len(problems) == 2, problems
    assert "not given a recovery target" in problems[0]
    assert "did not stop before the target" in problems[1]


def test_stopping_after_the_target_or_on_the_old_timeline_is_a_problem() -> None:
    after = STOPPED_BEFORE.replace("stopping before commit", "stopping after commit")
    assert "did not stop before" in pitr.recovery_log_problems(pitr.read_recovery_log(after), 1)[0]
    same_timeline = pitr.recovery_log_problems(pitr.read_recovery_log(STOPPED_BEFORE), 2)
    assert len(same_timeline) == 1 and "no new timeline after the source's 2" in same_timeline[0]


def test_other_fatal_lines_are_reported() -> None:
    text = STOPPED_BEFORE + '2026-11-30 00:29:07 UTC [1] FATAL:  could not open file "x"\n'
    problems = pitr.recovery_log_problems(pitr.read_recovery_log(text), 1)
    assert problems == ['FATAL: could not open file "x"']


@pytest.mark.parametrize(
    ("last", "segment", "archived"),
    [
        (None, "000000010000000000000003", False),
        ("000000010000000000000002", "000000010000000000000003", False),
        ("000000010000000000000003", "000000010000000000000003", True),
        ("000000010000000000000004", "000000010000000000000003", True),
        # A backup history file names its segment first: that segment is archived with it.
        ("000000010000000000000003.00000028.backup", "000000010000000000000003", True),
        ("00000002.history", "000000010000000000000003", False),
        ("000000020000000000000001", "000000010000000000000003", True),
    ],
)
def test_a_segment_is_archived_once_the_archiver_reports_it_or_a_later_one(
    last: str | None, segment: str, archived: bool
) -> None:
    assert pitr.segment_archived(last, segment) is archived


def test_a_segment_name_that_is_no_wal_file_is_refused() -> None:
    with pytest.raises(ValueError, match="not a WAL segment"):
        pitr.segment_archived("000000010000000000000003", "0/3000000")


def test_a_server_that_never_archived_counts_its_uptime_as_the_age() -> None:
    never = pitr.ArchiverState(0, None, None, 4, "000000010000000000000001", 1.0, 42.0)
    assert never.archive_age_s == 42.0
    assert "archived 0 (last -, never); failed 4" in never.describe()
    recent = pitr.ArchiverState(3, "000000010000000000000003", 0.5, 0, None, None, 42.0)
    assert recent.archive_age_s == 0.5


def test_the_runbook_renders_its_target_and_booleans_for_postgresql_conf() -> None:
    runbook = {
        "recovery_target_time": "{target_time}",
        "recovery_target_action": "promote",
        "recovery_target_inclusive": False,
    }
    settings = pitr.recovery_settings(runbook, "2026-11-30 00:29:06.217399+00")
    assert settings == {
        "recovery_target_time": "2026-11-30 00:29:06.217399+00",
        "recovery_target_action": "promote",
        "recovery_target_inclusive": "off",
    }
    assert pitr.conf_lines({"restore_command": "cp 'a' %p"}) == (
        "restore_command = 'cp ''a'' %p'\n"
    )


def test_orders_lost_and_kept_by_a_restore() -> None:
    assert pitr.orders_missing([1, 2, 3], [1, 3, 4]) == [2]
    assert pitr.orders_present([4, 5, 6], [1, 3, 4, 6]) == [4, 6]
    assert pitr.orders_missing([1, 2], []) == [1, 2]
    assert pitr.orders_present([], [1]) == []
