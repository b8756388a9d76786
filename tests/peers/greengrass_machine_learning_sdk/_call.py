"""One service call: the invoke through the core's facade, as both clients make it."""
import base64
import json
import os

from greengrass_ipc_python_sdk.ipc_facade import (
    GreengrassRuntimeException,
    GreengrassServiceClient,
    GreengrassServiceMessage,
)

from greengrass_machine_learning_sdk.exception import GreengrassDependencyException


def call(function_name, custom, body, service_error):
    """The service's answer payload; `service_error(payload)` is raised for a Handled error."""
    address = "arn:aws:lambda:{}:aws:function:{}".format(os.environ["AWS_REGION"], function_name)
    context = base64.b64encode(json.dumps({"custom": custom}).encode("utf-8"))
    if hasattr(body, "read"):
        body = body.read()
    try:
        output = GreengrassServiceClient().call(address, GreengrassServiceMessage(context, body))
    except GreengrassRuntimeException as e:
        raise GreengrassDependencyException(e)
    if output.error_response:
        payload = output.error_response.payload
        raise service_error(payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload)
    return output.response.payload
