"""Worker logs: one JSON object per line with the fields of the task being run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from aggregator.logs import bind_fields, configure_logging, log_fields, unbind_fields


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_carry_the_bound_fields(
    restore_root_logger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=True, level="info")
    log = logging.getLogger("aggregator.test")
    token = bind_fields(task_id="t-1", task="workers.tasks.fetch_article")
    with log_fields(article_id=7):
        log.info("fetched %s", "https://example.org/a")
    log.info("after the block")
    unbind_fields(token)
    log.info("outside any task")
    log.debug("below the level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 3
    first, second, third = lines
    assert first["message"] == "fetched https://example.org/a"
    assert (first["task_id"], first["article_id"], first["level"]) == ("t-1", 7, "INFO")
    assert first["logger"] == "aggregator.test" and "timestamp" in first
    assert second["task_id"] == "t-1" and "article_id" not in second
    assert "task_id" not in third


def test_text_format_for_people(
    restore_root_logger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=False, level="WARNING")
    logging.getLogger("aggregator.test").warning("feed %s is gone", 3)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING aggregator.test: feed 3 is gone")
