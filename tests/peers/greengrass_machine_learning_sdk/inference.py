"""`client('inference')`: the ML connectors' local inference services."""
import io
import json
import re

from greengrass_machine_learning_sdk._call import call

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,62}$")


class GreengrassInferenceException(Exception):
    pass


class StreamingBody(object):
    """The response body, read like boto3's."""

    def __init__(self, data):
        self._stream = io.BytesIO(data)

    def read(self, amt=None):
        return self._stream.read(amt)

    def close(self):
        self._stream.close()


class Client(object):
    def invoke_inference_service(self, **kwargs):
        for required in ("AlgoType", "ServiceName", "Body"):
            if required not in kwargs:
                raise ValueError("{} argument of invoke_inference_service is required".format(required))
        algo, service = kwargs["AlgoType"], kwargs["ServiceName"]
        for what, value in (("AlgoType", algo), ("ServiceName", service)):
            if not NAME.match(value):
                raise ValueError("{} must match {}".format(what, NAME.pattern))
        custom = {}
        if "ContentType" in kwargs:
            custom["Content-Type"] = kwargs["ContentType"]
        if "Accept" in kwargs:
            custom["Accept"] = kwargs["Accept"]
        payload = call(
            "GG-ML-INF-{}-{}".format(algo, service), custom, kwargs["Body"], GreengrassInferenceException
        )
        response = json.loads(payload)
        response["Body"] = StreamingBody(response["Body"].encode("utf-8"))
        return response
