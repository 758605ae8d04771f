"""Property-based fuzzing of every GET operation from the OpenAPI spec (schemathesis), on a store
filled by the real pipeline: no input gets a 500 or an answer that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.schemas import BaseSchema

from aggregator.api.app import create_app
from tests.conftest import make_test_settings, new_postgres_database
from tests.integration.test_api import fill_with_demo_corpus

EXPECTED_422 = ("cursor", "out of range", "relevance needs q")
DIGEST_PATHS = r"^/(subscribe|subscribers|confirm|unsubscribe)"
MAX_EXAMPLES = 200  # over all GET operations together; bounded for CI


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BaseSchema]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        yield _schema(folder, f"sqlite:///{folder / 'store.db'}")
        return
    with new_postgres_database() as url:
        yield _schema(folder, url)


def _schema(folder: Path, database_url: str) -> BaseSchema:
    test_settings = make_test_settings(folder / "data", database_url)
    fill_with_demo_corpus(test_settings)
    app = create_app(test_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The digest's subscription routes are fuzzed by their own tests (tests/integration/).
    return schema.include(method="GET").exclude(path_regex=DIGEST_PATHS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_breaks_a_get_endpoint(api_schema: BaseSchema, mode: GenerationMode) -> None:
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call()
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        # A well-formed cursor the API never handed out, a time beyond the calendar after the
        # offset, sort=relevance without q: valid by the schema, rightly refused with a 422.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if mode is GenerationMode.POSITIVE:
            assert response.status_code in (200, 304, 308, 404, 422) or (
                response.status_code == 403 and case.path == "/metrics"
            ), case.as_curl_command()
            if response.status_code == 422:
                assert any(w in response.json()["detail"] for w in EXPECTED_422), response.text
        else:
            assert response.status_code in (200, 403, 404, 405, 422), case.as_curl_command()

    check()
