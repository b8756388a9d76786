"""`client('feedback')`: the ML Feedback connector."""
import re

from greengrass_machine_learning_sdk._call import call

CONFIG_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,62}$")


class GreengrassFeedbackException(Exception):
    pass


class Client(object):
    def publish(self, **kwargs):
        for required in ("ConfigId", "ModelInput", "ModelPrediction"):
            if required not in kwargs:
                raise ValueError("{} argument of Feedback.Client.publish is required".format(required))
        if not CONFIG_ID.match(kwargs["ConfigId"]):
            raise ValueError("ConfigId must match {}".format(CONFIG_ID.pattern))
        prediction = kwargs["ModelPrediction"]
        if not isinstance(prediction, (list, dict)):
            raise ValueError("ModelPrediction must be a list or a dict")
        metadata = kwargs.get("Metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError("Metadata must be a dict")
        custom = {"ConfigId": kwargs["ConfigId"], "ModelPrediction": prediction, "Metadata": metadata}
        call("MLFeedback", custom, kwargs["ModelInput"], GreengrassFeedbackException)
