"""noise_ref.py — an independent Python implementation of the private-swarm link (docs/protocol.md):
Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b written from the Noise spec (rev. 34) with the
`cryptography` package and hashlib, its payloads negotiating the transport AEAD (AES-256-GCM or
ChaCha20-Poly1305), then the record layer with REKEY every REKEY_RECORDS records. The tests speak
it to real nodes, so the C code (src/net/noise.c) is checked against the spec, not against itself.
"""
import hashlib
import hmac
import struct

try:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives import serialization
    HAVE = True
except ImportError:  # the tests skip with a message
    HAVE = False

NAME = b"Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
PROLOGUE = b"shardswarm private swarm v2"
HASHLEN = 64
CHACHAPOLY, AESGCM_ID = 0x01, 0x02    # the AEAD bits of the offer and the choice
REKEY_RECORDS = 1 << 22
MAX_NONCE = (1 << 64) - 1


def _hash(b):
    return hashlib.blake2b(b, digest_size=64).digest()


def _hmac(k, d):
    return hmac.new(k, d, hashlib.blake2b).digest()


def _hkdf(ck, ikm, n):
    tk = _hmac(ck, ikm)
    o1 = _hmac(tk, b"\x01")
    o2 = _hmac(tk, o1 + b"\x02")
    if n == 2:
        return o1, o2
    return o1, o2, _hmac(tk, o2 + b"\x03")


def _nonce(aead, n):
    # Noise §12.3 (ChaChaPoly): 4 zero bytes, n little-endian; §12.4 (AESGCM): big-endian
    return b"\x00" * 4 + struct.pack(">Q" if aead == AESGCM_ID else "<Q", n)


class Cipher:
    """A CipherState: the handshake's is ChaChaPoly; a transport one runs the chosen AEAD and
    rekeys (Noise §4.2's REKEY) before records REKEY_RECORDS, 2 * REKEY_RECORDS, ..."""

    def __init__(self, k, aead=CHACHAPOLY, rekey=False):
        self.key, self.aead, self.rekey, self.n = k, aead, rekey, 0

    def _aead(self):
        return (AESGCM if self.aead == AESGCM_ID else ChaCha20Poly1305)(self.key)

    def _next(self):
        assert self.n < MAX_NONCE, "nonce 2^64-1 is reserved"
        if self.rekey and self.n and self.n % REKEY_RECORDS == 0:
            self.key = self._aead().encrypt(_nonce(self.aead, MAX_NONCE), b"\x00" * 32, b"")[:32]
        return _nonce(self.aead, self.n)

    def enc(self, ad, pt):
        c = self._aead().encrypt(self._next(), pt, ad)
        self.n += 1
        return c

    def dec(self, ad, ct):
        p = self._aead().decrypt(self._next(), ct, ad)  # raises InvalidTag
        self.n += 1
        return p


def _pub(sk):
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Initiator:
    """The dialling side. msg1() -> bytes to send; read_msg2(49 bytes) -> transport ready, the
    responder's choice in self.aead. offer: the AEAD bits of payload 1."""

    def __init__(self, psk, offer=CHACHAPOLY | AESGCM_ID):
        self.offer = offer
        self.h = NAME + b"\x00" * (HASHLEN - len(NAME))
        self.ck = self.h
        self.k = None
        self.h = _hash(self.h + PROLOGUE)
        self.psk = psk
        self.e = X25519PrivateKey.generate()

    def _mix_hash(self, d):
        self.h = _hash(self.h + d)

    def _mix_key(self, ikm):
        self.ck, tk = _hkdf(self.ck, ikm, 2)
        self.k = Cipher(tk[:32])

    def msg1(self):
        self.ck, th, tk = _hkdf(self.ck, self.psk, 3)  # psk: MixKeyAndHash
        self._mix_hash(th)
        self.k = Cipher(tk[:32])
        e = _pub(self.e)
        self._mix_hash(e)  # e: MixHash, and MixKey in a PSK handshake
        self._mix_key(e)
        payload = self.k.enc(self.h, bytes([self.offer]))  # EncryptAndHash(offer)
        self._mix_hash(payload)
        body = e + payload
        return struct.pack(">H", len(body)) + body

    def read_msg2(self, m):
        re_ = m[:32]
        self._mix_hash(re_)
        self._mix_key(re_)
        self._mix_key(self.e.exchange(X25519PublicKey.from_public_bytes(re_)))  # ee
        choice = self.k.dec(self.h, m[32:49])  # DecryptAndHash(choice)
        self._mix_hash(m[32:49])
        self.aead = choice[0]
        if self.aead not in (CHACHAPOLY, AESGCM_ID) or not self.aead & self.offer:
            raise ValueError("the responder chose AEAD 0x%02x, not offered (0x%02x)" % (self.aead, self.offer))
        k1, k2 = _hkdf(self.ck, b"", 2)
        self.tx, self.rx = Cipher(k1[:32], self.aead, True), Cipher(k2[:32], self.aead, True)

    def seal(self, pt):
        out = b""
        for i in range(0, len(pt), 65519):
            c = self.tx.enc(b"", pt[i:i + 65519])
            out += struct.pack(">H", len(c)) + c
        return out


def read_exact(sock, n):
    b = b""
    while len(b) < n:
        c = sock.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def read_record(sock, nz):
    (n,) = struct.unpack(">H", read_exact(sock, 2))
    return nz.rx.dec(b"", read_exact(sock, n))
