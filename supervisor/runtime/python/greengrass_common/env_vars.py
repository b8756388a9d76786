"""What the Evergreen runtime tells a function about itself, read once.

greengrasssdk reads these names; when MY_FUNCTION_ARN is None it runs in
its "mock" mode and sends nothing, which is why Evergreen always sets it.
"""
import os

MY_FUNCTION_ARN = os.environ.get("MY_FUNCTION_ARN")
ROUTER_FUNCTION_ARN = os.environ.get("ROUTER_FUNCTION_ARN", "arn:aws:lambda:::function:GGRouter")
SHADOW_FUNCTION_ARN = os.environ.get("SHADOW_FUNCTION_ARN", "arn:aws:lambda:::function:GGShadowService")
SECRETS_MANAGER_FUNCTION_ARN = os.environ.get(
    "SECRETS_MANAGER_FUNCTION_ARN", "arn:aws:lambda:::function:GGSecretManager:1"
)
AUTH_TOKEN = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
ENCODING_TYPE = os.environ.get("ENCODING_TYPE", "json")
GGC_MAX_INTERFACE_VERSION = os.environ.get("GGC_MAX_INTERFACE_VERSION", "1.5")
