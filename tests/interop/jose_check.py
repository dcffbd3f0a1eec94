#!/usr/bin/env python3
"""Checks tppguard's tokens with an independent JOSE implementation (jwcrypto, PyPI).

Driven by tests/integration/interop.rs; install the dependencies with
`python3 -m pip install -r tests/interop/requirements.txt` (.ci/run does).

Subcommands (exit 0 on success, 1 when a token is rejected, 2 on a usage error):

  verify-attestation TOKEN_FILE CHAIN_PEM
      Verifies the compact JWS with the public key of the chain's first (leaf) certificate,
      checks `typ` is tppguard-attestation+jwt, and prints the payload JSON.
  sign NODE_KEY_PEM CHAIN_PEM CLAIMS_JSON OUT
      Signs the claim set with the node key (EdDSA for Ed25519, ES256 / ES384 for P-256 /
      P-384), header {alg, typ, x5c: the chain's certificates, leaf first}, and writes the
      compact serialization to OUT.
  verify-ear TOKEN_FILE PUBKEY_PEM [TYP]
      Verifies a compact JWS (the verifier's EAR) with a PEM public key (SPKI or a
      certificate), checks `typ` when TYP is given, and prints the payload JSON.

Only the three algorithms tppguard accepts are allowed; jwcrypto decides everything else.
"""

import base64
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwcrypto import jwk, jws

ATTESTATION_TYP = "tppguard-attestation+jwt"
ALLOWED_ALGS = ["EdDSA", "ES256", "ES384"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def chain_certs(chain_pem):
    certs = x509.load_pem_x509_certificates(read(chain_pem))
    if not certs:
        raise ValueError(f"{chain_pem}: no certificate")
    return certs


def jwk_of_public_key(public_key):
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return jwk.JWK.from_pem(pem)


# RFC 5958 OneAsymmetricKey v2 of an Ed25519 key, as ring writes it: version 1, the 32-byte
# seed, then [1] the 32-byte public key. pyca/cryptography (50.x) reads PKCS#8 v1 only and
# fails on the trailing public key ("extra data"), so this one fixed layout is read by hand.
ED25519_V2_PREFIX = bytes.fromhex("3051020101300506032b657004220420")
ED25519_V2_PUBLIC = bytes.fromhex("812100")


def load_private_key(pem):
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        body = b"".join(
            line for line in pem.splitlines() if line and not line.startswith(b"-----")
        )
        der = base64.b64decode(body)
        seed, rest = der[16:48], der[48:]
        if not (
            der.startswith(ED25519_V2_PREFIX)
            and len(der) == 83
            and rest.startswith(ED25519_V2_PUBLIC)
        ):
            raise
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        derived = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if derived != rest[3:]:
            raise ValueError("the PKCS#8 v2 public key is not the seed's public key")
        return key


def alg_of(public_key):
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return "ES256"
        if isinstance(public_key.curve, ec.SECP384R1):
            return "ES384"
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


def verify(token, key, typ):
    """Verifies a compact JWS with `key`; returns the payload bytes. Raises on rejection."""
    obj = jws.JWS()
    obj.allowed_algs = ALLOWED_ALGS
    obj.deserialize(token.strip())
    obj.verify(key)
    header = obj.jose_header
    if typ is not None and header.get("typ") != typ:
        raise ValueError(f"typ is {header.get('typ')!r}, not {typ!r}")
    return obj.payload


def print_payload(payload):
    # Parse to prove it is JSON; print it unchanged otherwise.
    json.loads(payload)
    sys.stdout.write(payload.decode("utf-8") + "\n")


def verify_attestation(token_file, chain_pem):
    leaf = chain_certs(chain_pem)[0]
    key = jwk_of_public_key(leaf.public_key())
    print_payload(verify(read(token_file).decode("ascii"), key, ATTESTATION_TYP))


def sign(node_key_pem, chain_pem, claims_json, out):
    private = load_private_key(read(node_key_pem))
    alg = alg_of(private.public_key())
    key = jwk.JWK.from_pyca(private)
    certs = chain_certs(chain_pem)
    x5c = [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
        for c in certs
    ]
    # Python writes the payload itself (compact JSON), not tppguard's bytes.
    payload = json.dumps(json.loads(read(claims_json)), separators=(",", ":"))
    token = jws.JWS(payload.encode("utf-8"))
    token.allowed_algs = ALLOWED_ALGS
    header = {"alg": alg, "typ": ATTESTATION_TYP, "x5c": x5c}
    token.add_signature(key, alg=None, protected=json.dumps(header))
    with open(out, "w", encoding="ascii") as f:
        f.write(token.serialize(compact=True))


def verify_ear(token_file, pubkey_pem, typ=None):
    data = read(pubkey_pem)
    if b"BEGIN CERTIFICATE" in data:
        public_key = x509.load_pem_x509_certificates(data)[0].public_key()
    else:
        public_key = serialization.load_pem_public_key(data)
    key = jwk_of_public_key(public_key)
    print_payload(verify(read(token_file).decode("ascii"), key, typ))


COMMANDS = {
    "verify-attestation": (verify_attestation, 2, 2),
    "sign": (sign, 4, 4),
    "verify-ear": (verify_ear, 2, 3),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    func, least, most = COMMANDS[argv[1]]
    args = argv[2:]
    if not least <= len(args) <= most:
        sys.stderr.write(__doc__)
        return 2
    try:
        func(*args)
    except Exception as e:  # jwcrypto raises several types; any is a rejection here
        sys.stderr.write(f"jose_check {argv[1]}: rejected: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
