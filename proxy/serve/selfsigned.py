"""``serve --tls-self-signed``: a key and certificate for this machine, made once with ``cryptography``, then reused.

The files are ``$CODEX_HOME/codex-appserver/tls-cert.pem`` and ``tls-key.pem`` (0600, folder 0700). The
certificate names the host name (and ``<host>.local``), ``localhost``, the loopback addresses and the machine's
LAN addresses (subjectAltName, RFC 5280 §4.2.1.6); it is valid for 825 days, the longest phones accept. No CA
trusts it: a client pins its SHA-256 fingerprint instead (:func:`fingerprint`, shown by ``serve`` through
:func:`use_self_signed` and put in the pairing URI). Import this module only where a certificate is needed:
``cryptography`` takes time to load.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path

from ..errors import LocalIOError
from .statedir import ensure_state_dir, state_dir, write_private

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
VALID_DAYS = 825


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 of the certificate's DER bytes, 64 lowercase hex digits.

    :raises ValueError: *cert_pem* holds no PEM certificate.
    """
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))).hexdigest()


def display_fingerprint(hex_digest: str) -> str:
    """``AB:CD:...``: the form browsers and ``openssl x509 -fingerprint -sha256`` show."""
    upper = hex_digest.upper()
    return ":".join(upper[i : i + 2] for i in range(0, len(upper), 2))


def local_names() -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) this machine answers to: host names, loopback, LAN addresses."""
    host = socket.gethostname()
    names = [name for name in dict.fromkeys([host, socket.getfqdn(), f"{host.split('.')[0]}.local", "localhost"])]
    addresses = ["127.0.0.1", "::1"]
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(host, None):
            addresses.append(str(info[4][0]))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        # A UDP connect sends nothing; it only asks the kernel which source address it would use: the LAN one.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe_socket:
            probe_socket.connect((probe, 9))
            addresses.append(str(probe_socket.getsockname()[0]))
    valid = []
    for address in dict.fromkeys(addresses):
        with contextlib.suppress(ValueError):
            valid.append(str(ipaddress.ip_address(address.split("%")[0])))
    return [name for name in names if name], list(dict.fromkeys(valid))


def create(folder: Path, names: list[str], addresses: list[str]) -> None:
    """Write a new P-256 key and a self-signed certificate for *names* and *addresses* into *folder*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "codex-appserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ensure_state_dir(folder)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(folder / KEY_FILE, key_pem)
    write_private(folder / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))


def ensure(folder: Path) -> tuple[Path, Path, str, bool]:
    """The certificate and key in *folder*, made first when missing: (cert path, key path, fingerprint, made).

    :raises LocalIOError: they cannot be written or read (74).
    """
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    made = False
    if not (cert_path.exists() and key_path.exists()):
        names, addresses = local_names()
        create(folder, names, addresses)
        made = True
    try:
        cert_pem = cert_path.read_bytes()
        digest = fingerprint(cert_pem)
    except OSError as exc:
        raise LocalIOError(f"cannot read the certificate {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise LocalIOError(f"{cert_path} holds no PEM certificate; remove it and its key to make new ones") from None
    return cert_path, key_path, digest, made


def existing_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the self-signed certificate in *folder*, or None when there is none."""
    try:
        return fingerprint((folder / CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def file_fingerprint(path: str) -> str | None:
    """The fingerprint of the first certificate in the PEM file at *path* (a ``--tls-cert`` chain), else None."""
    try:
        text = Path(path).read_text("ascii", "replace")
    except OSError:
        return None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    try:
        return fingerprint(text[start : stop + len(end)].encode("ascii") + b"\n")
    except ValueError:
        return None


def use_self_signed() -> tuple[str, str]:
    """``--tls-self-signed``: the certificate and key, made on first use; prints the fingerprint.

    :raises LocalIOError: they cannot be written or read (74).
    """
    folder = state_dir(os.environ)
    cert, key, digest, made = ensure(folder)
    what = "made a new" if made else "using the"
    # Through the listening line's logger: shown at every verbosity, like that line, which follows.
    announce = logging.getLogger("codex_appserver.listening")
    announce.info("%s self-signed TLS certificate %s", what, cert)
    announce.info("TLS certificate SHA-256 fingerprint %s", display_fingerprint(digest))
    return str(cert), str(key)
