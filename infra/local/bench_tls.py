"""The test bench's TLS: a bench CA and a certificate for 127.0.0.1 it issued.

The bench serves S3 over HTTPS only (moto_bench.py, memory_front.py), as S3
is served to the product; the host scripts trust the bench CA through
CURL_CA_BUNDLE=<folder>/ca.pem, as a host trusts AWS's.
"""

import datetime
import ipaddress
import os
import shutil
import tempfile


def tls_files(folder: str) -> tuple:
    """The bench CA (ca.pem) and a certificate for 127.0.0.1 it issued
    (cert.pem, key.pem), made once in `folder`: benches started at once
    share them. Returns the paths of cert.pem and key.pem."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    if os.path.exists(os.path.join(folder, "ca.pem")):
        return cert, key

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec2-forensics test bench CA")])

    def issued(subject, public_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = issued(ca_name, ca_key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                       crl_sign=True, encipher_only=False, decipher_only=False), True),
    ])
    leaf = issued(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                  leaf_key.public_key(), [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ])
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent)
    pem = serialization.Encoding.PEM
    for name, data in (
        ("cert.pem", leaf.public_bytes(pem)),
        ("key.pem", leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())),
        ("ca.pem", ca.public_bytes(pem)),
    ):
        with open(os.path.join(staging, name), "wb") as f:
            f.write(data)
    # The folder appears whole, in one rename; a bench that loses the race
    # uses the winner's.
    try:
        os.rename(staging, folder)
    except OSError:
        pass
    shutil.rmtree(staging, ignore_errors=True)
    return cert, key
