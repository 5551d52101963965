# Helpers for the access-control and hook tests: tern-passwd, MQTT 5 raw packets (CONNECT
# with authentication properties, AUTH, reason codes in PUBACK/SUBACK), a SCRAM-SHA-256
# client, and mosquitto_pub/sub runs that report how they ended.

import base64
import hashlib
import hmac
import os
import struct
import subprocess

import pytest

import helpers
from helpers import HOST, MOSQUITTO_PUB, MOSQUITTO_SUB, mqtt_string, packet

AUTH = 15
helpers.TYPE_NAMES.setdefault(AUTH, "AUTH")

skip_unless_tern = pytest.mark.skipif(helpers.is_mosquitto(),
                                      reason="Tern's access configuration has no Mosquitto "
                                             "equivalent in the test fixture")


def tern_passwd_bin():
    node = os.environ.get("TERN_BROKER_NODE")
    if not node:
        pytest.fail("set TERN_BROKER_NODE")
    return os.path.join(os.path.dirname(os.path.abspath(node)), "tern-passwd")


def make_passwd(path, users):
    """Creates a password file with tern-passwd: users = {name: password}."""
    for user, pw in users.items():
        r = subprocess.run([tern_passwd_bin(), "-I", "1000", "add", str(path), user],
                           input=pw + "\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    return str(path)


def mosq(tool, port, args, user=None, password=None, version="mqttv311", timeout=10):
    """Runs mosquitto_pub/sub; returns CompletedProcess (text)."""
    cmd = [MOSQUITTO_PUB if tool == "pub" else MOSQUITTO_SUB, "-h", HOST, "-p", str(port),
           "-V", version]
    if user is not None:
        cmd += ["-u", user]
    if password is not None:
        cmd += ["-P", password]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)


# ---- MQTT 5 raw packets ------------------------------------------------------------------

def varint(n):
    return helpers.encode_remaining_length(n)


def props(items):
    """items: list of (id, bytes already encoded)."""
    body = b"".join(bytes([i]) + v for i, v in items)
    return varint(len(body)) + body


def read_varint(b, pos):
    mult, val = 1, 0
    while True:
        byte = b[pos]
        pos += 1
        val += (byte & 0x7F) * mult
        if not byte & 0x80:
            return val, pos
        mult *= 128


def parse_props(b):
    """Returns {id: value} for string/binary properties 0x15, 0x16, 0x1F, else raw."""
    out = {}
    pos = 0
    while pos < len(b):
        pid = b[pos]
        pos += 1
        if pid in (0x15, 0x16, 0x1F, 0x12, 0x1A, 0x1C, 0x03, 0x08, 0x09):
            (n,) = struct.unpack("!H", b[pos:pos + 2])
            out[pid] = b[pos + 2:pos + 2 + n]
            pos += 2 + n
        elif pid in (0x24, 0x25, 0x28, 0x29, 0x2A, 0x01, 0x17, 0x19):
            out[pid] = b[pos]
            pos += 1
        elif pid in (0x21, 0x22, 0x23, 0x13):
            out[pid] = struct.unpack("!H", b[pos:pos + 2])[0]
            pos += 2
        elif pid in (0x11, 0x27, 0x02, 0x18):
            out[pid] = struct.unpack("!I", b[pos:pos + 4])[0]
            pos += 4
        elif pid == 0x0B:
            out[pid], pos = read_varint(b, pos)
        elif pid == 0x26:  # user property: two strings
            (n,) = struct.unpack("!H", b[pos:pos + 2])
            pos += 2 + n
            (n,) = struct.unpack("!H", b[pos:pos + 2])
            pos += 2 + n
        else:
            raise AssertionError(f"unknown property {pid:#x}")
    return out


def connect_v5(client_id, username=None, password=None, auth_method=None, auth_data=None,
               clean=True, keepalive=60):
    flags = 0x02 if clean else 0
    payload = mqtt_string(client_id)
    if username is not None:
        flags |= 0x80
        payload += mqtt_string(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    items = []
    if auth_method is not None:
        items.append((0x15, mqtt_string(auth_method)))
    if auth_data is not None:
        items.append((0x16, mqtt_string(auth_data)))
    body = mqtt_string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + props(items)
    return packet(helpers.CONNECT, 0, body + payload)


def auth_v5(reason, method, data):
    body = bytes([reason]) + props([(0x15, mqtt_string(method)), (0x16, mqtt_string(data))])
    return packet(AUTH, 0, body)


def publish_v5(topic, payload, qos, pid):
    body = mqtt_string(topic) + (struct.pack("!H", pid) if qos else b"") + props([])
    return packet(helpers.PUBLISH, qos << 1, body + payload)


def subscribe_v5(pid, filters):
    body = struct.pack("!H", pid) + props([])
    for f, q in filters:
        body += mqtt_string(f) + bytes([q])
    return packet(helpers.SUBSCRIBE, 0x02, body)


def connack_v5(p):
    """(reason code, properties) of a v5 CONNACK packet."""
    assert p.type == helpers.CONNACK, p
    rc = p.body[1]
    plen, pos = read_varint(p.body, 2) if len(p.body) > 2 else (0, 2)
    return rc, parse_props(p.body[pos:pos + plen])


def auth_fields(p):
    assert p.type == AUTH, p
    rc = p.body[0]
    plen, pos = read_varint(p.body, 1)
    return rc, parse_props(p.body[pos:pos + plen])


def puback_reason_v5(p):
    return p.body[2] if len(p.body) > 2 else 0


def suback_codes_v5(p):
    plen, pos = read_varint(p.body, 2)
    return list(p.body[pos + plen:])


def raw_v5(port, client_id, **kw):
    """A RawClient connected with MQTT 5; returns (client, connack reason, props)."""
    c = helpers.RawClient(port)
    c.send(connect_v5(client_id, **kw))
    rc, pr = connack_v5(c.expect(helpers.CONNACK))
    return c, rc, pr


# ---- SCRAM-SHA-256 client (RFC 5802 / 7677) ---------------------------------------------

class ScramClient:
    def __init__(self, user, password, nonce=None):
        self.user = user
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"

    def first(self):
        return "n,," + self.first_bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce)
        salt = base64.b64decode(attrs["s"])
        it = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, it)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}"
        sig = hmac.new(stored_key, self.auth_message.encode(), hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        return without_proof + ",p=" + base64.b64encode(proof).decode()

    def verify_server(self, server_final):
        want = hmac.new(self.server_key, self.auth_message.encode(), hashlib.sha256).digest()
        return server_final == "v=" + base64.b64encode(want).decode()
