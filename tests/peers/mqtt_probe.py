#!/usr/bin/env python3
"""MQTT conformance probes with paho-mqtt 2.x, an unmodified off-the-shelf client.

tests/tests/mqtt_conformance.rs runs one probe per test against the runtime's plain
listener and asserts on the JSON it prints: what the client saw, never a verdict. Usage:

    mqtt_probe.py PROBE PORT VERSION      (VERSION: 311 or 5)

Every wait is bounded (WAIT seconds); a probe that sees nothing reports empty lists.
"""

import json
import queue
import socket
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
WAIT = 5.0


class Dev:
    """One device connection: its events on queues, the network loop on paho's thread."""

    def __init__(self, name, version, manual_ack=False, clean=True):
        """`clean`: MQTT 3.1.1's clean session flag, or MQTT 5's Clean Start."""
        self.v5 = version == "5"
        self.clean = clean
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=name,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else clean,
            manual_ack=manual_ack,
        )
        self.msgs = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.put((f.session_present, rc.value))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put([r.value for r in rcs])
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc.value)

    def connect(self, port, expiry=None, receive_max=None):
        """Connects and waits for the CONNACK: (session present, reason code)."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            if receive_max is not None:
                props.ReceiveMaximum = receive_max
            self.c.connect(HOST, port, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, topic, qos=1, no_local=False, retain_handling=0, rap=False, sub_id=None):
        """Subscribes and waits for the SUBACK's codes (granted QoS, or a failure code)."""
        if self.v5:
            opts = SubscribeOptions(
                qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=retain_handling
            )
            props = None
            if sub_id is not None:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = sub_id
            self.c.subscribe(topic, options=opts, properties=props)
        else:
            self.c.subscribe(topic, qos=qos)
        return self.subacks.get(timeout=WAIT)

    def publish(self, topic, payload, qos=1, props=None, retain=False):
        info = self.c.publish(topic, payload, qos=qos, properties=props, retain=retain)
        if qos > 0:
            info.wait_for_publish(timeout=WAIT)

    def received(self, n, wait=WAIT):
        """Up to `n` messages, waiting at most `wait` seconds in all."""
        out = []
        deadline = time.monotonic() + wait
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.msgs.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def raw_v5_connect(port, client_id):
    """A bare MQTT 5 CONNECT (Clean Start, keep-alive 30 s) over a socket of our own: paho
    2.1 drops the reason code of a server's DISCONNECT whose remaining length is 2 (reason
    and an empty property length), so a probe that must see that code reads the bytes."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT" + bytes([5, 0x02, 0, 30, 0]) + len(cid).to_bytes(2, "big") + cid
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.sendall(bytes([0x10, len(var)]) + var)
    kind, _ = read_packet(sock)
    assert kind == 0x20, "CONNACK expected, got %#x" % kind
    return sock


def read_packet(sock):
    """(first byte, body) of the next packet, or (None, b"") once the connection ends."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exact(1)
    if head is None:
        return None, b""
    length, shift = 0, 0
    while True:
        b = exact(1)
        if b is None:
            return None, b""
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if b[0] < 0x80:
            break
    return head[0], exact(length) or b""


def brief(m):
    return {
        "topic": m.topic,
        "payload": m.payload.decode(errors="replace"),
        "qos": m.qos,
        "dup": bool(m.dup),
        "retain": bool(m.retain),
    }


def probe_properties(port, version):
    """MQTT-3.3.2-x: a server forwards a PUBLISH's properties to subscribers unaltered."""
    sub, pub = Dev("dev-a", version), Dev("dev-b", version)
    sub.connect(port)
    sub.subscribe("t/#")
    pub.connect(port)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
    props.ResponseTopic = "reply/dev-b"
    props.CorrelationData = b"\x01\x02req-7"
    props.ContentType = "text/plain"
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 60
    pub.publish("t/1", b"hello", props=props)
    got = sub.received(1)
    out = []
    for m in got:
        p = m.properties
        out.append({
            "user": [list(kv) for kv in getattr(p, "UserProperty", [])],
            "response_topic": getattr(p, "ResponseTopic", None),
            "correlation_data": getattr(p, "CorrelationData", b"").hex(),
            "content_type": getattr(p, "ContentType", None),
            "payload_format": getattr(p, "PayloadFormatIndicator", None),
            "expiry": getattr(p, "MessageExpiryInterval", None),
        })
    sub.close()
    pub.close()
    return {"received": out}


def probe_clean_start_expiry(port, version):
    """MQTT-3.1.2-4/-23 (v5): Clean Start 1 with a Session Expiry Interval starts a new
    session that is kept after the disconnect; messages for it queue while it is away."""
    a = Dev("dev-a", version, clean=True)
    first = a.connect(port, expiry=300)
    a.subscribe("t/#")
    a.close()
    pub = Dev("dev-b", version)
    pub.connect(port)
    for i in range(3):
        pub.publish("t/%d" % i, b"offline-%d" % i)
    pub.close()
    a2 = Dev("dev-a", version, clean=False)
    again = a2.connect(port, expiry=300)
    got = [brief(m) for m in a2.received(3)]
    a2.close()
    return {"first_connack": first, "second_connack": again, "received": got}


def probe_takeover(port, version):
    """MQTT-3.1.4-3: a second connection with the same client id ends the first (v5: a
    DISCONNECT with reason 0x8E Session taken over)."""
    raw = None
    if version == "5":
        raw = raw_v5_connect(port, "dev-a")
    else:
        first = Dev("dev-a", version)
        first.connect(port)
    second = Dev("dev-a", version)
    second.connect(port)
    reason = None
    if raw is not None:
        kind, body = read_packet(raw)
        disconnected = kind is None or kind == 0xE0
        if kind == 0xE0:
            reason = body[0] if body else 0
        raw.close()
    else:
        try:
            first.disconnects.get(timeout=WAIT)
            disconnected = True
        except queue.Empty:
            disconnected = False
        first.c.loop_stop()
    # The second connection works: it receives what dev-b sends.
    second.subscribe("t/#")
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/x", b"after takeover")
    got = [brief(m) for m in second.received(1)]
    second.close()
    pub.close()
    return {"first_disconnected": disconnected, "reason": reason, "second_received": got}


def probe_dollar(port, version):
    """MQTT-4.7.2-1: `#` does not match `$aws/...`; the shadow's answer reaches only a filter
    that names `$aws` itself. A plain topic still reaches `#`."""
    wild, exact, pub = Dev("dev-a", version), Dev("dev-c", version), Dev("dev-b", version)
    wild.connect(port)
    wild.subscribe("#")
    exact.connect(port)
    exact.subscribe("$aws/things/dev-a/shadow/#")
    pub.connect(port)
    pub.publish("$aws/things/dev-a/shadow/get", b"")
    pub.publish("plain/x", b"plain")
    got_wild = [brief(m) for m in wild.received(2, wait=3)]
    got_exact = [brief(m) for m in exact.received(1)]
    for d in (wild, exact, pub):
        d.close()
    return {"wildcard": got_wild, "exact": got_exact}


def probe_parent_level(port, version):
    """MQTT-4.7.1-2: the filter `t/#` matches `t` itself."""
    sub, pub = Dev("dev-a", version), Dev("dev-b", version)
    sub.connect(port)
    codes = sub.subscribe("t/#")
    pub.connect(port)
    pub.publish("t", b"parent")
    pub.publish("t/x", b"child")
    got = [brief(m) for m in sub.received(2)]
    sub.close()
    pub.close()
    return {"suback": codes, "received": got}


def probe_qos_min(port, version):
    """MQTT 3.1.1 §3.8.4 / 5 §3.8.4: delivered QoS = min(published QoS, granted QoS)."""
    sub, pub = Dev("dev-a", version), Dev("dev-b", version)
    sub.connect(port)
    sub.subscribe("t/#", qos=1)
    pub.connect(port)
    pub.publish("t/0", b"zero", qos=0)
    pub.publish("t/1", b"one", qos=1)
    got = [brief(m) for m in sub.received(2)]
    sub.close()
    pub.close()
    return {"received": got}


def probe_no_local(port, version):
    """MQTT-3.8.3-3 (v5): with No Local the server does not send a client its own publishes."""
    a, b = Dev("dev-a", version), Dev("dev-b", version)
    a.connect(port)
    a.subscribe("t/#", no_local=True)
    b.connect(port)
    a.publish("t/own", b"own")
    b.publish("t/other", b"other")
    got = [brief(m) for m in a.received(2, wait=3)]
    # The same subscription without No Local hears its own publish (the control).
    a.subscribe("t/#", no_local=False)
    a.publish("t/own2", b"own2")
    got_after = [brief(m) for m in a.received(1)]
    a.close()
    b.close()
    return {"with_no_local": got, "without": got_after}


def probe_shared(port, version):
    """MQTT 5 §4.8.2 (shared subscriptions, accepted from 3.1.1 clients too): members of
    `$share/g/s/#` get each message once between them; a member not routed by the group gets
    nothing; a malformed `$share` filter is refused."""
    a, c, pub = Dev("dev-a", version), Dev("dev-c", version), Dev("dev-b", version)
    a.connect(port)
    c.connect(port)
    granted = [a.subscribe("$share/g/s/#"), c.subscribe("$share/g/s/#")]
    malformed = a.subscribe("$share/g")
    pub.connect(port)
    for i in range(10):
        pub.publish("s/%d" % i, b"%d" % i)
    got_a = [m.payload.decode() for m in a.received(10, wait=3)]
    got_c = [m.payload.decode() for m in c.received(10, wait=1)]
    for d in (a, c, pub):
        d.close()
    return {"granted": granted, "malformed": malformed, "a": got_a, "c": got_c}


def probe_dup(port, version):
    """MQTT-3.3.1-1: a QoS 1 message sent again because it was not acknowledged has DUP 1."""
    # MQTT 3.1.1: a persistent session is clean session 0; MQTT 5: a session expiry.
    expiry = 300 if version == "5" else None
    a = Dev("dev-a", version, manual_ack=True, clean=version == "5")
    a.connect(port, expiry=expiry)
    a.subscribe("t/#")
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/1", b"first")
    first = [brief(m) for m in a.received(1)]
    # Gone without acknowledging it.
    a.c.disconnect()
    a.c.loop_stop()
    time.sleep(0.3)
    a2 = Dev("dev-a", version, clean=False)
    a2.connect(port, expiry=expiry)
    again = [brief(m) for m in a2.received(1)]
    a2.close()
    pub.close()
    return {"first": first, "again": again}


def probe_receive_max(port, version):
    """MQTT-3.3.4-9 (v5): the server sends no more unacknowledged QoS 1 PUBLISHes than the
    client's Receive Maximum, before the first acknowledgement and after each."""
    a = Dev("dev-a", version, manual_ack=True)
    a.connect(port, receive_max=2)
    a.subscribe("t/#")
    pub = Dev("dev-b", version)
    pub.connect(port)
    for i in range(10):
        pub.publish("t/%d" % i, b"%d" % i)
    # Each round: what arrives while nothing is acknowledged, then acknowledge it all.
    windows, total = [], 0
    deadline = time.monotonic() + WAIT * 3
    while total < 10 and time.monotonic() < deadline:
        held = a.received(10, wait=1)
        windows.append(len(held))
        total += len(held)
        for m in held:
            a.c.ack(m.mid, m.qos)
    a.close()
    pub.close()
    return {"windows": windows, "total": total}


def probe_unsupported_level(port, version):
    """MQTT-3.1.2-2: a CONNECT for a protocol level the server does not support gets CONNACK
    0x01 (unacceptable protocol level) and the connection closes. Sent as raw bytes: MQTT 3.1
    (`MQIsdp`, level 3) and `MQTT` levels 3 and 6; `version` is not used."""
    out = {}
    for name, level in ((b"MQIsdp", 3), (b"MQTT", 3), (b"MQTT", 6)):
        var = len(name).to_bytes(2, "big") + name + bytes([level, 0x02, 0, 30]) + b"\x00\x05dev-a"
        sock = socket.create_connection((HOST, port), timeout=WAIT)
        sock.sendall(bytes([0x10, len(var)]) + var)
        kind, body = read_packet(sock)
        after, _ = read_packet(sock)
        sock.close()
        out["%s/%d" % (name.decode(), level)] = {
            "connack": None if kind is None else [kind] + list(body),
            "closed_after": after is None,
        }
    return out


def probe_keep_alive_0(port, version):
    """MQTT-3.2.2-21 (v5): a server that will not let a connection idle forever (Keep Alive
    0) tells the client the Server Keep Alive it must use instead."""
    props = Properties(PacketTypes.CONNECT)
    seen = queue.Queue()
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id="dev-a",
        protocol=mqtt.MQTTv5,
    )
    c.on_connect = lambda cl, u, f, rc, p: seen.put(getattr(p, "ServerKeepAlive", None))
    c.connect(HOST, port, keepalive=0, clean_start=True, properties=props)
    c.loop_start()
    server_keep_alive = seen.get(timeout=WAIT)
    c.disconnect()
    c.loop_stop()
    return {"server_keep_alive": server_keep_alive}


def probe_wildcard_publish(port, version):
    """MQTT-3.3.2-2: a PUBLISH topic must not contain wildcards. Sent as raw bytes (clients
    refuse to send it): what comes back, and whether the connection stays open."""
    cid = b"dev-b"
    if version == "5":
        sock = raw_v5_connect(port, "dev-b")
    else:
        var = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 30]) + len(cid).to_bytes(2, "big") + cid
        sock = socket.create_connection((HOST, port), timeout=WAIT)
        sock.sendall(bytes([0x10, len(var)]) + var)
        read_packet(sock)
    topic = b"t/+"
    body = len(topic).to_bytes(2, "big") + topic + b"\x00\x07" + (b"\x00" if version == "5" else b"") + b"x"
    sock.sendall(bytes([0x32, len(body)]) + body)
    kind, reply = read_packet(sock)
    after, _ = (None, b"") if kind is None else read_packet(sock)
    sock.close()
    return {"reply": None if kind is None else [kind] + list(reply), "closed": after is None}


def probe_expiry(port, version):
    """MQTT-3.3.2-5 (v5): a message whose Message Expiry Interval passed while it waited for an
    offline session is not delivered; one still valid is, with the interval left."""
    a = Dev("dev-a", version, clean=True)
    a.connect(port, expiry=300)
    a.subscribe("t/#")
    a.close()
    pub = Dev("dev-b", version)
    pub.connect(port)
    for payload, secs in ((b"short", 1), (b"long", 60)):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = secs
        pub.publish("t/e", payload, props=props)
    pub.close()
    time.sleep(2.5)
    a2 = Dev("dev-a", version, clean=False)
    a2.connect(port, expiry=300)
    got = a2.received(2, wait=3)
    a2.close()
    return {"received": [dict(brief(m), expiry=getattr(m.properties, "MessageExpiryInterval", None)) for m in got]}


def probe_retained(port, version):
    """MQTT-3.3.1-5/-6/-10: the server keeps the last retained message per topic and sends it
    with RETAIN 1 to a new subscription; a live delivery has RETAIN 0 (MQTT-3.3.1-9/-12); an
    empty retained payload clears the topic. Evergreen's rule on top: a retained message goes
    only to a device the group routes its (source, topic) to at that moment."""
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/r", b"keep", retain=True)
    pub.publish("u/x", b"for c", retain=True)
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#")
    on_subscribe = [brief(m) for m in a.received(1)]
    pub.publish("t/r", b"live", retain=True)
    live = [brief(m) for m in a.received(1)]
    c = Dev("dev-c", version)
    c.connect(port)
    c.subscribe("#")
    for_c = [brief(m) for m in c.received(2, wait=2)]
    pub.publish("t/r", b"", retain=True)
    a.received(1)  # the empty one, live
    a.close()
    a2 = Dev("dev-a", version)
    a2.connect(port)
    a2.subscribe("t/#")
    after_clear = [brief(m) for m in a2.received(1, wait=2)]
    for d in (a2, c, pub):
        d.close()
    return {"on_subscribe": on_subscribe, "live": live, "for_c": for_c, "after_clear": after_clear}


def probe_retain_handling(port, version):
    """MQTT-3.3.1-9/-10/-11 (v5 Retain Handling 2, 1, 0) and MQTT-3.3.1-12/-13 (Retain As
    Published)."""
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/r", b"kept", retain=True)
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#", retain_handling=2)
    never = [brief(m) for m in a.received(1, wait=1.5)]
    a.subscribe("t/#", retain_handling=1)
    existing = [brief(m) for m in a.received(1, wait=1.5)]
    a.c.unsubscribe("t/#")
    time.sleep(0.3)
    a.subscribe("t/#", retain_handling=1, rap=True)
    new = [brief(m) for m in a.received(1)]
    pub.publish("t/r", b"live", retain=True)
    live_rap = [brief(m) for m in a.received(1)]
    a.close()
    pub.close()
    return {"never": never, "existing": existing, "new": new, "live_rap": live_rap}


def probe_retain_set(port, version):
    """First half of a restart test: a retained message is published (and acknowledged)."""
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/r", b"durable", retain=True)
    pub.close()
    return {"published": True}


def probe_retain_get(port, version):
    """Second half: what a new subscription gets."""
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#")
    got = [brief(m) for m in a.received(1, wait=3)]
    a.close()
    return {"received": got}


def willing(version, payload, topic="t/will", delay=None, expiry=None, clean=True):
    """dev-b connected with a will (QoS 1), its network loop run by hand so the probe can end
    the connection abruptly (no DISCONNECT): the client object and its socket."""
    v5 = version == "5"
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id="dev-b",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else clean,
    )
    will_props = None
    if v5 and delay is not None:
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = delay
    c.will_set(topic, payload, qos=1, properties=will_props)
    acked = []
    c.on_connect = lambda cl, u, f, rc, p: acked.append(rc.value)
    if v5:
        props = Properties(PacketTypes.CONNECT)
        if expiry is not None:
            props.SessionExpiryInterval = expiry
        c.connect(HOST, port_of[0], keepalive=30, clean_start=clean, properties=props)
    else:
        c.connect(HOST, port_of[0], keepalive=30)
    deadline = time.monotonic() + WAIT
    while not acked and time.monotonic() < deadline:
        c.loop(timeout=0.1)
    return c


port_of = [0]


def abrupt(c):
    """Ends the connection without a DISCONNECT (as a network failure would)."""
    sock = c.socket()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def disconnect(c, **kw):
    """Sends DISCONNECT, lets paho write it, then closes the socket if paho has not, so the
    connection surely ends (a probe that only asked to disconnect could leave it open and see
    no will for the wrong reason)."""
    c.disconnect(**kw)
    for _ in range(5):
        c.loop(timeout=0.1)
    sock = c.socket()
    if sock is not None:
        sock.close()


def probe_will(port, version):
    """MQTT-3.1.2-8/-10: the will is published when the connection ends without a DISCONNECT,
    withdrawn by a DISCONNECT (v5: unless its reason is 0x04), and (Evergreen) authorized like a
    publish from the device when it fires: a will to a topic the group does not route from it
    reaches nobody."""
    port_of[0] = port
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#")
    out = {}
    c = willing(version, b"gone-abrupt")
    abrupt(c)
    out["abrupt"] = [brief(m) for m in a.received(1)]
    c = willing(version, b"gone-graceful")
    disconnect(c)
    out["graceful"] = [brief(m) for m in a.received(1, wait=1.5)]
    c = willing(version, b"not-routed", topic="x/nope")
    abrupt(c)
    out["not_routed"] = [brief(m) for m in a.received(1, wait=1.5)]
    if version == "5":
        from paho.mqtt.reasoncodes import ReasonCode
        c = willing(version, b"gone-0x04")
        disconnect(c, reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        out["disconnect_with_will"] = [brief(m) for m in a.received(1)]
    a.close()
    return out


def probe_will_delay(port, version):
    """MQTT-3.1.3-9 (v5): a will waits its Will Delay Interval; a new connection of the same
    session within it cancels the will; without one the will comes after the delay."""
    port_of[0] = port
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#")
    c = willing(version, b"cancelled", delay=2, expiry=60)
    abrupt(c)
    time.sleep(0.5)
    back = Dev("dev-b", version, clean=False)
    back.connect(port, expiry=60)
    cancelled = [brief(m) for m in a.received(1, wait=3)]
    back.close()
    c = willing(version, b"delayed", delay=1, expiry=60)
    start = time.monotonic()
    abrupt(c)
    delayed = [brief(m) for m in a.received(1, wait=4)]
    waited = time.monotonic() - start
    a.close()
    return {"cancelled": cancelled, "delayed": delayed, "waited": waited}


def raw_connect(port, version, client_id, clean=True, expiry=0):
    """A bare CONNECT (keep-alive 30 s; v5 with a Session Expiry Interval) over a socket of our
    own, for probes that must send what clients do not (a resent QoS 2 PUBLISH)."""
    cid = client_id.encode()
    flags = 0x02 if clean else 0
    if version == "5":
        props = bytes([0x11]) + expiry.to_bytes(4, "big") if expiry else b""
        var = b"\x00\x04MQTT" + bytes([5, flags, 0, 30, len(props)]) + props
    else:
        var = b"\x00\x04MQTT" + bytes([4, flags, 0, 30])
    var += len(cid).to_bytes(2, "big") + cid
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.sendall(bytes([0x10, len(var)]) + var)
    kind, _ = read_packet(sock)
    assert kind == 0x20, "CONNACK expected, got %r" % kind
    return sock


def raw_publish_qos2(sock, version, topic, payload, packet_id, dup):
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big")
    if version == "5":
        body += b"\x00"
    body += payload
    sock.sendall(bytes([0x34 | (0x08 if dup else 0), len(body)]) + body)


def probe_qos2(port, version):
    """QoS 2 both ways: a subscription is granted QoS 2 and a QoS 2 publish reaches it at QoS 2
    (PUBREC/PUBREL/PUBCOMP on each side); a QoS 1 publish arrives at QoS 1 (the lower)."""
    a = Dev("dev-a", version)
    a.connect(port)
    granted = a.subscribe("t/#", qos=2)
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/2", b"two", qos=2)
    pub.publish("t/1", b"one", qos=1)
    got = [brief(m) for m in a.received(2)]
    a.close()
    pub.close()
    return {"granted": granted, "received": got}


def probe_qos2_resent(port, version):
    """MQTT-4.3.3-9/-10: a QoS 2 PUBLISH sent again after a reconnect (DUP, same packet id,
    before its PUBREL) is acknowledged again but not delivered twice; after the PUBREL the
    server answers PUBCOMP."""
    a = Dev("dev-a", version)
    a.connect(port)
    a.subscribe("t/#", qos=2)
    sock = raw_connect(port, version, "dev-b", clean=True, expiry=300)
    if version != "5":
        sock.close()
        sock = raw_connect(port, version, "dev-b", clean=False)
    raw_publish_qos2(sock, version, b"t/once", b"once", 7, dup=False)
    first = read_packet(sock)[0]
    sock.close()
    time.sleep(0.3)
    sock = raw_connect(port, version, "dev-b", clean=False, expiry=300)
    raw_publish_qos2(sock, version, b"t/once", b"once", 7, dup=True)
    again = read_packet(sock)[0]
    rel = bytes([0x62, 2, 0, 7])
    sock.sendall(rel)
    comp = read_packet(sock)[0]
    sock.close()
    got = [brief(m) for m in a.received(2, wait=2)]
    a.close()
    return {"pubrec": [first, again], "pubcomp": comp, "received": got}


def probe_sub_ids(port, version):
    """MQTT-3.3.4-3/-4 (v5): a message carries the Subscription Identifiers of the
    subscriptions it matches."""
    a, pub = Dev("dev-a", version), Dev("dev-b", version)
    a.connect(port)
    a.subscribe("t/#", sub_id=7)
    a.subscribe("t/x", sub_id=9)
    pub.connect(port)
    pub.publish("t/x", b"both")
    pub.publish("t/y", b"one")
    got = a.received(2)
    out = [
        {"payload": m.payload.decode(), "ids": sorted(getattr(m.properties, "SubscriptionIdentifier", []))}
        for m in got
    ]
    a.close()
    pub.close()
    return {"received": out}


def probe_topic_alias(port, version):
    """MQTT-3.3.2-x (v5 Topic Alias, client to server): a PUBLISH that names its topic only by
    an alias set earlier on the connection is routed to that topic."""
    a, pub = Dev("dev-a", version), Dev("dev-b", version)
    a.connect(port)
    a.subscribe("t/#")
    pub.connect(port)
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 3
    pub.publish("t/aliased", b"named", props=first)
    again = Properties(PacketTypes.PUBLISH)
    again.TopicAlias = 3
    pub.publish("", b"by alias", props=again)
    got = [brief(m) for m in a.received(2)]
    a.close()
    pub.close()
    return {"received": got}


def probe_props_offline_set(port, version):
    """First half of a restart test: dev-a's persistent session queues a message with
    properties while dev-a is away."""
    a = Dev("dev-a", version, clean=True)
    a.connect(port, expiry=300)
    a.subscribe("t/#")
    a.close()
    pub = Dev("dev-b", version)
    pub.connect(port)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    props.ResponseTopic = "reply/x"
    pub.publish("t/q", b"queued", props=props)
    pub.close()
    return {"published": True}


def probe_props_offline_get(port, version):
    """Second half: dev-a returns to its session."""
    a = Dev("dev-a", version, clean=False)
    a.connect(port, expiry=300)
    got = a.received(1)
    a.close()
    return {"received": [
        {
            "payload": m.payload.decode(),
            "user": [list(kv) for kv in getattr(m.properties, "UserProperty", [])],
            "response_topic": getattr(m.properties, "ResponseTopic", None),
        }
        for m in got
    ]}


def probe_disconnect_expiry(port, version):
    """MQTT-3.14.2 (v5 DISCONNECT Session Expiry Interval): it replaces the CONNECT's. A
    session opened with 1 s and closed with 5 s is still there after 3 s (with what queued);
    one opened with 60 s and closed with 0 ends with its connection."""
    def close_with(dev, secs):
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = secs
        dev.c.disconnect(properties=props)
        dev.c.loop_stop()
    a = Dev("dev-a", version, clean=True)
    a.connect(port, expiry=1)
    a.subscribe("t/#")
    close_with(a, 5)
    time.sleep(3)
    pub = Dev("dev-b", version)
    pub.connect(port)
    pub.publish("t/x", b"kept")
    a2 = Dev("dev-a", version, clean=False)
    longer = a2.connect(port, expiry=60)
    got = [brief(m) for m in a2.received(1)]
    close_with(a2, 0)
    time.sleep(0.5)
    a3 = Dev("dev-a", version, clean=False)
    ended = a3.connect(port, expiry=60)
    a3.close()
    pub.close()
    return {"longer": longer, "received": got, "ended": ended}


PROBES = {name[len("probe_"):]: f for name, f in globals().items() if name.startswith("probe_")}

if __name__ == "__main__":
    name, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(PROBES[name](port, version)))
