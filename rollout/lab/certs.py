"""Makes the lab's CA, serving and client certificates, service-account keys and kubeconfig."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
API_SERVER_NAMES = (
    "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
API_SERVER_IPS = ("127.0.0.1", "10.96.0.1")


@dataclass(frozen=True)
class PKI:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def etcd_cert(self) -> Path:
        return self.directory / "etcd.crt"

    @property
    def etcd_key(self) -> Path:
        return self.directory / "etcd.key"

    @property
    def etcd_client_cert(self) -> Path:
        return self.directory / "apiserver-etcd-client.crt"

    @property
    def etcd_client_key(self) -> Path:
        return self.directory / "apiserver-etcd-client.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"


def write_private(path: Path, data: bytes) -> None:
    """Writes a secret readable by its owner only from its first byte: created 0600, and a
    file already there is narrowed to 0600 before anything is written into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def private_directory(path: Path) -> Path:
    """A directory only its owner can list or enter (0700), whatever the umask."""
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    write_private(path, key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _sign(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    is_ca: bool = False,
    usages: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def create_pki(directory: Path) -> PKI:
    """Creates every key and certificate that is missing, signed by the lab's one CA; what
    exists is kept (a lab made before etcd had certificates gets them, from its own CA)."""
    pki = PKI(directory)
    private_directory(directory)
    ca_name = _name("canary-rollout-lab-ca")
    if pki.ca_key.exists() and pki.ca_cert.exists():
        ca_key = _load_key(pki.ca_key)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _sign(subject=ca_name, public_key=ca_key.public_key(), issuer=ca_name,
                   issuer_key=ca_key, is_ca=True)
        _write_key(pki.ca_key, ca_key)
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cert: Path, key_path: Path, subject: x509.Name,
             usages: list[x509.ObjectIdentifier], sans: list[x509.GeneralName] | None = None
             ) -> None:
        if cert.exists() and key_path.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        signed = _sign(subject=subject, public_key=key.public_key(), issuer=ca_name,
                       issuer_key=ca_key, usages=usages, sans=sans)
        _write_key(key_path, key)
        cert.write_bytes(signed.public_bytes(serialization.Encoding.PEM))

    loopback: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    api_sans: list[x509.GeneralName] = [x509.DNSName(n) for n in API_SERVER_NAMES]
    api_sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in API_SERVER_IPS]
    leaf(pki.serving_cert, pki.serving_key, _name("kube-apiserver"),
         [ExtendedKeyUsageOID.SERVER_AUTH], api_sans)
    leaf(pki.admin_cert, pki.admin_key, _name("lab-admin", "system:masters"),
         [ExtendedKeyUsageOID.CLIENT_AUTH])
    # etcd answers only clients with a certificate of this CA (the API server, and the lab's
    # own health check with the admin certificate); its peer port uses the same pair.
    leaf(pki.etcd_cert, pki.etcd_key, _name("etcd"),
         [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], loopback)
    leaf(pki.etcd_client_cert, pki.etcd_client_key, _name("kube-apiserver-etcd-client"),
         [ExtendedKeyUsageOID.CLIENT_AUTH])
    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_key, sa_key)
        pki.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki


def write_kubeconfig(path: Path, *, pki: PKI, server: str, context: str = "canary-lab") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "lab-admin", "user": {
            "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "lab-admin"}}],
        "current-context": context,
    }
    write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path
