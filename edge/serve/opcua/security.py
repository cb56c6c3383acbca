"""Who may talk to the line's OPC UA server, and what they may do.

- **Endpoints**: SecurityPolicy None (configurable), Basic256Sha256 and
  Aes256Sha256RsaPss, each in Sign and SignAndEncrypt.
- **The server's certificate**: self-signed, generated into
  ``<pki>/own/`` on first start and reused afterwards (clients that trusted it
  keep trusting it); regenerated only when it expired or no longer names the
  server's application URI.
- **Client certificates**: validated against the trust list ``<pki>/trusted/``
  (the client's own certificate, or the CA that issued it). asyncua accepts any
  certificate by default; here an unknown one is refused with
  ``BadCertificateUntrusted`` and copied to ``<pki>/rejected/``, so an
  administrator can move it to ``trusted/``. The directory is re-read at every
  new session, so trusting a client needs no restart. This holds on every
  secured endpoint, whether or not the None endpoint is offered too.
- **Users**: username/password from the config, each with roles; anonymous
  sessions when enabled. Nobody may write a variable; methods check the
  caller's roles against ``[opcua.method_roles]``; anonymous never calls one.
- **The None endpoint** (``security_none``): no signature, no encryption; it
  offers what the login allows (anonymous: browse, read, subscribe; a user:
  their methods too, the password encrypted with the server's certificate), but
  anyone on the network can read or alter its traffic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.config import OpcUaServerConfig, OpcUaUser
from edge.errors import ConnectorError
from edge.serve.opcua.sessions import channel_security_mode
from edge.serve.opcua.uaids import ObjectIds, StatusCodes, numeric

log = logging.getLogger("edge.opcua_server.security")

CERTIFICATE_DAYS = 3650
CERT_FILE = "server-cert.der"
KEY_FILE = "server-key.pem"

_POLICIES: dict[tuple[str, str], ua.SecurityPolicyType] = {
    ("Basic256Sha256", "Sign"): ua.SecurityPolicyType.Basic256Sha256_Sign,
    ("Basic256Sha256", "SignAndEncrypt"): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ("Aes256Sha256RsaPss", "Sign"): ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ("Aes256Sha256RsaPss", "SignAndEncrypt"): (
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt
    ),
}


def security_policies(config: OpcUaServerConfig) -> list[ua.SecurityPolicyType]:
    chosen = [ua.SecurityPolicyType.NoSecurity] if config.security_none else []
    for policy in config.security_policies:
        for mode in config.security_modes:
            chosen.append(_POLICIES[(policy, mode)])
    return chosen


def endpoint_labels(config: OpcUaServerConfig) -> list[str]:
    """Human-readable endpoint security, for the banner."""
    labels = ["None"] if config.security_none else []
    labels += [f"{p}/{m}" for p in config.security_policies for m in config.security_modes]
    return labels


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True, slots=True)
class Pki:
    root: Path

    @property
    def own(self) -> Path:
        return self.root / "own"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def certificate(self) -> Path:
        return self.own / CERT_FILE

    @property
    def private_key(self) -> Path:
        return self.own / KEY_FILE

    def create(self) -> None:
        for directory in (self.own, self.trusted, self.rejected):
            directory.mkdir(parents=True, exist_ok=True)
        self.own.chmod(0o700)


def _host_names(endpoint_host: str | None) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(socket.gethostname()), x509.DNSName("localhost")]
    if endpoint_host and endpoint_host not in ("0.0.0.0", "::", "localhost"):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(endpoint_host)))
        except ValueError:
            names.append(x509.DNSName(endpoint_host))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return names


def _still_usable(cert: x509.Certificate, application_uri: str) -> bool:
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return application_uri in san.get_values_for_type(x509.UniformResourceIdentifier)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """The server's application instance certificate and its private key, loaded."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey


def _load_own_key(pki: Pki, cert: x509.Certificate) -> rsa.RSAPrivateKey:
    """The key beside the certificate.

    The key is one this server generated and keeps in its own state directory, so
    the RSA consistency check ``cryptography`` runs on every load of an untrusted key
    (~0.3 s of each start on this machine) is skipped; instead the key must match
    the certificate, which catches a replaced or mismatched file with a clear error.
    """
    try:
        key = serialization.load_pem_private_key(
            pki.private_key.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise ConnectorError(
            f"OPC UA server private key {pki.private_key} is unreadable: {exc}"
        ) from exc
    public = cert.public_key()
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
        raise ConnectorError(
            f"OPC UA server key {pki.private_key} and certificate {pki.certificate} "
            "must be RSA (the OPC UA security policies sign and encrypt with RSA)"
        )
    if key.public_key().public_numbers() != public.public_numbers():
        raise ConnectorError(
            f"OPC UA server private key {pki.private_key} does not belong to the "
            f"certificate {pki.certificate}"
        )
    return key


def ensure_certificate(
    pki: Pki, application_uri: str, common_name: str, endpoint_host: str | None
) -> ServerIdentity:
    """The server's certificate and key: generated on first start, reused afterwards."""
    pki.create()
    if pki.certificate.is_file() and pki.private_key.is_file():
        try:
            cert = x509.load_der_x509_certificate(pki.certificate.read_bytes())
        except ValueError as exc:
            raise ConnectorError(
                f"OPC UA server certificate {pki.certificate} is unreadable: {exc}"
            ) from exc
        if _still_usable(cert, application_uri):
            return ServerIdentity(cert, _load_own_key(pki, cert))
        log.warning(
            "OPC UA server certificate expired or names another application; generating a new one",
            extra={"path": str(pki.certificate)},
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge line controller"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(application_uri), *_host_names(endpoint_host)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(pki.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_bytes)
    pki.certificate.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    log.info(
        "OPC UA server certificate generated",
        extra={"path": str(pki.certificate), "thumbprint": thumbprint(cert)},
    )
    return ServerIdentity(cert, key)


def thumbprint(cert: x509.Certificate) -> str:
    # OPC UA names certificates by their SHA-1 thumbprint.
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --------------------------------------------------------------------------- trust list


def _load_certificates(directory: Path) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
            continue
        data = path.read_bytes()
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                found.extend(x509.load_pem_x509_certificates(data))
            else:
                found.append(x509.load_der_x509_certificate(data))
        except ValueError:
            log.warning("not a certificate in the trust list; ignored", extra={"path": str(path)})
    return found


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported keys alike
        return False
    return True


class TrustList:
    """asyncua's certificate validator hook, backed by the PKI's trusted/ directory.

    asyncua validates a client certificate at CreateSession; the edge's
    connection processor tells which channel that is (:func:`channel_security_mode`).
    On a secured channel (Sign, SignAndEncrypt) the certificate must be in the
    trust list, whatever else the server offers: an unknown one is refused with
    ``BadCertificateUntrusted`` and copied to ``rejected/``. On the None channel
    the certificate secures nothing (many clients send theirs there anyway), so
    it is not checked.
    """

    def __init__(self, pki: Pki) -> None:
        self._pki = pki
        self._refused: set[str] = set()

    def is_trusted(self, cert: x509.Certificate) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        for candidate in _load_certificates(self._pki.trusted):
            if candidate.public_bytes(serialization.Encoding.DER) == der:
                return True
            if _is_ca(candidate) and _issued_by(cert, candidate):
                return True
        return False

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if channel_security_mode() is ua.MessageSecurityMode.None_:
            return
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self._refuse(cert, app, "outside its validity period")
            raise ServiceError(StatusCodes.BadCertificateTimeInvalid)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if app.ApplicationUri not in uris:
            self._refuse(cert, app, "does not name the client's application URI")
            raise ServiceError(StatusCodes.BadCertificateUriInvalid)
        if not self.is_trusted(cert):
            self._refuse(cert, app, "not in the trust list")
            raise ServiceError(StatusCodes.BadCertificateUntrusted)
        self._refused.discard(thumbprint(cert))

    def _refuse(self, cert: x509.Certificate, app: ua.ApplicationDescription, why: str) -> None:
        print_ = thumbprint(cert)
        self._pki.rejected.mkdir(parents=True, exist_ok=True)
        target = self._pki.rejected / f"{print_}.der"
        if not target.exists():
            target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        if print_ not in self._refused:  # once per certificate, not per attempt
            self._refused.add(print_)
            log.warning(
                "OPC UA client certificate refused: %s",
                why,
                extra={
                    "application": app.ApplicationUri,
                    "thumbprint": print_,
                    "saved_to": str(target),
                },
            )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# --------------------------------------------------------------------------- users


ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called a method: a configured user's name and roles, or anonymous."""

    name: str
    roles: frozenset[str]

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS


class EdgeUserManager(UserManager):
    """Username/password from the config; anonymous when the config allows it."""

    def __init__(self, users: Sequence[OpcUaUser], *, anonymous: bool) -> None:
        self._users = {u.name: u for u in users}
        self._anonymous = anonymous

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.Anonymous, name=None) if self._anonymous else None
        user = self._users.get(username)
        given = (password or "").encode()
        expected = user.password.reveal().encode() if user is not None else b"\0"
        # Compare even for an unknown name, so timing does not tell which names exist.
        if not hmac.compare_digest(given, expected) or user is None:
            log.warning("OPC UA login refused", extra={"user": username})
            return None
        return User(role=UserRole.User, name=username)

    def caller(self, user: User | None) -> Caller:
        if user is None or user.name is None or user.role is not UserRole.User:
            return Caller(ANONYMOUS, frozenset())
        configured = self._users.get(user.name)
        return Caller(user.name, configured.roles if configured else frozenset())


# What no client may do here: the address space is the edge's, values come from the line.
_DENIED = frozenset(
    numeric(i)
    for i in (
        ObjectIds.AddNodesRequest_Encoding_DefaultBinary,
        ObjectIds.DeleteNodesRequest_Encoding_DefaultBinary,
        ObjectIds.AddReferencesRequest_Encoding_DefaultBinary,
        ObjectIds.DeleteReferencesRequest_Encoding_DefaultBinary,
        ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary,
        ObjectIds.RegisterServerRequest_Encoding_DefaultBinary,
        ObjectIds.RegisterServer2Request_Encoding_DefaultBinary,
    )
)


class EdgePermissions(SimpleRoleRuleset):
    """Every session may read, browse, subscribe, call and ask to write (each Write
    item is refused on its own, :class:`~edge.serve.opcua.sessions.EdgeSession`);
    no session may edit the address space or register servers."""

    def __init__(self) -> None:
        pass  # no role table: every session has the same service rights

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id not in _DENIED
