"""Every StreamManagerClient operation and its errors, with the unmodified
greengrasssdk 1.6.1 client; prints one JSON line per check for the Rust test."""
import json
import sys
import threading
import time

from greengrasssdk.stream_manager import (
    ExportDefinition, HTTPConfig, MessageStreamDefinition, NotEnoughMessagesException,
    Persistence, ReadMessagesOptions, ResourceNotFoundException, StrategyOnFull,
    StreamManagerClient, InvalidRequestException, UpdateNotAllowedException,
    RequestPayloadTooLargeException, StreamManagerException,
)


def out(name, value):
    print(json.dumps({"check": name, "value": value}), flush=True)


def err(f):
    try:
        f()
        return None
    except StreamManagerException as e:
        return type(e).__name__
    except Exception as e:  # noqa: BLE001
        return "other:" + type(e).__name__ + ":" + str(e)


c = StreamManagerClient()
out("list_empty", c.list_streams())
c.create_message_stream(MessageStreamDefinition(
    name="file-stream", strategy_on_full=StrategyOnFull.RejectNewData,
    persistence=Persistence.File, max_size=4096, stream_segment_size=1024))
c.create_message_stream(MessageStreamDefinition(
    name="mem stream", strategy_on_full=StrategyOnFull.OverwriteOldestData,
    persistence=Persistence.Memory, max_size=2048))
out("list", sorted(c.list_streams()))
out("create_twice", err(lambda: c.create_message_stream(MessageStreamDefinition(
    name="file-stream", strategy_on_full=StrategyOnFull.RejectNewData))))
seqs = [c.append_message("file-stream", ("m%d" % i).encode()) for i in range(5)]
out("seqs", seqs)
msgs = c.read_messages("file-stream", ReadMessagesOptions(desired_start_sequence_number=1,
                                                            min_message_count=2, max_message_count=3))
out("read", [[m.sequence_number, m.payload.decode(), m.stream_name, m.ingest_time > 0] for m in msgs])
out("read_default", [m.sequence_number for m in c.read_messages("file-stream")])
out("not_enough", err(lambda: c.read_messages("file-stream", ReadMessagesOptions(
    desired_start_sequence_number=3, min_message_count=5, max_message_count=5))))


def late_append():
    time.sleep(0.5)
    c2 = StreamManagerClient()
    c2.append_message("file-stream", b"late")
    c2.close()


threading.Thread(target=late_append).start()
t0 = time.time()
waited = c.read_messages("file-stream", ReadMessagesOptions(
    desired_start_sequence_number=5, min_message_count=1, read_timeout_millis=5000))
out("read_waits", [[m.sequence_number, m.payload.decode()] for m in waited] + [time.time() - t0 >= 0.4])
out("missing_read", err(lambda: c.read_messages("nope")))
out("missing_append", err(lambda: c.append_message("nope", b"x")))
out("missing_describe", err(lambda: c.describe_message_stream("nope")))
out("missing_delete", err(lambda: c.delete_message_stream("nope")))
full = 0
while full < 1000 and err(lambda: c.append_message("file-stream", b"x" * 100)) is None:
    full += 1
out("full_error", err(lambda: c.append_message("file-stream", b"x" * 100)))
for i in range(100):
    c.append_message("mem stream", b"y" * 100)
info = c.describe_message_stream("mem stream")
out("overwrite", [info.storage_status.newest_sequence_number, info.storage_status.oldest_sequence_number > 0,
                  info.storage_status.total_bytes <= 2048])
out("oldest_clamped", c.read_messages("mem stream", ReadMessagesOptions(desired_start_sequence_number=0))[0].sequence_number
    == info.storage_status.oldest_sequence_number)
info = c.describe_message_stream("file-stream")
out("describe", [info.definition.name, info.definition.max_size, info.definition.persistence == Persistence.File,
                 info.storage_status.oldest_sequence_number, info.storage_status.newest_sequence_number])
out("update_persistence", err(lambda: c.update_message_stream(MessageStreamDefinition(
    name="file-stream", strategy_on_full=StrategyOnFull.RejectNewData, persistence=Persistence.Memory))))
c.update_message_stream(MessageStreamDefinition(
    name="file-stream", strategy_on_full=StrategyOnFull.OverwriteOldestData,
    persistence=Persistence.File, max_size=4096, stream_segment_size=1024))
out("update_then_append", err(lambda: c.append_message("file-stream", b"x" * 100)))
out("update_shows", c.describe_message_stream("file-stream").definition.strategy_on_full == StrategyOnFull.OverwriteOldestData)
out("http_export", err(lambda: c.create_message_stream(MessageStreamDefinition(
    name="h", strategy_on_full=StrategyOnFull.RejectNewData,
    export_definition=ExportDefinition(http=[HTTPConfig(identifier="h", uri="http://127.0.0.1:9/")])))))
out("too_large", err(lambda: c.append_message("mem stream", b"z" * (int(sys.argv[1]) + 10))))
out("still_works", c.append_message("mem stream", b"after") > 0)
c.delete_message_stream("mem stream")
out("deleted", sorted(c.list_streams()))
c.close()
bad = StreamManagerClient.__new__(StreamManagerClient)
import os
os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong"
out("bad_token", err(lambda: StreamManagerClient()))
out("done", True)
