"""zmtp.py - a minimal ZeroMQ (ZMTP 3.0, NULL mechanism) DEALER peer over an ipc:// socket,
enough for a test to speak to a service's plaintext local link the way a hostile local process
could: send any frame, read the frames that come back. No dependency beyond the standard
library; it is not a general ZeroMQ implementation (no CURVE, no multipart sends)."""
import socket
import struct


def _greeting():
    # signature, version 3.0, mechanism NULL, as-server 0, filler
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32


def _frame(body, flags=0):
    if len(body) > 255:
        return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def _ready(socket_type):
    prop = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return _frame(b"\x05READY" + prop, 0x04)


class Dealer:
    def __init__(self, endpoint, timeout=10):
        assert endpoint.startswith("ipc://"), endpoint
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(endpoint[len("ipc://"):])
        self.sock.sendall(_greeting())
        peer = self._read(64)
        if peer[0] != 0xFF or peer[9] != 0x7F or peer[10] < 3:
            raise AssertionError("not a ZMTP 3 peer: %r" % peer[:12])
        self.sock.sendall(_ready(b"DEALER"))
        flags, body = self._frame()
        if not flags & 0x04 or not body.startswith(b"\x05READY"):
            raise AssertionError("no READY from the peer: %r" % body[:40])

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("the peer closed the connection")
            out += chunk
        return out

    def _frame(self):
        flags = self._read(1)[0]
        size = struct.unpack(">Q", self._read(8))[0] if flags & 0x02 else self._read(1)[0]
        return flags, self._read(size)

    def send(self, body):
        """One single-frame message."""
        self.sock.sendall(_frame(body))

    def recv(self, timeout):
        """The frames of the next message, or None when none comes within timeout seconds."""
        self.sock.settimeout(timeout)
        parts = []
        try:
            while True:
                flags, body = self._frame()
                if flags & 0x04:
                    continue  # a command (PING...), not a message
                parts.append(body)
                if not flags & 0x01:
                    return parts
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


# ---- just enough msgpack to build envelopes by hand (proto/proto.h) ----

def mp(v):
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):  # raw bytes go as a msgpack str, valid UTF-8 or not
        if len(v) < 32:
            return bytes([0xA0 | len(v)]) + v
        return b"\xdb" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):  # a list of (key, value) pairs: a map in that order
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(mp(k) + mp(x) for k, x in v)
    raise TypeError(type(v))


def unmp_map(b):
    """Decodes a flat map of str -> (uint | str) as our envelopes are; enough for replies."""
    pos = 0

    def one():
        nonlocal pos
        c = b[pos]
        pos += 1
        if c < 0x80:
            return c
        if 0xA0 <= c <= 0xBF:
            n = c & 0x1F
        elif c in (0xD9, 0xDA, 0xDB):
            w = {0xD9: 1, 0xDA: 2, 0xDB: 4}[c]
            n = int.from_bytes(b[pos:pos + w], "big")
            pos += w
        elif c in (0xCC, 0xCD, 0xCE, 0xCF):
            w = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[c]
            pos += w
            return int.from_bytes(b[pos - w:pos], "big")
        else:
            raise ValueError("unexpected msgpack byte %#x" % c)
        pos += n
        return b[pos - n:pos].decode()

    c = b[pos]
    pos += 1
    if 0x80 <= c <= 0x8F:
        n = c & 0x0F
    elif c == 0xDE:
        n = int.from_bytes(b[pos:pos + 2], "big")
        pos += 2
    else:
        raise ValueError("not a map")
    out = {}
    for _ in range(n):
        k = one()
        out[k] = one()
    return out

