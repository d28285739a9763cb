"""Test certificates (trustme): a CA, a server certificate for 127.0.0.1 and localhost, a client
certificate for mutual TLS, and another CA that signed none of them. Shared by the SDK and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """PEM files, one per attribute."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_pki(folder: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@streamstats.test")
    blobs = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "other_ca": other.cert_pem,
    }
    for name, blob in blobs.items():
        blob.write_to_path(str(folder / f"{name}.pem"))
    return Pki(**{name: folder / f"{name}.pem" for name in blobs})
