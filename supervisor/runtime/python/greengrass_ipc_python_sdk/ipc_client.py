"""HTTP client of Evergreen's Lambda IPC endpoint (Evergreen's own code).

Speaks the requests greengrasssdk expects of the Greengrass core's
IPCClient: invoke (post_work), result fetch (get_work_result), and the
worker side (get_work, post_work_result, post_handler_err,
put_initialization_result). Every non-2xx answer or connection failure
raises IPCException; nothing is retried.
"""
import json
import os
import urllib.error
import urllib.request

API = "2016-11-01"
HEADER_INVOCATION_ID = "X-Amz-InvocationId"
HEADER_CLIENT_CONTEXT = "X-Amz-Client-Context"
HEADER_INVOCATION_TYPE = "X-Amz-Invocation-Type"
HEADER_FUNCTION_ERROR = "X-Amz-Function-Error"
HEADER_DEADLINE = "Lambda-Runtime-Deadline-Ms"


class IPCException(Exception):
    pass


class WorkItem:
    def __init__(self, invocation_id, payload, client_context, deadline_ms=None):
        self.invocation_id = invocation_id
        self.payload = payload
        self.client_context = client_context
        self.deadline_ms = deadline_ms


class GetWorkResultOutput:
    def __init__(self, payload, func_err):
        self.payload = payload
        self.func_err = func_err


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _body(payload):
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if hasattr(payload, "read"):
        return payload.read()
    return bytes(payload)


class IPCClient:
    def __init__(self, endpoint="localhost", port=None):
        self.endpoint = endpoint
        self.port = int(port or os.environ.get("GG_DAEMON_PORT", "8000"))
        self.auth_token = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")

    def _url(self, path):
        return "http://{}:{}/{}/{}".format(self.endpoint, self.port, API, path)

    def _request(self, method, path, body=None, headers=None):
        all_headers = {"Authorization": self.auth_token}
        all_headers.update(headers or {})
        request = urllib.request.Request(self._url(path), data=body, headers=all_headers, method=method)
        try:
            # No timeout: the endpoint bounds every wait itself.
            with urllib.request.urlopen(request) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise IPCException("{} {} refused: HTTP {}: {}".format(method, path, e.code, detail)) from None
        except (urllib.error.URLError, OSError) as e:
            raise IPCException("{} {} failed: {}".format(method, path, e)) from None

    # --- caller side -----------------------------------------------------
    def post_work(self, function_arn, payload, client_context, invocation_type="RequestResponse"):
        _, headers, _ = self._request(
            "POST",
            "functions/{}".format(function_arn),
            body=_body(payload),
            headers={
                HEADER_CLIENT_CONTEXT: _text(client_context),
                HEADER_INVOCATION_TYPE: invocation_type,
            },
        )
        return headers.get(HEADER_INVOCATION_ID)

    def get_work_result(self, function_arn, invocation_id):
        _, headers, body = self._request(
            "GET",
            "functions/{}".format(function_arn),
            headers={HEADER_INVOCATION_ID: invocation_id},
        )
        return GetWorkResultOutput(body, headers.get(HEADER_FUNCTION_ERROR, ""))

    # --- worker side -----------------------------------------------------
    def get_work(self, function_arn):
        """The next invocation, or None when the long poll ended empty."""
        status, headers, body = self._request("GET", "functions/{}/work".format(function_arn))
        if status == 204:
            return None
        deadline = headers.get(HEADER_DEADLINE)
        return WorkItem(
            headers.get(HEADER_INVOCATION_ID),
            body,
            headers.get(HEADER_CLIENT_CONTEXT, ""),
            int(deadline) if deadline and deadline.isdigit() else None,
        )

    def post_work_result(self, function_arn, work_item):
        self._request(
            "POST",
            "functions/{}/work".format(function_arn),
            body=_body(work_item.payload),
            headers={HEADER_INVOCATION_ID: work_item.invocation_id},
        )

    def post_handler_err(self, function_arn, invocation_id, handler_err):
        self._request(
            "POST",
            "functions/{}/work".format(function_arn),
            body=json.dumps({"errorMessage": handler_err}).encode("utf-8"),
            headers={HEADER_INVOCATION_ID: invocation_id, HEADER_FUNCTION_ERROR: "Handled"},
        )

    def put_initialization_result(self, function_arn, error=None):
        if error is None:
            doc = {"Success": True, "Response": ""}
        else:
            doc = {"Success": False, "Response": "{}({!r})".format(type(error).__name__, str(error))}
        self._request(
            "PUT",
            "functions/{}/initialized".format(function_arn),
            body=json.dumps(doc).encode("utf-8"),
        )
