"""The secured local stack's pure parts: the broker's security properties, the SCRAM users' format
arguments, the credentials and the client settings `stack env` prints, the certificates, and the local
pipeline handing each service its own principal. (The broker enforcing them: tests/e2e/test_kafka_boundaries.py.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.demo.pipeline import service_kafka_env
from devtools.stack.errors import StackError
from devtools.stack.kafka import (
    BrokerSecurity,
    KafkaConfig,
    admin_client_properties,
    render_server_properties,
    scram_arguments,
)
from devtools.stack.local import Endpoints
from devtools.stack.secure import client_env, ensure_credentials, service_user
from devtools.stack.tls import ensure_tls
from services.common.kafka_acls import SERVICES, AclBinding, binding_lines


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


SECURITY = BrokerSecurity("s3cret", Path("/stack/tls/broker.pem"), Path("/stack/tls/ca.pem"))


def test_a_secured_broker_authenticates_with_scram_over_tls_and_refuses_what_no_acl_allows() -> None:
    props = properties(
        render_server_properties(KafkaConfig(port=1, controller_port=2, security=SECURITY), Path("/d"))
    )

    assert props["listeners"] == "SASL_SSL://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:1"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert props["ssl.keystore.location"] == "/stack/tls/broker.pem"
    assert "PLAINTEXT://" not in props["listeners"].replace("SASL_PLAINTEXT", "")


def test_a_plaintext_broker_has_no_authorizer() -> None:
    props = properties(render_server_properties(KafkaConfig(), Path("/d")))
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert "authorizer.class.name" not in props


def test_the_admin_client_properties_authenticate_as_admin_and_trust_the_stack_ca() -> None:
    props = properties(admin_client_properties(KafkaConfig(security=SECURITY)))
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert 'username="admin" password="s3cret"' in props["sasl.jaas.config"]
    assert props["ssl.truststore.location"] == "/stack/tls/ca.pem"


def test_scram_users_become_format_arguments_and_unsafe_values_are_refused() -> None:
    assert scram_arguments({"b": "pw2", "a": "pw1"}) == [
        "--add-scram",
        "SCRAM-SHA-512=[name=a,password=pw1]",
        "--add-scram",
        "SCRAM-SHA-512=[name=b,password=pw2]",
    ]
    with pytest.raises(StackError):
        scram_arguments({"a": "pw],name=admin"})


def test_credentials_are_created_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "kafka" / "credentials.json"
    first = ensure_credentials(path)

    assert set(first) == {"admin", *(service_user(s) for s in SERVICES)}
    assert len(set(first.values())) == len(first)  # every user its own password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_credentials(path) == first


def test_stack_env_gives_tools_the_admin_and_each_service_its_own_principal(tmp_path: Path) -> None:
    credentials = ensure_credentials(tmp_path / "credentials.json")
    env = client_env(credentials, tmp_path / "ca.pem")
    lines = Endpoints("127.0.0.1:1", "postgresql+psycopg://postgres@127.0.0.1:2/db", env).env_lines()

    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL\n" in lines
    assert f"KAFKA_SSL_CAFILE={tmp_path / 'ca.pem'}\n" in lines
    assert env["KAFKA_SASL_USERNAME"] == "admin"
    for service in SERVICES:
        assert env[f"{service.upper()}_KAFKA_SASL_USERNAME"] == f"contract-sync-{service}"
        assert env[f"{service.upper()}_KAFKA_SASL_PASSWORD"] == credentials[f"contract-sync-{service}"]


def test_the_local_pipeline_hands_a_service_its_own_credentials_only() -> None:
    env = {
        "KAFKA_SASL_USERNAME": "admin",
        "MAPPER_KAFKA_SASL_USERNAME": "contract-sync-mapper",
        "MAPPER_KAFKA_SASL_PASSWORD": "m",
    }
    assert service_kafka_env(env, "mapper") == {
        "KAFKA_SASL_USERNAME": "contract-sync-mapper",
        "KAFKA_SASL_PASSWORD": "m",
    }
    assert service_kafka_env(env, "writer") == {}


def test_the_broker_certificate_is_signed_by_the_stack_ca_for_the_loopback(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    broker = x509.load_pem_x509_certificates(files.broker_pem.read_bytes())[0]

    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert stat.S_IMODE(files.broker_pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    before = files.broker_pem.read_bytes()
    ensure_tls(tmp_path / "tls")
    assert files.broker_pem.read_bytes() == before  # kept while valid


def test_acl_bindings_reach_the_java_program_as_tab_separated_lines() -> None:
    binding = AclBinding(
        "User:contract-sync-mapper", "TOPIC", "contract-sync-mapper-", "PREFIXED", "DESCRIBE_CONFIGS"
    )
    assert binding_lines([binding]) == (
        "User:contract-sync-mapper\tTOPIC\tcontract-sync-mapper-\tPREFIXED\tDESCRIBE_CONFIGS\n"
    )
