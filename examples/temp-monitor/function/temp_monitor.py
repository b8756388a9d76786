"""TempMonitor: the Greengrass V1 example solution's function.

A long-lived (pinned) Lambda function, written as Greengrass users wrote
them: Python with the Greengrass Core SDK (`greengrasssdk`, vendored next to
this file). Every POLL_SECONDS it asks the Modbus-RTU Protocol Adapter
connector for the temperature register of a slave; on each answer it
publishes the reading and, when the temperature rises above THRESHOLD_C,
asks the Twilio Notifications connector to text ALERT_PHONE_NUMBER. It
alerts once per excursion: it re-arms when the temperature falls below
THRESHOLD_C - HYSTERESIS_C, so a value hovering at the threshold does not
send a text every poll.

The register holds tenths of a degree Celsius (215 = 21.5 C), as many
temperature transmitters do. Settings come from the function's environment
variables (Environment.Variables in the group).
"""

import json
import logging
import os
import sys
import threading

import greengrasssdk

logging.basicConfig(stream=sys.stdout, level=logging.INFO)
logger = logging.getLogger("TempMonitor")

DEVICE = int(os.environ.get("DEVICE", "1"))
REGISTER = int(os.environ.get("TEMPERATURE_REGISTER", "0"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "5"))
THRESHOLD_C = float(os.environ.get("THRESHOLD_C", "30.0"))
HYSTERESIS_C = float(os.environ.get("HYSTERESIS_C", "1.0"))
ALERT_NAME = os.environ.get("ALERT_NAME", "On-call")
ALERT_PHONE_NUMBER = os.environ.get("ALERT_PHONE_NUMBER", "")

REQUEST_TOPIC = "modbus/adapter/request"
RESPONSE_TOPIC = "modbus/adapter/response"
TWILIO_TOPIC = "twilio/txt"
TWILIO_STATUS_TOPIC = "twilio/message/status"
READING_TOPIC = "tempmonitor/reading"

iot = greengrasssdk.client("iot-data")

polls = 0
alerts = 0
alerting = False


def poll():
    """Asks the Modbus connector for the temperature, then schedules the next poll."""
    global polls
    polls += 1
    request = {
        "request": {
            "operation": "ReadInputRegistersRequest",
            "device": DEVICE,
            "address": REGISTER,
            "count": 1,
        },
        "id": "temperature-%d" % polls,
    }
    try:
        iot.publish(topic=REQUEST_TOPIC, payload=json.dumps(request))
    except Exception as e:  # keep polling whatever happened to this one
        logger.error("poll %d not published: %s", polls, e)
    timer = threading.Timer(POLL_SECONDS, poll)
    timer.daemon = True
    timer.start()


def on_reading(celsius):
    """Applies the threshold to one reading."""
    global alerting, alerts
    above = celsius > THRESHOLD_C
    iot.publish(
        topic=READING_TOPIC,
        payload=json.dumps({"celsius": celsius, "threshold": THRESHOLD_C, "above": above}),
    )
    if above and not alerting:
        alerting = True
        alerts += 1
        message = "Temperature alert: %.1f C on device %d is above the %.1f C threshold" % (
            celsius,
            DEVICE,
            THRESHOLD_C,
        )
        logger.warning("%s; texting %s", message, ALERT_NAME)
        iot.publish(
            topic=TWILIO_TOPIC,
            payload=json.dumps(
                {
                    "request": {
                        "recipient": {
                            "name": ALERT_NAME,
                            "phone_number": ALERT_PHONE_NUMBER,
                            "message": message,
                        },
                        "retries": 3,
                    },
                    "id": "temp-alert-%d" % alerts,
                }
            ),
        )
    elif alerting and celsius < THRESHOLD_C - HYSTERESIS_C:
        alerting = False
        logger.info("%.1f C: back below the threshold, alerts re-armed", celsius)
    else:
        logger.info("%.1f C (threshold %.1f C)", celsius, THRESHOLD_C)


def function_handler(event, context):
    """Handles the Modbus connector's answers and the Twilio connector's statuses."""
    topic = context.client_context.custom.get("subject", "")
    if isinstance(event, (bytes, str)):
        try:
            event = json.loads(event)
        except ValueError:
            logger.error("not JSON on %s: %r", topic, event)
            return
    response = event.get("response", {}) if isinstance(event, dict) else {}
    if topic == RESPONSE_TOPIC:
        if response.get("status") != "success":
            logger.error("Modbus read %s failed: %s", event.get("id"), response.get("error_message"))
            return
        registers = response.get("payload", {}).get("registers") or []
        if not registers:
            logger.error("Modbus read %s returned no register", event.get("id"))
            return
        on_reading(registers[0] / 10.0)
    elif topic == TWILIO_STATUS_TOPIC:
        if response.get("status") == "success":
            logger.info("alert %s sent: %s", event.get("id"), response.get("payload"))
        else:
            logger.error("alert %s not sent: %s", event.get("id"), response.get("error_message"))


if not ALERT_PHONE_NUMBER:
    logger.error("ALERT_PHONE_NUMBER is not set: alerts will be refused by the Twilio connector")
logger.info(
    "polling input register %d of device %d every %.1f s; alerting above %.1f C",
    REGISTER,
    DEVICE,
    POLL_SECONDS,
    THRESHOLD_C,
)
poll()
