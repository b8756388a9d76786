"""A small OPC UA server (asyncua) for the SiteWise connector's tests.

Objects/Plant/Line1 holds one variable of each kind the connector maps
(Double, Int32, Int64, String, Boolean), changing every 100 ms; Objects/Other
holds a variable that node filters on /Plant/... must leave out.

    opcua_server.py PORT [--user USER:PASS] [--secure DIR]

--user      only that user may connect (anonymous is refused)
--bulk N    also N Double variables under Objects/Bulk (for the bench)
--secure    Basic256Sha256 SignAndEncrypt only; the server's key and
            certificate are created in DIR (server_cert.pem is what a client
            pins with certificateTrust X509); any client certificate is accepted
Prints "READY" on stdout once it listens; runs until killed.
"""

import argparse
import asyncio
import socket
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

APP_URI = "urn:evergreen:test:opcua-server"


class OneUser(UserManager):
    def __init__(self, name, password):
        self.name, self.password = name, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User)
        return None


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--user")
    p.add_argument("--secure")
    p.add_argument("--bulk", type=int, default=0)
    a = p.parse_args()
    users = None
    if a.user:
        name, _, password = a.user.partition(":")
        users = OneUser(name, password)
    server = Server(user_manager=users)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{a.port}/evergreen/")
    server.set_server_name("Evergreen test server")
    await server.set_application_uri(APP_URI)
    if a.user:
        server.set_security_IDs(["Username"])
    if a.secure:
        d = Path(a.secure)
        d.mkdir(parents=True, exist_ok=True)
        key, der = d / "server_key.pem", d / "server_cert.der"
        await setup_self_signed_certificate(
            key, der, APP_URI, socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
            {"commonName": "Evergreen test server"},
        )
        cert = x509.load_der_x509_certificate(der.read_bytes())
        (d / "server_cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.load_certificate(str(der))
        await server.load_private_key(str(key))
    ns = await server.register_namespace("urn:evergreen:test")
    objects = server.nodes.objects
    plant = await objects.add_folder(ns, "Plant")
    line = await plant.add_folder(ns, "Line1")
    temperature = await line.add_variable(ns, "Temperature", 20.0, ua.VariantType.Double)
    count = await line.add_variable(ns, "Count", 0, ua.VariantType.Int32)
    big = await line.add_variable(ns, "Big", 1 << 40, ua.VariantType.Int64)
    name = await line.add_variable(ns, "Name", "run-0", ua.VariantType.String)
    running = await line.add_variable(ns, "Running", False, ua.VariantType.Boolean)
    other = await objects.add_folder(ns, "Other")
    await other.add_variable(ns, "Hidden", 1.0, ua.VariantType.Double)
    bulk = await objects.add_folder(ns, "Bulk")
    for k in range(a.bulk):
        await bulk.add_variable(ns, f"V{k}", float(k), ua.VariantType.Double)
    async with server:
        print("READY", flush=True)
        i = 0
        while True:
            i += 1
            await temperature.write_value(20.0 + (i % 50) / 10.0)
            await count.write_value(ua.Variant(i, ua.VariantType.Int32))
            await big.write_value(ua.Variant((1 << 40) + i, ua.VariantType.Int64))
            await name.write_value(f"run-{i}")
            await running.write_value(i % 2 == 0)
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
