"""TLS certificates for the secured local stack, made with `openssl` at start (nothing is committed).

`ensure_ca(dir)` makes a private CA (`ca.pem`, `ca.key`), `ensure_server_cert(dir, ca, hosts)` a server key and
certificate it signs (subject alternative names: the stack's host, `127.0.0.1`, `localhost`) plus a PKCS#12
keystore (`server.p12`) holding both for the broker. Keys are EC P-256 (fast to make), certificates valid 30 days,
private keys and the keystore mode 0600. Existing files are kept, so a restarted stack keeps its certificates.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import ConfigError

__all__ = ["CertificateAuthority", "ServerCert", "ensure_ca", "ensure_server_cert"]

_DAYS = "30"
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate (what clients trust) and key (what signs)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ServerCert:
    """A server's PEM key and certificate (Redis) and the PKCS#12 keystore holding both (Kafka)."""

    cert: Path
    key: Path
    keystore: Path


def _openssl(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    if shutil.which("openssl") is None:
        msg = "`stack up --secure` needs `openssl` on PATH (apt-get install openssl)"
        raise ConfigError(msg)
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, check=False, stdin=subprocess.DEVNULL, env=env
    )
    if done.returncode != 0:
        msg = f"openssl {args[0]} failed in {cwd}: {done.stderr.decode(errors='replace').strip()[-500:]}"
        raise ConfigError(msg)


def ensure_ca(directory: Path, name: str = "ca", subject: str = "streamrec local CA") -> CertificateAuthority:
    """`<name>.pem` and `<name>.key` in `directory`: a self-signed CA, made unless both exist."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(directory / f"{name}.pem", directory / f"{name}.key")
    if ca.cert.exists() and ca.key.exists():
        return ca
    args = ["req", "-x509", *_EC_KEY, "-keyout", ca.key.name, "-out", ca.cert.name, "-days", _DAYS]
    args += ["-subj", f"/CN={subject}", "-addext", "basicConstraints=critical,CA:TRUE"]
    args += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl(args, directory)
    ca.key.chmod(0o600)
    return ca


def _san(hosts: tuple[str, ...]) -> str:
    names = []
    for host in dict.fromkeys((*hosts, "127.0.0.1", "localhost")):
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def ensure_server_cert(
    directory: Path, ca: CertificateAuthority, hosts: tuple[str, ...], keystore_password: str
) -> ServerCert:
    """`server.key`, `server.pem` (signed by `ca`, valid for `hosts`) and `server.p12`, made unless present.

    The keystore password reaches openssl through its environment, never its command line.
    """
    server = ServerCert(directory / "server.pem", directory / "server.key", directory / "server.p12")
    if server.cert.exists() and server.key.exists() and server.keystore.exists():
        return server
    ext = directory / "server.ext"
    ext.write_text(
        f"subjectAltName={_san(hosts)}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n",
        encoding="ascii",
    )
    _openssl(["req", *_EC_KEY, "-keyout", server.key.name, "-out", "server.csr", "-subj", f"/CN={hosts[0]}"], directory)
    sign = ["x509", "-req", "-in", "server.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial"]
    _openssl([*sign, "-out", server.cert.name, "-days", _DAYS, "-extfile", ext.name], directory)
    export = ["pkcs12", "-export", "-in", server.cert.name, "-inkey", server.key.name, "-certfile", str(ca.cert)]
    env = {**os.environ, "STREAMREC_KEYSTORE_PASSWORD": keystore_password}
    _openssl([*export, "-name", "server", "-out", server.keystore.name, "-passout", "env:STREAMREC_KEYSTORE_PASSWORD"],
             directory, env)  # fmt: skip
    for path in (server.key, server.keystore):
        path.chmod(0o600)
    return server
