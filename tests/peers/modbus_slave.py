#!/usr/bin/env python3
"""A Modbus-RTU slave (pymodbus 3.16, SimDevice API) for Evergreen's tests and example.

Serves one or more device ids on a serial port (a socat pty in the tests) with
100 addresses in each table; any address from 100 up answers exception 2
(Illegal Data Address). Initial data, per device:

  coils            0-99: False
  discrete inputs  0-99: True at even addresses
  holding regs     0-99: 1000 + address
  input regs       0-99: 2000 + address, except input register 0 which is a
                   "temperature" in tenths of a degree C (215 = 21.5 C) that
                   moves when --temperature-step is given (see below)

It exits on its own: when the process --parent-pid dies, or after
--max-seconds (default 600), whichever comes first, so a test that dies
cannot leave it running.

With --temperature-step N the temperature climbs by N tenths every
--temperature-period seconds up to 300 (30.0 C), then falls back to 150
(15.0 C) and climbs again: enough for the example function to cross its
threshold both ways.
"""

import argparse
import asyncio
import logging
import os
import sys
import threading
import time


from pymodbus.server import ModbusSerialServer
from pymodbus.exceptions import NoSuchIdException
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

SIZE = 100


def _silence_unknown_ids() -> None:
    """Makes requests for ids this slave does not serve go unanswered.

    pymodbus 3.16's SimDevice store fails them with a KeyError, which the
    server answers with exception 4; `ignore_missing_devices` only silences
    NoSuchIdException. On a real RS-485 line an absent device is silence.
    """
    lookup = getattr(SimCore, "_SimCore__get_device", None)
    if lookup is None:
        return

    def get_device(self, device_id):
        if device_id not in self.devices and 0 not in self.devices:
            raise NoSuchIdException(f"device id {device_id} not served")
        return lookup(self, device_id)

    SimCore._SimCore__get_device = get_device


_silence_unknown_ids()
TEMPERATURE = {"value": 215}


def watchdog(parent_pid: int, max_seconds: float) -> None:
    """Ends the process when the parent is gone or the time is up."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        if parent_pid:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
        time.sleep(0.2)
    os._exit(0)


async def temperature_action(
    function_code, start_address, address, count, current_registers, set_values
):
    """Keeps input register 0 equal to the simulated temperature."""
    if function_code == 4 and start_address == 0 and current_registers:
        current_registers[0] = TEMPERATURE["value"]
    return None


async def drift(step: int, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        value = TEMPERATURE["value"] + step
        TEMPERATURE["value"] = 150 if value > 300 else value
        print(f"modbus_slave: temperature now {TEMPERATURE['value'] / 10:.1f} C", flush=True)


def device(device_id: int) -> SimDevice:
    coils = [SimData(0, values=[False] * SIZE, datatype=DataType.BITS)]
    inputs = [SimData(0, values=[i % 2 == 0 for i in range(SIZE)], datatype=DataType.BITS)]
    holding = [SimData(0, values=[1000 + i for i in range(SIZE)], datatype=DataType.REGISTERS)]
    input_regs = [
        SimData(0, values=[TEMPERATURE["value"]] + [2000 + i for i in range(1, SIZE)],
                datatype=DataType.REGISTERS)
    ]
    return SimDevice(
        id=device_id,
        simdata=(coils, inputs, holding, input_regs),
        action=temperature_action,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", required=True, help="serial device, e.g. a socat pty")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--device-id", type=int, action="append", help="device id served (repeatable; default 1)")
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--temperature-step", type=int, default=0)
    parser.add_argument("--temperature-period", type=float, default=2.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR)
    threading.Thread(target=watchdog, args=(args.parent_pid, args.max_seconds), daemon=True).start()

    devices = [device(i) for i in (args.device_id or [1])]
    # ignore_missing_devices: other ids get silence, as on a real line
    # (pymodbus would otherwise answer them with exception 4).
    server = ModbusSerialServer(
        devices, port=args.port, baudrate=args.baud, ignore_missing_devices=True
    )
    if args.temperature_step:
        asyncio.get_running_loop().create_task(drift(args.temperature_step, args.temperature_period))
    print(f"modbus_slave: serving device(s) {[d.id for d in devices]} on {args.port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
