"""Property-based fuzz of the HTTP API from its own OpenAPI description (schemathesis).

Every operation in ``/openapi.json`` gets requests generated from its schema, valid and invalid, sent to
the ASGI app in-process with a valid token. Each response must be no server error and must match the
document (status code declared, body matching its schema, content type), so the description stays
accurate as well as the server robust. Bounded by ``MAX_EXAMPLES`` to stay well under 30 seconds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from taskloom.discovery import find_workflows, import_modules
from taskloom.server.app import create_app
from taskloom.store import open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TOKEN = "fuzz-token"
MAX_EXAMPLES = 40

# schemathesis loads the schema when the module is imported, so the app (with a throwaway store of its
# own, and the secret key given rather than read from a home folder) exists from then on.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
_FOLDER = Path(tempfile.mkdtemp(prefix="taskloom-fuzz-"))
_STORE = open_store(f"sqlite:///{_FOLDER / 'fuzz.db'}")
APP = create_app(
    token=TOKEN,
    store=_STORE,
    workflows=find_workflows(import_modules(["serverapp.flows"])),
    modules=["serverapp.flows"],
    secret_key=b"k" * 32,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

# The document states some rules in words that a portable regex cannot (a secret name has no Unicode
# control or format characters), and the server treats an empty query parameter as absent; so it is not
# held to reject every schema-violating request nor to accept every schema-valid one. Everything else is:
# no 5xx, only declared status codes, bodies and content types matching the document, 401 without a token.
LENIENT = [schemathesis.checks.negative_data_rejection, schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module", autouse=True)
def _remove_the_store() -> Iterator[None]:
    yield
    _STORE.close()
    shutil.rmtree(_FOLDER, ignore_errors=True)


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_the_api_matches_its_description_and_never_fails(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=LENIENT)
