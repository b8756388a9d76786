"""Splits a Lambda function ARN into its parts (Evergreen's own code).

arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
"""


class FunctionArnFields:
    def __init__(self, function_arn):
        if not isinstance(function_arn, str):
            raise ValueError("a function ARN must be a string, not {}".format(type(function_arn).__name__))
        parts = function_arn.split(":")
        if len(parts) not in (7, 8) or parts[0] != "arn" or parts[2] != "lambda" or parts[5] != "function":
            raise ValueError("{!r} is not a Lambda function ARN "
                             "(arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>])".format(function_arn))
        if not parts[6]:
            raise ValueError("{!r} has no function name".format(function_arn))
        self.partition = parts[1]
        self.region = parts[3]
        self.account_id = parts[4]
        self.name = parts[6]
        self.qualifier = parts[7] if len(parts) == 8 else None
        self.unqualified_arn = ":".join(parts[:7])

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        if qualifier:
            return "{}:{}".format(unqualified_arn, qualifier)
        return unqualified_arn
