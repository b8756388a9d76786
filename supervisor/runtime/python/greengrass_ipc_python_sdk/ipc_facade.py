"""Service-call facade over the Lambda IPC (Evergreen's own code).

Greengrass V1 cores put `greengrass_ipc_python_sdk.ipc_facade` on a function's
path; V1's Machine Learning SDK (`greengrass_machine_learning_sdk`, which
users bundle with their function) imports it to reach the ML connectors'
local services (`arn:aws:lambda:<region>:aws:function:GG-ML-INF-...`,
`...:function:MLFeedback`). A call is an ordinary RequestResponse invoke
followed by the result fetch. The outcome: `response` set when the service
succeeded, `error_response` set when it reported an error (Function error
`Handled`); any other failure raises GreengrassRuntimeException.
"""
import collections

from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException

# `context` and `payload` are bytes; `context` is the base64 JSON client context.
GreengrassServiceMessage = collections.namedtuple("GreengrassServiceMessage", ["context", "payload"])
GreengrassServiceCallOutput = collections.namedtuple(
    "GreengrassServiceCallOutput", ["response", "error_response"]
)


class GreengrassRuntimeException(Exception):
    pass


class GreengrassServiceClient(object):
    """Calls a service by its Lambda ARN and blocks until it answers."""

    def __init__(self):
        self._ipc = IPCClient()

    def call(self, address, message):
        try:
            invocation_id = self._ipc.post_work(address, message.payload, message.context)
            result = self._ipc.get_work_result(address, invocation_id)
        except IPCException as e:
            raise GreengrassRuntimeException(str(e))
        if not result.func_err:
            return GreengrassServiceCallOutput(GreengrassServiceMessage("", result.payload), None)
        if result.func_err == "Handled":
            return GreengrassServiceCallOutput(None, GreengrassServiceMessage("", result.payload))
        raise GreengrassRuntimeException(
            "{} failed ({}): {}".format(address, result.func_err, result.payload.decode("utf-8", "replace"))
        )
