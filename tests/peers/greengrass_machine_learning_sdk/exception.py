"""The error both clients raise when the core, not the service, failed the call."""


class GreengrassDependencyException(Exception):
    pass
