"""Evergreen's runtime for Greengrass V1 Python functions (Evergreen's own code).

Started by the Evergreen supervisor as `python3 evergreen_lambda_runtime.py`
with the function's code directory (or zip) and this directory on
PYTHONPATH. It imports the handler module once (so a pinned function's
top-level code runs at start), reports the initialisation, then long-polls
the Lambda IPC endpoint for work, one invocation at a time:
  * the event is decoded per ENCODING_TYPE: `json` gives the decoded value
    (an empty payload gives None; a payload that is not JSON is passed as a
    str, or as bytes when it is not UTF-8 either); `binary` gives bytes;
  * the handler's return value is sent back JSON-encoded (`json`), or as
    raw bytes (`binary`: bytes as is, str as UTF-8, None as empty);
  * an exception in the handler is posted as a Handled error and the worker
    goes on serving; the supervisor reports timeouts and crashes as
    Unhandled.
stdout and stderr (where `logging` writes) go to the function's log.
"""
import base64
import importlib
import json
import logging
import os
import sys
import time
import traceback

from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException, WorkItem

FUNCTION_ARN = os.environ.get("MY_FUNCTION_ARN", "")
HANDLER = os.environ.get("EVERGREEN_HANDLER", "")
ENCODING = os.environ.get("ENCODING_TYPE", "json")
TIMEOUT_MS = int(os.environ.get("EVERGREEN_FUNCTION_TIMEOUT_MS", "3000") or "3000")
# How often a failed poll is retried, and how many times in a row, before
# the worker gives up (the supervisor then restarts it per its policy).
RETRY_DELAY_S = 0.2
MAX_POLL_FAILURES = 50


class ClientContext:
    def __init__(self, custom=None, client=None, env=None):
        self.custom = custom
        self.client = client
        self.env = env


class Context:
    """The handler's `context`, as Greengrass V1 built it."""

    def __init__(self, invocation_id, client_context, deadline_ms):
        fields = FUNCTION_ARN.split(":")
        self.invoked_function_arn = FUNCTION_ARN
        self.function_name = fields[6] if len(fields) > 6 else FUNCTION_ARN
        self.function_version = fields[7] if len(fields) > 7 else "$LATEST"
        self.aws_request_id = invocation_id
        self.client_context = client_context
        self.identity = None
        self.memory_limit_in_mb = None
        self.log_group_name = None
        self.log_stream_name = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def client_context_of(encoded):
    if not encoded:
        return ClientContext(custom={})
    try:
        doc = json.loads(base64.b64decode(encoded).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        logging.warning("client context is not base64 JSON; passing an empty one")
        return ClientContext(custom={})
    if not isinstance(doc, dict):
        return ClientContext(custom={})
    return ClientContext(custom=doc.get("custom") or {}, client=doc.get("client"), env=doc.get("env"))


def decode_event(payload):
    if ENCODING == "binary":
        return payload
    if not payload:
        return None
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return payload
    except ValueError:
        return payload.decode("utf-8")


def encode_result(value):
    if ENCODING == "binary":
        if value is None:
            return b""
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        return json.dumps(value).encode("utf-8")
    return json.dumps(value).encode("utf-8")


def load_handler():
    module_name, _, function_name = HANDLER.rpartition(".")
    if not module_name or not function_name:
        raise ValueError("handler {!r} is not of the form module.function".format(HANDLER))
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise AttributeError("module {!r} has no function {!r}".format(module_name, function_name))
    return handler


def main():
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="[%(levelname)s] %(name)s: %(message)s",
    )
    ipc = IPCClient()
    try:
        handler = load_handler()
    except BaseException as e:  # noqa: B902 - a SystemExit at import is a failure too
        traceback.print_exc()
        try:
            ipc.put_initialization_result(FUNCTION_ARN, e)
        except IPCException as report:
            print("cannot report the initialisation failure: {}".format(report), file=sys.stderr)
        sys.exit(1)
    ipc.put_initialization_result(FUNCTION_ARN)
    failures = 0
    while True:
        try:
            work = ipc.get_work(FUNCTION_ARN)
            failures = 0
        except IPCException as e:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                print("giving up after {} failed polls: {}".format(failures, e), file=sys.stderr)
                sys.exit(2)
            time.sleep(RETRY_DELAY_S)
            continue
        if work is None:
            continue
        deadline = work.deadline_ms or (time.time() * 1000 + TIMEOUT_MS)
        context = Context(work.invocation_id, client_context_of(work.client_context), deadline)
        try:
            result = encode_result(handler(decode_event(work.payload), context))
        except Exception as e:
            logging.exception("handler %s raised", HANDLER)
            answer(lambda: ipc.post_handler_err(
                FUNCTION_ARN, work.invocation_id, "{}: {}".format(type(e).__name__, e)))
            continue
        answer(lambda: ipc.post_work_result(FUNCTION_ARN, WorkItem(work.invocation_id, result, None)))


def answer(post):
    # A refused answer (the invocation was given up meanwhile) is logged; the
    # worker keeps serving.
    try:
        post()
    except IPCException as e:
        print("cannot post the result: {}".format(e), file=sys.stderr)


if __name__ == "__main__":
    main()
