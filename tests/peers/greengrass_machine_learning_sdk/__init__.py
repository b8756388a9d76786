"""A stand-in for Greengrass V1's Machine Learning SDK (Evergreen's own code, for the tests).

AWS shipped `greengrass_machine_learning_sdk` as a download to bundle with a function, never on
PyPI, so the tests carry this one, written from its documented interface: `client('inference')`
with `invoke_inference_service(AlgoType, ServiceName, ContentType, Accept?, Body)` and
`client('feedback')` with `publish(ConfigId, ModelInput, ModelPrediction, Metadata?)`. Like the
original it calls the core through `greengrass_ipc_python_sdk.ipc_facade` (which the core puts
on the function's path): an invoke of `arn:aws:lambda:<AWS_REGION>:aws:function:<name>`, the
request's parameters in the client context's `custom` object, its body as the payload.
"""
from greengrass_machine_learning_sdk.exception import GreengrassDependencyException
from greengrass_machine_learning_sdk.feedback import GreengrassFeedbackException
from greengrass_machine_learning_sdk.inference import GreengrassInferenceException


def client(name):
    if name == "inference":
        from greengrass_machine_learning_sdk import inference

        return inference.Client()
    if name == "feedback":
        from greengrass_machine_learning_sdk import feedback

        return feedback.Client()
    raise ValueError("no client {!r}: use 'inference' or 'feedback'".format(name))


__all__ = [
    "client",
    "GreengrassDependencyException",
    "GreengrassFeedbackException",
    "GreengrassInferenceException",
]
