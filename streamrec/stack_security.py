"""The secured local stack (`streamrec stack up --secure DIR`): SASL_SSL Kafka, TLS + ACL Redis, client env file.

What `DIR` holds once `StackSecurity.prepare()` ran (made when missing, kept otherwise):
- `ca.pem` / `ca.key`: a private CA; `server.pem` / `server.key` / `server.p12`: the servers' certificate
  (`streamrec.stack_certs`);
- `secrets.json` (0600): random passwords of the Kafka client user `streamrec`, the broker's own user `broker`,
  the Redis user `streamrec` and the keystore;
- `redis.acl`: `default` off, `streamrec` with the SHA-256 of its password (no clear password in the file);
- `streamrec.env` (0600): every `STREAMREC_*` setting a client needs, passwords included.
The broker: a `SASL_SSL` listener (SCRAM-SHA-512 only; TLS with `server.p12`) for clients and for itself
(inter-broker), the KRaft controller on PLAINTEXT loopback; SCRAM credentials written into the metadata when the
storage is formatted (`kafka-storage format --add-scram`). Redis: `port 0` (no plain TCP), `tls-port`, clients
authenticate by ACL password, not by certificate (`tls-auth-clients no`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from contracts.errors import ConfigError
from streamrec.stack_certs import ensure_ca, ensure_server_cert

if TYPE_CHECKING:
    from streamrec.stack_config import StackConfig
    from streams.kafka_clients import KafkaSecurity

__all__ = ["KAFKA_USER", "MECHANISM", "REDIS_USER", "Passwords", "StackSecurity", "read_env_file", "write_private"]

KAFKA_USER = "streamrec"  # the clients' SCRAM user
BROKER_USER = "broker"  # the broker's own SCRAM user (inter-broker listener)
REDIS_USER = "streamrec"  # the clients' Redis ACL user
MECHANISM = "SCRAM-SHA-512"
_SECRET_KEYS = ("STREAMREC_KAFKA_SASL_PASSWORD", "STREAMREC_REDIS_URL")


@dataclass(frozen=True)
class Passwords:
    """The stack's generated passwords (never in a repr)."""

    kafka: str = field(repr=False)
    broker: str = field(repr=False)
    redis: str = field(repr=False)
    keystore: str = field(repr=False)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (mode 0600 from the start, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The `KEY=value` lines of an env file written by `StackSecurity` (values shell-quoted)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = " ".join(shlex.split(value))
    return out


class StackSecurity:
    """Files, passwords and rendered settings of the secured stack in `directory` for `config`."""

    def __init__(self, directory: Path, config: StackConfig) -> None:
        """Nothing is made until `prepare()`."""
        self.dir = directory
        self.config = config
        self.ca_cert = directory / "ca.pem"
        self.server_cert, self.server_key, self.keystore = (
            directory / n for n in ("server.pem", "server.key", "server.p12")
        )
        self.acl_file = directory / "redis.acl"
        self.env_file = directory / "streamrec.env"
        self._secrets_file = directory / "secrets.json"
        self._passwords: Passwords | None = None

    @property
    def passwords(self) -> Passwords:
        """The passwords in `secrets.json`, generated on first use."""
        if self._passwords is None:
            if not self._secrets_file.exists():
                fresh = {name: secrets.token_urlsafe(24) for name in ("kafka", "broker", "redis", "keystore")}
                write_private(self._secrets_file, json.dumps(fresh) + "\n")
            self._passwords = Passwords(**json.loads(self._secrets_file.read_text(encoding="utf-8")))
        return self._passwords

    def prepare(self) -> None:
        """Make whatever is missing: CA, server certificate and keystore, passwords, Redis ACL file, env file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        ca = ensure_ca(self.dir)
        ensure_server_cert(self.dir, ca, (self.config.host,), self.passwords.keystore)
        digest = hashlib.sha256(self.passwords.redis.encode()).hexdigest()
        self.acl_file.write_text(f"user default off\nuser {REDIS_USER} on #{digest} ~* &* +@all\n", encoding="ascii")
        lines = [f"{key}={shlex.quote(value)}" for key, value in self.client_env().items()]
        write_private(
            self.env_file, "# streamrec stack up --secure: client settings (secret)\n" + "\n".join(lines) + "\n"
        )

    def redis_url(self, db: int = 0) -> str:
        """`rediss://streamrec:<password>@host:port/<db>?ssl_ca_certs=<ca.pem>` (a secret: never log it)."""
        cfg = self.config
        auth = f"{REDIS_USER}:{quote(self.passwords.redis, safe='')}"
        return f"rediss://{auth}@{cfg.host}:{cfg.redis_port}/{db}?ssl_ca_certs={quote(str(self.ca_cert))}"

    def client_env(self) -> dict[str, str]:
        """Every `STREAMREC_*` setting a worker, the learner or a CLI tool needs for this stack."""
        return {
            "STREAMREC_KAFKA_BOOTSTRAP": self.config.bootstrap,
            "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMREC_KAFKA_SASL_MECHANISM": MECHANISM,
            "STREAMREC_KAFKA_SASL_USERNAME": KAFKA_USER,
            "STREAMREC_KAFKA_SASL_PASSWORD": self.passwords.kafka,
            "STREAMREC_KAFKA_SSL_CAFILE": str(self.ca_cert),
            "STREAMREC_REDIS_URL": self.redis_url(),
        }

    def public_env(self) -> dict[str, str]:
        """`client_env()` without the secrets (what `stack up` may print)."""
        return {key: value for key, value in self.client_env().items() if key not in _SECRET_KEYS}

    def kafka_security(self) -> KafkaSecurity:
        """The client security of this stack's broker (the stack's own admin client uses it)."""
        from streams.kafka_clients import KafkaSecurity

        return KafkaSecurity("SASL_SSL", cafile=self.ca_cert, mechanism=MECHANISM, username=KAFKA_USER,
                             password=self.passwords.kafka)  # fmt: skip

    def kafka_properties(self) -> dict[str, str]:
        """`server.properties` entries that replace the PLAINTEXT client listener by SASL_SSL (SCRAM-SHA-512)."""
        cfg, pw = self.config, self.passwords
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        jaas = f'{login} username="{BROKER_USER}" password="{pw.broker}";'
        return {
            "listeners": f"SASL_SSL://{cfg.host}:{cfg.kafka_port},CONTROLLER://{cfg.host}:{cfg.controller_port}",
            "advertised.listeners": f"SASL_SSL://{cfg.host}:{cfg.kafka_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": pw.keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_cert),
            "ssl.client.auth": "none",
        }

    def scram_format_args(self) -> list[str]:
        """`kafka-storage format` arguments that write both SCRAM users into the new cluster's metadata."""
        pw = self.passwords
        users = ((KAFKA_USER, pw.kafka), (BROKER_USER, pw.broker))
        return [
            arg for name, password in users for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
        ]

    def redis_conf(self) -> dict[str, str]:
        """`redis.conf` directives for TLS only (`port 0`) with the ACL file."""
        if not self.acl_file.exists():
            msg = f"{self.acl_file} is missing; call prepare() first"
            raise ConfigError(msg)
        return {
            "port": "0",
            "tls-port": str(self.config.redis_port),
            "tls-cert-file": str(self.server_cert),
            "tls-key-file": str(self.server_key),
            "tls-ca-cert-file": str(self.ca_cert),
            "tls-auth-clients": "no",
            "aclfile": str(self.acl_file),
        }
