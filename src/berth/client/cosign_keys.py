"""cosign-compatible key pairs, and signing, on the side that holds the key.

Signing happens in the CLI, not in berthd: the private key and its
password never cross the API socket (or a TCP link to a remote daemon);
the daemon makes the payload, the CLI signs it, the daemon pushes the
signature beside the image. This is where cosign signs too.

A private key file is what `cosign generate-key-pair` writes and what
containers/image (skopeo, podman --sign-by-sigstore-private-key) reads:
PEM "ENCRYPTED SIGSTORE PRIVATE KEY" (cosign 1.x wrote "ENCRYPTED COSIGN
PRIVATE KEY"; both are read) around a JSON envelope
  {"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
   "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"}
whose plaintext is the PKCS#8 DER of the key; the public key is PEM
SubjectPublicKeyInfo. New keys are ECDSA P-256, as cosign's are; ECDSA
P-384/P-521, RSA and Ed25519 keys sign too. `cryptography` does scrypt and
the signatures, PyNaCl the secretbox (libsodium's XSalsa20-Poly1305, which
`cryptography` lacks). Both are imported only when a key is used: the
berth launcher starts python without site-packages, so they are added then."""
import base64
import json
import os

from berth.errors import BerthError, ConfigError, Conflict

PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
_MAX_KEY = 64 << 10


def _libs():
    try:
        import cryptography  # noqa: F401
        import nacl  # noqa: F401
    except ImportError:
        import site
        site.main()   # the launcher's -S left the venv's packages out
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
        import nacl.exceptions
        import nacl.secret
    except ImportError as e:
        raise BerthError(f"signing needs the python packages cryptography and pynacl ({e})",
                         hint="make build installs them into the venv") from None
    return {"hashes": hashes, "serialization": serialization, "ec": ec, "ed25519": ed25519,
            "padding": padding, "rsa": rsa, "Scrypt": Scrypt, "nacl": nacl}


def _kek(lib, password, salt, n, r, p):
    return lib["Scrypt"](salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def encrypt(der, password):
    """The envelope (bytes) of der under password, as cosign writes it."""
    lib = _libs()
    salt, nonce = os.urandom(32), os.urandom(24)
    box = lib["nacl"].secret.SecretBox(_kek(lib, password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return json.dumps({"kdf": {"name": "scrypt",
                               "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                               "salt": b64(salt)},
                       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
                       "ciphertext": b64(sealed)}).encode()


def decrypt(envelope, password, what):
    lib = _libs()
    try:
        doc = json.loads(envelope)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ConfigError(f"{what}: kdf {kdf['name']!r} / cipher {cipher['name']!r} "
                              "are not cosign's scrypt / nacl/secretbox")
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{what}: not a cosign key envelope ({e})") from None
    if not (1 < n <= 1 << 20 and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        raise ConfigError(f"{what}: scrypt parameters N={n} r={r} p={p} are out of range")
    box = lib["nacl"].secret.SecretBox(_kek(lib, password, salt, n, r, p))
    try:
        return box.decrypt(sealed, nonce)
    except (lib["nacl"].exceptions.CryptoError, ValueError):
        raise ConfigError(f"{what}: wrong password, or the key file is damaged") from None


def _pem(kind, body):
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(data, what):
    text = data.decode("ascii", "replace")
    for kind in PEM_TYPES:
        head, tail = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        if head in text and tail in text:
            body = text.split(head, 1)[1].split(tail, 1)[0]
            try:
                return base64.b64decode("".join(body.split()), validate=True)
            except ValueError:
                break
    raise ConfigError(f"{what}: not a cosign private key (PEM {PEM_TYPES[0]})",
                      hint="make one with `berth image keygen` or `cosign generate-key-pair`")


def generate(password):
    """(private key file bytes, public key file bytes) of a new P-256 pair."""
    lib = _libs()
    ser = lib["serialization"]
    key = lib["ec"].generate_private_key(lib["ec"].SECP256R1())
    der = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM,
                                           ser.PublicFormat.SubjectPublicKeyInfo)
    return _pem(PEM_TYPES[0], encrypt(der, password)), public


def write_pair(prefix, password):
    """prefix.key (0600) and prefix.pub, never over existing files."""
    private, public = generate(password)
    paths = (prefix + ".key", prefix + ".pub")
    for p in paths:
        if os.path.lexists(p):
            raise Conflict(f"key file {p} exists already",
                           hint="remove it or pick another prefix; keys are never overwritten")
    written = []
    try:
        for p, data, mode in ((paths[0], private, 0o600), (paths[1], public, 0o644)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            written.append(p)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(data)
    except OSError as e:
        for p in written:
            os.unlink(p)
        raise BerthError(f"cannot write key file {e.filename or prefix}", errno=e.errno) from None
    return paths


def load_private(path, password):
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY)
    except OSError as e:
        raise ConfigError(f"cannot read private key {path}", errno=e.errno) from None
    der = decrypt(_unpem(data, f"private key {path}"), password, f"private key {path}")
    lib = _libs()
    try:
        return lib["serialization"].load_der_private_key(der, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"private key {path}: not a PKCS#8 key ({e})") from None


def sign(key, payload):
    """The signature cosign makes over payload: ECDSA (ASN.1 DER) or RSA
    PKCS#1 v1.5 over SHA-256, or Ed25519 over the bytes themselves."""
    lib = _libs()
    if isinstance(key, lib["ec"].EllipticCurvePrivateKey):
        return key.sign(payload, lib["ec"].ECDSA(lib["hashes"].SHA256()))
    if isinstance(key, lib["rsa"].RSAPrivateKey):
        return key.sign(payload, lib["padding"].PKCS1v15(), lib["hashes"].SHA256())
    if isinstance(key, lib["ed25519"].Ed25519PrivateKey):
        return key.sign(payload)
    raise ConfigError(f"private key of type {type(key).__name__} cannot make sigstore signatures")
