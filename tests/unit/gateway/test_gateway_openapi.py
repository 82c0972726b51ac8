from services.gateway.openapi import DOCUMENT, render


def test_the_committed_openapi_document_matches_the_app() -> None:
    assert DOCUMENT.read_text() == render(), (
        "docs/openapi.json is stale: run python -m services.gateway.openapi"
    )


def test_the_openapi_document_is_3_1_with_bearer_auth_and_problem_errors() -> None:
    import json

    document = json.loads(render())
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    catalog = document["paths"]["/v1/clients/{client}/catalog"]["get"]
    assert "application/problem+json" in catalog["responses"]["404"]["content"]
