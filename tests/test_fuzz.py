"""schemathesis over the live tiny-model server's own /openapi.json: every operation, a
bounded number of generated requests with a fixed seed. No 5xx, every response as declared,
and the server healthy afterwards."""

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.constants import API_KEYS

EXAMPLES_PER_OPERATION = 25
# What the server promises: no 5xx, and each response with a declared status, content type
# and body schema. Not "every schema-valid request succeeds": limits that depend on the
# model (a budget past the context) are 4xx that the schema cannot state.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
KEY = {"Authorization": f"Bearer {API_KEYS[0]}"}


def fuzz(operation, mode: GenerationMode, statuses: Counter) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same requests on every run
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case):
        # With the key: whether a request passes is up to what was generated.
        response = case.call(headers=KEY, timeout=120)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    call()


def test_fuzz_every_operation_no_5xx_and_responses_as_declared(server, client):
    kept = client.get("/system_prompt").json()  # the fuzzer replaces it; later tests need it
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    seen: dict[str, Counter] = {}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            # Requests the schema allows, and (where there is a body to break) requests it
            # forbids, which must be 4xx.
            modes = [GenerationMode.POSITIVE]
            if operation.method.upper() == "POST":
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                name = f"{mode.value} {operation.method.upper()} {operation.path}"
                fuzz(operation, mode, seen.setdefault(name, Counter()))
    finally:
        client.post("/system_prompt", json=kept)
    total = sum(sum(statuses.values()) for statuses in seen.values())
    print(f"\nschemathesis: {total} requests over {len(seen)} operations: {seen}")
    assert len(seen) >= 13, seen
    assert client.get("/").status_code == 200, "the server is unhealthy after the fuzzing"
