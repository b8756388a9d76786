#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/seeds/<target>/) from real inputs:
the example groups of examples/, the packaged config.json, the reference messages of the
connectors (shared/reference/connectors.md), real MQTT 3.1.1 and 5 packets and real IPC frames.

Run it from anywhere (python3 tests/fuzz/seeds/make-seeds.py); it rewrites the seed
directories. Binary seeds (frames, packets) are built here byte by byte so a reviewer can
read what each one is; the input format of each target is in tests/fuzz/README.md."""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(HERE, target), ignore_errors=True)


# --- ipc_frame: bincode 2 (standard config: varints) bodies behind a u32 LE length ---------
def varint(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + struct.pack("<H", n)
    if n < 1 << 32:
        return b"\xfc" + struct.pack("<I", n)
    return b"\xfd" + struct.pack("<Q", n)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return varint(len(b)) + b


def frame(body):
    return struct.pack("<I", len(body)) + body


def ipc_frame():
    t = "ipc_frame"
    reset(t)
    # The first byte picks the maximum (16 << (b % 17)); 16 = 1 MiB, the default.
    mib = b"\x10"
    # FromChild: Hello{1}, Ready, Publish{topic,payload}, Log{Info,msg}, Done,
    # GetCredentials{7}, Shadow{1,"sensor",Update,payload}, GetSecret{2,"MySecret",None}.
    write(t, "child-handshake", mib + frame(varint(0) + varint(1)) + frame(varint(1)))
    write(t, "child-publish", mib + frame(varint(2) + s("sensors/1/temp") + s(b'{"temp":21.5}')))
    write(t, "child-log", mib + frame(varint(3) + varint(2) + s("connector started")))
    write(t, "child-done-credentials", mib + frame(varint(6)) + frame(varint(7) + varint(7)))
    write(t, "child-shadow", mib + frame(varint(5) + varint(1) + s("sensor") + varint(1)
                                         + s(b'{"state":{"reported":{"temp":21}}}')))
    write(t, "child-secret", mib + frame(varint(4) + varint(2) + s("MySecret") + b"\x00"))
    # ToChild: Hello{1}, Deliver{topic,payload,source}, Shutdown{5000}, Refused{topic,reason}.
    write(t, "supervisor-deliver", mib + frame(varint(0) + varint(1))
          + frame(varint(2) + s("display/1/cmd") + s(b"on") + s("arn:aws:iot:us-east-1:123456789012:thing/sensor-1")))
    write(t, "supervisor-shutdown", mib + frame(varint(3) + varint(5000)))
    write(t, "supervisor-refused", mib + frame(varint(6) + s("a/#") + s("wildcard in a publish topic")))
    # Small maximum (64 B) with a frame above it.
    write(t, "too-large", b"\x02" + frame(varint(2) + s("t") + s(b"x" * 100)))


# --- text inputs -------------------------------------------------------------------------
def group_file():
    t = "group_file"
    reset(t)
    for rel in ["examples/full-group.json", "examples/function-to-function.json",
                "examples/modbus-temperature/group.json", "examples/temp-monitor/group.json"]:
        p = os.path.join(REPO, rel)
        with open(p, "rb") as f:
            write(t, rel.replace("examples/", "").replace("/", "-"), f.read())


def import_input():
    """The inputs of tests/tests/import.rs: CloudFormation templates (YAML and JSON) and saved
    CLI outputs (one output, and combined arrays and objects of them)."""
    t = "import_input"
    reset(t)
    src = os.path.join(REPO, "tests", "import")
    for name in ["twilio-tutorial.yaml", "twilio-tutorial-s3.json", "relay-inline.json",
                 "combined-complete.json", "unknown-connector.json"]:
        with open(os.path.join(src, name), "rb") as f:
            write(t, name, f.read())
    with open(os.path.join(src, "twilio-cli", "functions.json"), "rb") as f:
        write(t, "cli-functions.json", f.read())


def core_config():
    t = "core_config"
    reset(t)
    for rel in ["packaging/config.json", "packaging/etc/config.json"]:
        with open(os.path.join(REPO, rel), "rb") as f:
            write(t, rel.replace("/", "-"), f.read())
    write(t, "empty-object", "{}")
    write(t, "greengrass-v1", json.dumps({
        "coreThing": {"caPath": "root.ca.pem", "certPath": "core.crt", "keyPath": "core.key",
                      "thingArn": "arn:aws:iot:eu-west-1:123456789012:thing/gw-1",
                      "iotHost": "abc-ats.iot.eu-west-1.amazonaws.com", "ggHost": "greengrass-ats.iot.eu-west-1.amazonaws.com",
                      "keepAlive": 600},
        "runtime": {"cgroup": {"useSystemd": "yes"}, "allowFunctionsToRunAsRoot": "no"},
        "managedRespawn": False, "crypto": {"caPath": "file:///greengrass/certs/root.ca.pem"}}, indent=2))


# Reference messages (shared/reference/connectors.md), by connector.
MODBUS_REQUEST = {"request": {"operation": "ReadCoilsRequest", "device": 1, "address": 1, "count": 1}, "id": "TestRequest"}
MODBUS_OPS = [
    {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 0, "count": 2},
    {"operation": "ReadInputRegistersRequest", "device": 3, "address": 10, "count": 1},
    {"operation": "ReadDiscreteInputsRequest", "device": 1, "address": 1, "count": 9},
    {"operation": "WriteSingleCoilRequest", "device": 1, "address": 1, "value": 1},
    {"operation": "WriteSingleRegisterRequest", "device": 1, "address": 1, "value": 1},
    {"operation": "WriteMultipleCoilsRequest", "device": 1, "address": 1, "values": [1, 0, 0, 1]},
    {"operation": "WriteMultipleRegistersRequest", "device": 1, "address": 1, "values": [20, 30, 10]},
    {"operation": "MaskWriteRegisterRequest", "device": 1, "address": 1, "and_mask": 175, "or_mask": 1},
    {"operation": "ReadWriteMultipleRegistersRequest", "device": 1, "read_address": 1, "read_count": 2,
     "write_address": 3, "write_registers": [20, 30, 40]},
    {"operation": "WriteSingleCoilRequest", "device": 0, "address": 1, "value": 0},
]


def modbus_rtu():
    t = "modbus_rtu"
    reset(t)
    req = json.dumps(MODBUS_REQUEST)
    write(t, "read-coils-silent", req)
    # Flags 1: the target frames the PDU with the device address and a correct CRC.
    write(t, "read-coils-answered", req.encode() + b"\x00\x01" + bytes([0x01, 0x01, 0x01]))
    write(t, "read-coils-exception", req.encode() + b"\x00\x01" + bytes([0x81, 0x02]))
    # Flags 0: raw bytes on the line (a frame with a wrong CRC).
    write(t, "read-coils-bad-crc", req.encode() + b"\x00\x00" + bytes([0x01, 0x01, 0x01, 0x01, 0x00, 0x00]))
    answers = [bytes([0x03, 0x04, 0, 20, 0, 30]), bytes([0x04, 0x02, 0, 7]), bytes([0x02, 0x02, 0x01, 0x01]),
               bytes([0x05, 0, 1, 0xFF, 0]), bytes([0x06, 0, 1, 0, 1]), bytes([0x0F, 0, 1, 0, 4]),
               bytes([0x10, 0, 1, 0, 3]), bytes([0x16, 0, 1, 0, 175, 0, 1]), bytes([0x17, 0x04, 0, 10, 0, 20]), b""]
    for i, (op, answer) in enumerate(zip(MODBUS_OPS, answers)):
        body = json.dumps({"request": op, "id": f"req{i}"}).encode()
        write(t, f"{op['operation']}-{i}", body + (b"\x00\x01" + answer if answer else b""))
    write(t, "invalid-address-type", json.dumps({"request": {"operation": "ReadCoilsRequest", "device": 1,
                                                             "address": "1", "count": 1}, "id": "TestRequest"}))


def serial_stream():
    t = "serial_stream"
    reset(t)
    write(t, "read-request", '{"readLength": "30", "type": "ascii", "id": "abc123"}')
    write(t, "write-ascii", '{"data": "random serial data", "type": "ascii", "id": "abc123"}')
    write(t, "write-hex", '{"data": "cmFuZG9tIHNlcmlhbCBkYXRh", "type": "hex", "id": "abc123"}')
    write(t, "read-hex-on-topic", b"serial/core/read/dev/ttyS0\x00" + b'{"readLength": "4", "type": "hex", "id": 7}')
    write(t, "other-core", b"serial/other/write/dev/ttyS0\x00" + b'{"data": "x", "id": "abc123"}')


def connector_json():
    t = "connector_json"
    reset(t)
    w = lambda name, pick, body: write(t, name, pick + (body.encode() if isinstance(body, str) else body))
    w("twilio-txt", b"t", '{"request": {"recipient": {"name": "Darla", "phone_number": "+12345000000", "message": "Hello from the edge"}, "from_number": "+19999999999", "retries": 3}, "id": "request123"}')
    w("twilio-call", b"t", '{"request": {"recipient": {"name": "Darla", "phone_number": "+12345000000", "voice_message_location": "https://some-public-TwiML"}, "from_number": "+19999999999", "retries": 3}, "id": "request123"}')
    w("device-defender-accepted", b"d", '{"thingName": "core", "reportId": 1529963534, "status": "ACCEPTED"}')
    w("device-defender-rejected", b"d", '{"thingName": "core", "reportId": 1529963534, "status": "REJECTED", "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed JSON"}}')
    w("firehose-json", b"f", '{"request": {"delivery_stream_arn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/stream2-name", "data": "Data to send to the delivery stream."}, "id": "request123"}')
    w("firehose-binary", b"b", b"kinesisfirehose/message/binary/request123\x00\x00\x01\x02binary data")
    w("cloudwatch", b"c", '{"request": {"namespace": "Greengrass", "metricData": {"metricName": "latency", "dimensions": [{"name": "hostname", "value": "test_hostname"}], "timestamp": 1539027324, "value": 123.0, "unit": "Seconds"}}, "id": "r1"}')
    w("sns-topic", b"s", '{"request": {"subject": "Message subject", "message": "Message data", "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:topic2-name"}, "id": "request123"}')
    w("sns-structure", b"s", '{"request": {"subject": "Message subject", "message": "{ \\"default\\": \\"Message data\\" }", "message_structure": "json"}, "id": "request123"}')
    w("iot-analytics-put", b"i", b'iotanalytics/channels/my_channel/messages/put\x00{"request": {"message": "{\\"temp\\":23.33}"}, "id": "req123"}')
    w("iot-analytics-binary", b"i", b"iotanalytics/channels/my_channel/messages/binary/put\x00\x00\x01\x02")
    w("iot-analytics-user-topic", b"i", b'sensors/1/temp\x00{"temp": 23.33}')
    w("splunk", b"u", '{"request": {"event": "some event", "fields": {"severity": "INFO", "category": ["value1", "value2"]}}, "id": "request123"}')
    w("servicenow", b"n", '{"request": {"subject": "ef43c6d40a0a0b5700c77f9bf387afe3", "metric_name": "u_count", "table": "u_greengrass_app", "value": 1.0, "timestamp": "2018-10-14T10:30:00"}}')
    w("servicenow-credentials", b"k", '{"username": "admin", "password": "not-a-real-password"}')
    w("modbus-tcp-request", b"m", '{"request": {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 0, "count": 2, "source": "SourceName1"}, "id": "r1"}')
    w("modbus-tcp-capability", b"w", '{"sources": [{"type": "ModBusTCPSource", "name": "SourceName1", "measurementDataStreamPrefix": "SourceName1_Prefix", "destination": {"type": "StreamManager", "streamName": "SiteWise_Stream_1", "streamBufferSize": 8}, "endpoint": {"ipAddress": "127.0.0.1", "port": 8081, "unitId": 1}, "minimumInterRequestDuration": 200, "propertyGroups": [{"name": "GroupName", "tagPathDefinitions": [{"type": "ModBusTCPAddress", "tag": "TT-001", "address": "30001", "size": 2, "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"}], "scanMode": {"type": "POLL", "rate": 100}}]}]}')
    w("modbus-tcp-registers", b"r", b"float\x00byteWordSwap\x00double\x00\x41\x20\x00\x00")
    w("message-log", b"l", "Hello from the edge \xe2\x9c\x93")
    w("parameters", b"p", json.dumps({"SerialPort": "/dev/ttyS0", "BaudRate": "9600", "Timeout": "5",
                                       "ModbusSerialPort": "/dev/ttyS1", "DefaultFromPhoneNumber": "+19999999999",
                                       "MemorySize": "200000", "PublishInterval": "10", "SampleIntervalSeconds": "300",
                                       "DefaultSNSArn": "arn:aws:sns:us-east-1:123456789012:topic", "IsolationMode": "NoContainer",
                                       "CapabilityConfiguration": "{\"sources\": []}"}))


def lambda_http():
    t = "lambda_http"
    reset(t)
    # Shape byte 0x3f: 64-byte reads, default limits.
    ctx = "eyJjdXN0b20iOnsic3ViamVjdCI6InNlbnNvcnMvMS90ZW1wIn19"  # {"custom":{"subject":"sensors/1/temp"}}
    body = b'{"temp": 21.5}'
    write(t, "router-publish", b"\x3f" + (
        "POST /2016-11-01/functions/arn%3Aaws%3Alambda%3A%3A%3Afunction%3AGGRouter/invocations HTTP/1.1\r\n"
        "Host: localhost:8000\r\nAccept-Encoding: identity\r\nX-Amz-Invocation-Type: Event\r\n"
        f"X-Amz-Client-Context: {ctx}\r\nAuthorization: 0123456789abcdef\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    write(t, "work-get", b"\x07" + (
        "GET /2016-11-01/functions/arn:aws:lambda:us-east-1:123456789012:function:f:1/work HTTP/1.1\r\n"
        "Host: localhost:8000\r\nAuthorization: 0123456789abcdef\r\nConnection: close\r\n\r\n").encode())
    logs = b'{"logGroupName": "/aws/greengrass/Lambda/f", "logEvents": [{"message": "hello", "timestamp": 1}]}'
    write(t, "logs-small-limits", b"\x40" + (
        "POST /2016-11-01/cloudwatch/logs/ HTTP/1.1\r\nAuthorization: t\r\n"
        f"Content-Length: {len(logs)}\r\n\r\n").encode() + logs)
    write(t, "chunked", b"\x00POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def shadow_document():
    t = "shadow_document"
    reset(t)
    RS = b"\x1e"
    get, update, delete = 0, 1, 2
    sensor, cloud, named = 0x10, 0x08, 0x04
    accepted, rejected, documents = 0x20, 0x40, 0x60
    later = 0x80
    msg = lambda c, body: bytes([c]) + (body.encode() if isinstance(body, str) else body)
    write(t, "update-get-delete", RS.join([
        msg(update, '{"state": {"desired": {"color": "red", "power": {"on": true}}}, "clientToken": "t1"}'),
        msg(update, '{"state": {"reported": {"color": "green"}}, "version": 1}'),
        msg(get, '{"clientToken": "t2"}'),
        msg(update, '{"state": {"desired": {"color": null, "power": null}}}'),
        msg(delete, '{"version": 3}'),
        msg(later | update, '{"state": {"desired": {"color": "blue"}}}'),
    ]))
    write(t, "version-conflict", RS.join([
        msg(named | update, '{"state": {"reported": {"temp": 21.5}}}'),
        msg(named | update, '{"state": {"reported": {"temp": 22}}, "version": 7}'),
        msg(named | get, ""),
    ]))
    write(t, "synced-cloud", RS.join([
        msg(sensor | update, '{"state": {"desired": {"fan": "on"}, "reported": {"fan": "off"}}}'),
        msg(sensor | cloud | update | documents, '{"previous": null, "current": {"state": {"desired": {"fan": "auto"}}, "version": 9}, "timestamp": 1700000000}'),
        msg(sensor | cloud | get | accepted, '{"state": {"desired": {"fan": "on"}, "reported": {"fan": "on"}}, "version": 10}'),
        msg(sensor | cloud | get | rejected, '{"code": 404, "message": "No shadow exists with name: sensor"}'),
        msg(sensor | cloud | delete | accepted, '{"version": 11, "timestamp": 1700000001}'),
    ]))
    write(t, "raw-topic", b"\xff$aws/things/sensor/shadow/name/a:b_c-d/update\n"
          + b'{"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}}')


# --- MQTT ----------------------------------------------------------------------------------
def remaining(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def pkt(first, body):
    return bytes([first]) + remaining(len(body)) + body


def mstr(text):
    b = text.encode()
    return struct.pack(">H", len(b)) + b


def connect3(client_id, clean=True, will=False, keep_alive=60):
    flags = (0x02 if clean else 0) | (0x04 if will else 0)
    payload = mstr(client_id) + (mstr("status/lost") + mstr("bye") if will else b"")
    return pkt(0x10, mstr("MQTT") + bytes([4, flags]) + struct.pack(">H", keep_alive) + payload)


def connect5(client_id, clean=True, expiry=0, keep_alive=60):
    props = (b"\x11" + struct.pack(">I", expiry)) if expiry else b""
    return pkt(0x10, mstr("MQTT") + bytes([5, 0x02 if clean else 0]) + struct.pack(">H", keep_alive)
               + remaining(len(props)) + props + mstr(client_id))


def subscribe(pid, filters, v5=False):
    body = struct.pack(">H", pid) + (b"\x00" if v5 else b"")
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return pkt(0x82, body)


def unsubscribe(pid, filters, v5=False):
    return pkt(0xA2, struct.pack(">H", pid) + (b"\x00" if v5 else b"") + b"".join(mstr(f) for f in filters))


def publish(topic, payload, qos=0, pid=1, v5=False):
    body = mstr(topic) + (struct.pack(">H", pid) if qos else b"") + (b"\x00" if v5 else b"") + payload
    return pkt(0x30 | (qos << 1), body)


DISCONNECT = b"\xe0\x00"
PING = b"\xc0\x00"


def mqtt_packets():
    t = "mqtt_packets"
    reset(t)
    # Flags: bit 0 MQTT 5, bits 1-2 listener (0 plain, 1 TLS with matching CN, 2 other CN, 3 no cert).
    write(t, "v3-sensor-session", b"\x00" + connect3("sensor-1") + subscribe(1, [("display/ack", 1), ("sensor-1/#", 2), ("#", 0)])
          + publish("sensors/1/temp", b'{"temp":21.5}') + publish("sensors/2/temp", b"22", qos=1, pid=7)
          + publish("sensors/+/temp", b"wildcard") + PING + unsubscribe(2, ["display/ack"]) + DISCONNECT)
    write(t, "v3-tls-display-persistent", b"\x02" + connect3("display-1", clean=False) + subscribe(1, [("display/+/cmd", 1)])
          + publish("display/ack", b"ok", qos=1) + DISCONNECT + connect3("display-1", clean=False) + DISCONNECT)
    write(t, "v3-refused", b"\x04" + connect3("sensor-1") + publish("sensors/1/temp", b"x"))
    write(t, "v3-will", b"\x00" + connect3("sensor-1", will=True))
    write(t, "v3-unknown", b"\x00" + connect3("ghost"))
    write(t, "v5-sensor", b"\x01" + connect5("sensor-1", clean=False, expiry=3600, keep_alive=0)
          + subscribe(1, [("sensor-1/cmd", 1), ("$aws/things/sensor-1/shadow/#", 0)], v5=True)
          + publish("sensors/1/temp", b'{"temp":21.5}', v5=True) + publish("$aws/things/sensor-1/shadow/update", b"{}", qos=1, v5=True)
          + unsubscribe(2, ["sensor-1/cmd"], v5=True) + PING + DISCONNECT + connect5("sensor-1", clean=False, expiry=3600))
    write(t, "v5-no-cert", b"\x07" + connect5("display-1"))
    write(t, "v3-oversized-before-connect", b"\x00" + b"\x10\xff\xff\x7f")
    # A PUBLISH whose header (properties length 5) runs past its packet (remaining length 3):
    # what ntex-mqtt 8.2.1's codec underflows on (README.md, "Known upstream bug").
    write(t, "v5-publish-header-past-packet", b"\x01" + connect5("sensor-1")
          + bytes([0x30, 0x03, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0]))


def main():
    ipc_frame()
    group_file()
    import_input()
    core_config()
    modbus_rtu()
    serial_stream()
    connector_json()
    lambda_http()
    shadow_document()
    mqtt_packets()


if __name__ == "__main__":
    main()
