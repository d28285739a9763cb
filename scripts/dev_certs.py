"""Development TLS certificates and bearer tokens for streamstats, in one folder (default: ./secrets).

    python scripts/dev_certs.py                 # writes ./secrets next to docker-compose.yml
    python scripts/dev_certs.py --out DIR       # somewhere else
    python scripts/dev_certs.py --force         # replace what is there (a new CA, new tokens)
    python scripts/dev_certs.py --san my-laptop.lan --san 192.168.1.20   # more server names

It writes (the folder is created 0700; keys and the tokens file are 0600):

    ca.pem                  a new CA: what clients trust. Its private key is never written, so nobody
                            can issue more certificates from this folder: rerun with --force instead.
    server.pem, server.key  the server's certificate (for localhost, 127.0.0.1, ::1 and the compose
                            service names server and server-secure, plus any --san) and key
    client.pem, client.key  a client certificate and key, for mutual TLS (--tls-client-ca ca.pem)
    tokens.toml             three bearer tokens (admin: admin+read+write, ingest: write, dashboards:
                            read), stored as SHA-256 digests: the tokens themselves are printed once,
                            on stdout, and kept nowhere else

Everything is valid for --days (365 by default) from now; after that, rerun with --force. These are for
development (docker compose --profile secure, a local server): use your organisation's CA in production.

Uses the cryptography package (installed with the dev extras). Not trustme: trustme makes test CAs that
are valid until the year 3000, with every certificate good for both server and client authentication;
files that outlive a test run should expire, and a server certificate should not work as a client's.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - only without the dev extras
    sys.exit("dev_certs.py needs the 'cryptography' package: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "secrets"
DEFAULT_DAYS = 365
# The names the server certificate is for: the host's loopback, and docker-compose.yml's services.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "server", "server-secure")
# The file names docker-compose.yml's secure profile mounts (tests/unit/test_container.py checks it).
CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
CLIENT_CERT_FILE = "client.pem"
CLIENT_KEY_FILE = "client.key"
TOKENS_FILE = "tokens.toml"
FILES = (CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, TOKENS_FILE)
SECRET_FILES = (SERVER_KEY_FILE, CLIENT_KEY_FILE, TOKENS_FILE)  # 0600; the certificates are 0644
# (name, scopes): an operator, a writer for ingestion, a reader for dashboards.
TOKENS = (("admin", ("admin", "read", "write")), ("ingest", ("write",)), ("dashboards", ("read",)))
# A little slack for a clock that is behind (a VM or container just resumed).
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    secret: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamstats development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_pki(server_names: Sequence[str], days: int, now: datetime.datetime) -> dict[str, bytes]:
    """The PEM files: a CA (its key is dropped here), a server and a client certificate with keys."""
    ca_key = _key()
    ca_name = _name(f"streamstats development CA {now:%Y-%m-%d} {secrets.token_hex(4)}")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(common_name: str, usage: x509.ObjectIdentifier, names: Sequence[str]) -> tuple[bytes, bytes]:
        key = _key()
        builder = (
            _builder(_name(common_name), ca_name, key, now, days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(authority, critical=False)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)

    server_cert, server_key = leaf("streamstats server", ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    client_cert, client_key = leaf("streamstats development client", ExtendedKeyUsageOID.CLIENT_AUTH, ())
    return {
        CA_FILE: _cert_pem(ca_cert),
        SERVER_CERT_FILE: server_cert,
        SERVER_KEY_FILE: server_key,
        CLIENT_CERT_FILE: client_cert,
        CLIENT_KEY_FILE: client_key,
    }


def make_tokens() -> list[Token]:
    return [Token(name, scopes, secrets.token_urlsafe(32)) for name, scopes in TOKENS]


def tokens_toml(tokens: Sequence[Token], now: datetime.datetime) -> bytes:
    lines = [
        f"# streamstats bearer tokens, written by scripts/dev_certs.py on {now:%Y-%m-%d %H:%M} UTC.",
        "# Only their SHA-256 digests are here: the tokens were printed once, when this file was made.",
        "# The format: README.md, 'Running it securely'. Rerun dev_certs.py --force for new ones.",
    ]
    for token in tokens:
        scopes = ", ".join(f'"{scope}"' for scope in token.scopes)
        lines += [
            "",
            "[[token]]",
            f'name = "{token.name}"',
            f'sha256 = "{token.sha256}"',
            f"scopes = [{scopes}]",
        ]
    return ("\n".join(lines) + "\n").encode()


def _write(folder: Path, name: str, data: bytes, mode: int) -> None:
    """Write atomically (a temp file renamed over the target) with the mode set before any byte lands."""
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, folder / name)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _usage(folder: Path, tokens: Sequence[Token], names: Sequence[str], until: datetime.datetime) -> str:
    # As the user would type it from here: relative when under the current folder.
    shown = str(folder.relative_to(Path.cwd())) if folder.is_relative_to(Path.cwd()) else str(folder)
    width = max(len(t.name) for t in tokens)
    lines = [
        f"Wrote {', '.join(FILES)} to {folder}",
        f"  valid until {until:%Y-%m-%d} UTC; server certificate for: {', '.join(names)}",
        "  the CA's private key was not kept: rerun with --force for new certificates",
        "",
        "Bearer tokens (shown only now: tokens.toml keeps just their SHA-256 digests):",
    ]
    lines += [f"  {t.name:<{width}}  {t.secret}  scopes: {', '.join(t.scopes)}" for t in tokens]
    lines += [
        "",
        "Use them:",
        "  docker compose --profile secure up --build server-secure     # TLS + tokens on 127.0.0.1:50052",
        f"  export STREAMSTATS_SERVER=127.0.0.1:50052 STREAMSTATS_TLS=1 STREAMSTATS_CA={shown}/{CA_FILE}",
        "  export STREAMSTATS_TOKEN=<a token above>                     # the CLI reads it from there",
        "  streamstats list",
        "  # mutual TLS (server started with --tls-client-ca ca.pem): also",
        f"  export STREAMSTATS_CERT={shown}/{CLIENT_CERT_FILE} STREAMSTATS_KEY={shown}/{CLIENT_KEY_FILE}",
        "",
        "  # the SDK:",
        "  client = streamstats.Client('127.0.0.1:50052', config=streamstats.ClientConfig(token=TOKEN,",
        f"      tls=streamstats.TLSConfig(ca_file='{shown}/{CA_FILE}')))",
        "  # a server of your own:",
        f"  streamstats-server --tls-cert {shown}/{SERVER_CERT_FILE} --tls-key {shown}/{SERVER_KEY_FILE} "
        f"--auth-tokens {shown}/{TOKENS_FILE}",
    ]
    return "\n".join(lines)


def _positive_days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 3650:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3650 days, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dev_certs.py",
        description="Write a development CA, server and client certificates and bearer tokens for "
        "streamstats into one folder; print the tokens once.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"the folder (default: {DEFAULT_OUT}); created 0700"
    )
    parser.add_argument(
        "--days",
        type=_positive_days,
        default=DEFAULT_DAYS,
        help=f"how long the certificates are valid (default: {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help=f"another DNS name or IP address for the server certificate (repeatable; always: "
        f"{', '.join(SERVER_NAMES)})",
    )
    parser.add_argument("--force", action="store_true", help="replace files that are already there")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder: Path = args.out.absolute()
    existing = [name for name in FILES if (folder / name).exists()]
    if existing and not args.force:
        print(
            f"dev_certs.py: {folder} already has {', '.join(existing)}; not replacing them "
            "(--force to make new ones: clients then need the new ca.pem and tokens)",
            file=sys.stderr,
        )
        return 1
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        print(f"dev_certs.py: note: {folder} can be read by other users (chmod 700 it)", file=sys.stderr)
    names = list(dict.fromkeys([*SERVER_NAMES, *args.san]))
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    files = make_pki(names, args.days, now)
    tokens = make_tokens()
    files[TOKENS_FILE] = tokens_toml(tokens, now)
    for name in FILES:
        _write(folder, name, files[name], 0o600 if name in SECRET_FILES else 0o644)
    print(_usage(folder, tokens, names, now + datetime.timedelta(days=args.days)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
