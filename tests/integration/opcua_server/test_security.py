"""Security: SignAndEncrypt with a trusted client certificate (made here), refusal of
an untrusted one, username/password; and what survives a restart: the server's
certificate and every NodeId, even with the machines listed in another order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from asyncua import Client, Node, ua
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.security_policies import (
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.errors import EdgeError
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server

from .conftest import NAMESPACE, PASSWORDS, USERS, endpoint, free_port, make_config

pytestmark = pytest.mark.integration

SECURE_ONLY = (
    "security_none = false\nanonymous = false\n"
    'security_policies = ["Basic256Sha256", "Aes256Sha256RsaPss"]\n' + USERS
)
CLIENT_URI = "urn:test:scada-client"


def client_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A client's self-signed application certificate, as an OPC UA client makes one."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key,
        name,
        {},
        [x509.UniformResourceIdentifier(CLIENT_URI)],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path = directory / f"{name}.der"
    key_path = directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def secure_client(
    port: int, cert: Path, key: Path, policy: type, user: str = "lead"
) -> Client:
    c = Client(endpoint(port), timeout=5)
    c.application_uri = CLIENT_URI
    c.set_user(user)
    c.set_password(PASSWORDS[user])
    await c.set_security(policy, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt)
    return c


async def test_sign_and_encrypt_with_a_trusted_certificate_and_refusal_of_others(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = make_config(tmp_path, port, opcua=SECURE_ONLY)
    pki = config.storage.state_dir / "opcua-pki"
    trusted_cert, trusted_key = client_certificate(tmp_path, "trusted")
    stranger_cert, stranger_key = client_certificate(tmp_path, "stranger")
    async with LineService(config, components=[opcua_server.component]):
        # trust the client the way an administrator does: copy its certificate in
        shutil.copy(trusted_cert, pki / "trusted" / "scada.der")
        for policy in (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss):
            c = await secure_client(port, trusted_cert, trusted_key, policy)
            async with c:
                idx = await c.get_namespace_index(NAMESPACE)
                name = await c.get_node(ua.NodeId("L1.M1.Name", idx)).read_value()
                assert name == "Filler"
        stranger = await secure_client(
            port, stranger_cert, stranger_key, SecurityPolicyBasic256Sha256
        )
        with pytest.raises(ua.UaStatusCodeError) as info:
            await stranger.connect()
        assert info.value.code == ua.StatusCodes.BadCertificateUntrusted
        stranger.disconnect_socket()
        # the refused certificate waits in rejected/ for someone to trust it
        rejected = list((pki / "rejected").iterdir())
        assert [p.read_bytes() for p in rejected] == [stranger_cert.read_bytes()]
        # a trusted certificate with a wrong password is still refused
        wrong = await secure_client(port, trusted_cert, trusted_key, SecurityPolicyBasic256Sha256)
        wrong.set_password("not-it")
        with pytest.raises(ua.UaStatusCodeError) as info:
            await wrong.connect()
        assert info.value.code == ua.StatusCodes.BadUserAccessDenied
        wrong.disconnect_socket()


async def test_no_unsecured_endpoint_and_no_anonymous_when_configured_off(tmp_path: Path) -> None:
    port = free_port()
    config = make_config(tmp_path, port, opcua=SECURE_ONLY)
    async with LineService(config, components=[opcua_server.component]):
        c = Client(endpoint(port), timeout=5)
        endpoints = await c.connect_and_get_server_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode.name) for e in endpoints}
        assert offered == {
            ("Basic256Sha256", "Sign"),
            ("Basic256Sha256", "SignAndEncrypt"),
            ("Aes256_Sha256_RsaPss", "Sign"),  # the policy URI's spelling
            ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
        }
        for e in endpoints:
            tokens = {t.TokenType for t in e.UserIdentityTokens}
            assert ua.UserTokenType.Anonymous not in tokens
            assert ua.UserTokenType.UserName in tokens


async def _node_ids(node: Node, seen: set[str]) -> set[str]:
    for child in await node.get_children():
        text = child.nodeid.to_string()
        if child.nodeid.NamespaceIndex != 0 and text not in seen:
            seen.add(text)
            await _node_ids(child, seen)
    return seen


async def _snapshot(port: int) -> tuple[int, set[str]]:
    async with Client(endpoint(port), timeout=5) as c:
        idx = await c.get_namespace_index(NAMESPACE)
        tree = await _node_ids(c.get_node(ua.NodeId("L1", idx)), set())
        types = await _node_ids(c.get_node(ua.NodeId("Types.MachineType", idx)), set())
        return idx, tree | types


async def test_node_ids_and_the_certificate_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    first = make_config(tmp_path, port)
    async with LineService(first, components=[opcua_server.component]):
        idx_before, before = await _snapshot(port)
    pki = first.storage.state_dir / "opcua-pki"
    cert_before = (pki / "own" / "server-cert.der").read_bytes()
    # the same line, machines listed in the other order
    second = make_config(tmp_path, port, machines_reversed=True)
    assert [m.id for m in second.machines] == ["M2", "M1"]
    async with LineService(second, components=[opcua_server.component]):
        idx_after, after = await _snapshot(port)
    assert idx_after == idx_before
    assert f"ns={idx_before};s=L1.M1.OEE.Availability" in before
    assert f"ns={idx_before};s=L1.M2.ProcessValues.speed" in before
    assert len(before) > 150
    assert after == before
    # generated on first start, reused afterwards: clients that trusted it still do
    assert (pki / "own" / "server-cert.der").read_bytes() == cert_before


async def test_a_restart_signs_with_the_stored_key_and_refuses_a_foreign_one(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = make_config(tmp_path, port, opcua=SECURE_ONLY)
    pki = config.storage.state_dir / "opcua-pki"
    client_cert, client_key = client_certificate(tmp_path, "scada")
    async with LineService(config, components=[opcua_server.component]):
        shutil.copy(client_cert, pki / "trusted" / "scada.der")
    # second start: certificate and key come from the state directory
    async with LineService(config, components=[opcua_server.component]):
        c = await secure_client(port, client_cert, client_key, SecurityPolicyBasic256Sha256)
        async with c:
            idx = await c.get_namespace_index(NAMESPACE)
            assert await c.get_node(ua.NodeId("L1.M1.Name", idx)).read_value() == "Filler"
    # a key that does not belong to the certificate is named, not used
    own_key = pki / "own" / "server-key.pem"
    own_key.write_bytes(client_key.read_bytes())
    with pytest.raises(EdgeError, match=r"server-key\.pem does not belong to the certificate"):
        async with LineService(config, components=[opcua_server.component]):
            pass
