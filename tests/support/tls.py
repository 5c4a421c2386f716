"""Certificates for the TLS tests: a test CA (trustme) and a server certificate it signs."""

from __future__ import annotations

from pathlib import Path

import trustme

from tools.local_stack import TlsFiles


def issue_certificate(folder: Path, name: str, *hosts: str) -> TlsFiles:
    """Write ``<name>.pem`` (certificate for ``hosts``), ``<name>.key`` and the CA that
    signed it (``<name>-ca.pem``) into ``folder``."""
    ca = trustme.CA()
    certificate = ca.issue_cert(*hosts)
    files = TlsFiles(folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}-ca.pem")
    certificate.cert_chain_pems[0].write_to_path(files.cert)
    certificate.private_key_pem.write_to_path(files.key)
    ca.cert_pem.write_to_path(files.ca)
    return files


def other_ca(folder: Path) -> Path:
    """A CA that signed none of the servers' certificates."""
    path = folder / "otra-ca.pem"
    trustme.CA().cert_pem.write_to_path(path)
    return path
