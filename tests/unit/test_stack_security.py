"""The secured stack's pure parts and the one Kafka client factory: rendered configs, env file, refusal messages.

No services run here; `StackSecurity.prepare()` calls `openssl` (a tool, not a service). The real broker and
Redis are exercised by `tests/integration/test_security.py`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from aiokafka.errors import SaslAuthenticationFailed
from redis.asyncio.connection import parse_url
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts import ConfigError, Settings
from feature_store import redis_refusal
from streamrec.child_processes import security_env, worker_env
from streamrec.stack import StackInfo
from streamrec.stack_config import StackConfig, render_server_properties
from streamrec.stack_procs import ensure_kafka_storage
from streamrec.stack_security import StackSecurity, read_env_file
from streams.kafka_check import kafka_refusal
from streams.kafka_clients import KafkaSecurity, client_kwargs


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> StackSecurity:
    """A prepared secure dir (CA, server certificate, passwords, ACL, env file) for ports 29092/29093/26379."""
    root = tmp_path_factory.mktemp("sec")
    cfg = StackConfig(state_dir=root / "stack", kafka_port=29092, controller_port=29093, redis_port=26379)
    sec = StackSecurity(root / "tls", cfg)
    sec.prepare()
    return sec


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _settings(sec: StackSecurity) -> Settings:
    env = read_env_file(sec.env_file)
    return Settings(**{key.removeprefix("STREAMREC_").lower(): value for key, value in env.items()})


def test_the_broker_serves_clients_only_on_sasl_ssl_with_scram_sha_512(security: StackSecurity) -> None:
    props = _props(render_server_properties(security.config, security.kafka_properties()))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:29092"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["ssl.keystore.location"] == str(security.keystore)
    assert 'username="broker"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    pw = security.passwords
    assert security.scram_format_args() == [
        "--add-scram", f"SCRAM-SHA-512=[name=streamrec,password={pw.kafka}]",
        "--add-scram", f"SCRAM-SHA-512=[name=broker,password={pw.broker}]",
    ]  # fmt: skip


def test_redis_is_tls_only_with_the_acl_file_holding_no_clear_password(security: StackSecurity) -> None:
    conf = security.redis_conf()
    assert conf["port"] == "0" and conf["tls-port"] == "26379" and conf["tls-auth-clients"] == "no"
    acl = security.acl_file.read_text()
    assert acl.startswith("user default off\n") and "user streamrec on #" in acl
    assert security.passwords.redis not in acl


def test_the_env_file_is_private_and_gives_complete_client_settings(security: StackSecurity) -> None:
    assert security.env_file.stat().st_mode & 0o777 == 0o600
    settings = _settings(security)
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "streamrec" and settings.kafka_ssl_cafile == security.ca_cert
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == security.passwords.kafka
    url = parse_url(settings.redis_url.get_secret_value())  # what redis-py makes of it
    assert url["connection_class"].__name__ == "SSLConnection"
    assert (url["username"], url["password"]) == ("streamrec", security.passwords.redis)
    assert url["ssl_ca_certs"] == str(security.ca_cert) and url["db"] == 0
    public = "\n".join(f"{k}={v}" for k, v in security.public_env().items())
    assert security.passwords.kafka not in public and security.passwords.redis not in public


def test_passwords_are_made_once_and_kept(security: StackSecurity) -> None:
    again = StackSecurity(security.dir, security.config)
    assert again.passwords == security.passwords
    assert len({security.passwords.kafka, security.passwords.redis, security.passwords.broker}) == 3
    assert security.passwords.kafka not in repr(security.passwords)


def test_stack_up_prints_a_line_sourcing_the_env_file_never_a_password(security: StackSecurity) -> None:
    info = StackInfo("127.0.0.1:29092", security.redis_url(), 1, 2, (), env_file=security.env_file)
    assert info.env_lines() == [f"set -a; . {security.env_file}; set +a"]


def test_a_storage_formatted_without_scram_is_not_reused_for_the_secured_stack(
    security: StackSecurity, tmp_path: Path
) -> None:
    cfg = StackConfig(state_dir=tmp_path, kafka_port=29092, controller_port=29093, redis_port=26379)
    cfg.kafka_data_dir.mkdir(parents=True)
    (cfg.kafka_data_dir / "meta.properties").write_text("version=1\n")
    with pytest.raises(ConfigError, match="formatted for PLAINTEXT, not SASL_SSL"):
        ensure_kafka_storage(cfg, security.kafka_properties(), security.scram_format_args())
    assert (tmp_path / "server.properties").stat().st_mode & 0o777 == 0o600


def test_one_factory_builds_the_same_security_for_aiokafka_and_faust(security: StackSecurity) -> None:
    settings = _settings(security)
    kafka = KafkaSecurity.from_settings(settings)
    kwargs = client_kwargs(settings)
    assert kwargs["bootstrap_servers"] == ["127.0.0.1:29092"] and kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_username"] == "streamrec"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "streamrec local CA"),),)]
    credentials = kafka.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    assert credentials.password == security.passwords.kafka and credentials.ssl_context is not None
    assert security.passwords.kafka not in repr(kafka)
    plain = KafkaSecurity()
    assert plain.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"} and plain.faust_credentials() is None
    tls_only = KafkaSecurity("SSL", cafile=security.ca_cert).faust_credentials()
    assert isinstance(tls_only, faust.SSLCredentials)


def test_child_processes_get_the_security_settings(security: StackSecurity) -> None:
    settings = _settings(security)
    env = worker_env(settings, 6070)
    assert env["STREAMREC_KAFKA_SASL_PASSWORD"] == security.passwords.kafka
    assert env["STREAMREC_KAFKA_SSL_CAFILE"] == str(security.ca_cert)
    assert "STREAMREC_KAFKA_SSL_CERTFILE" not in security_env(settings)
    assert security_env(Settings()) == {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}


def _verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_message = message
    return exc


def test_kafka_refusals_name_what_failed_and_nothing_else(security: StackSecurity) -> None:
    kafka = KafkaSecurity.from_settings(_settings(security))
    auth = kafka_refusal(SaslAuthenticationFailed("invalid credentials"), "127.0.0.1:29092", kafka)
    assert auth is not None
    assert auth.startswith("Kafka authentication failed for user streamrec (SCRAM-SHA-512) at 127.0.0.1:29092")
    tls = kafka_refusal(_verify_error("self-signed certificate in certificate chain"), "127.0.0.1:29092", kafka)
    assert tls is not None
    assert tls.startswith("Kafka TLS certificate of 127.0.0.1:29092 is not trusted (self-signed certificate")
    assert str(security.ca_cert) in tls
    assert kafka_refusal(ConnectionRefusedError(111, "refused"), "127.0.0.1:29092", kafka) is None  # down: wait
    for message in (auth, tls):
        assert security.passwords.kafka not in message


def test_redis_refusals_name_what_failed_and_nothing_else(security: StackSecurity) -> None:
    url = security.redis_url()
    auth = redis_refusal(AuthenticationError("invalid username-password pair"), url)
    assert auth is not None and auth.startswith("Redis authentication failed for user streamrec at 127.0.0.1:26379")
    wrapped = RedisConnectionError("Error 1 connecting")
    wrapped.__cause__ = _verify_error("unable to get local issuer certificate")
    tls = redis_refusal(wrapped, url)
    assert tls == (
        "Redis TLS certificate of 127.0.0.1:26379 is not trusted (unable to get local issuer certificate); "
        "check ssl_ca_certs in STREAMREC_REDIS_URL"
    )
    assert redis_refusal(RedisConnectionError("Connection refused"), url) is None  # down: the worker waits
    for message in (auth, tls):
        assert security.passwords.redis not in message


def test_cli_tracebacks_never_show_local_variables() -> None:
    from streamrec.cli import app

    assert app.pretty_exceptions_show_locals is False  # a frame's locals can hold a password
