#!/usr/bin/env python3
"""A stand-in for the AWS IoT Jobs MQTT API on a real broker (mosquitto), for the fleet's Jobs
transport test. It is not AWS: it emulates only what a device sees, as the AWS IoT Jobs
developer guide documents it ("Using the AWS IoT Jobs MQTT API"):

* `$aws/things/<thing>/jobs/start-next` (StartNextPendingJobExecution): answers on
  `.../start-next/accepted` with the thing's oldest QUEUED or IN_PROGRESS execution
  (`{"execution": {"jobId", "thingName", "status", "jobDocument", "versionNumber",
  "executionNumber", "queuedAt", "startedAt"}, "timestamp"}`, marking a QUEUED one IN_PROGRESS),
  or without `execution` when nothing is pending;
* `$aws/things/<thing>/jobs/<jobId>/update` (UpdateJobExecution): records `status` and
  `statusDetails`, answers on `.../update/accepted` (or `/rejected` for an unknown job or a
  status change out of a terminal state), and after a terminal status sends `notify-next`;
* `$aws/things/<thing>/jobs/notify-next`: sent when a job is created for the thing (and after
  a terminal update), with the next pending execution or without one.

Not emulated: rollout rates, abort criteria, timeouts, `expectedVersion`, `$next` describe,
`notify` (the list), and anything of the control plane but creation. Jobs are created by
publishing `{"jobId", "things": [...], "document": {...}}` on `standin/jobs/create`; each
thing's executions are published, retained, on `standin/jobs/things/<thing>` after every
change, for the test to read.

Usage: jobs_standin.py PORT READY_FILE   (writes READY_FILE once subscribed)
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

PORT, READY_FILE = int(sys.argv[1]), sys.argv[2]
TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "REMOVED", "CANCELED"}
lock = threading.Lock()
executions = {}  # thing -> [execution]


def now():
    return int(time.time())


def publish(client, topic, body, retain=False):
    client.publish(topic, json.dumps(body), qos=1, retain=retain)


def pending(thing):
    for e in executions.get(thing, []):
        if e["status"] in ("QUEUED", "IN_PROGRESS"):
            return e
    return None


def record(client, thing):
    publish(client, f"standin/jobs/things/{thing}", executions.get(thing, []), retain=True)


def notify_next(client, thing):
    body = {"timestamp": now()}
    e = pending(thing)
    if e:
        body["execution"] = {k: e[k] for k in ("jobId", "thingName", "status", "jobDocument",
                                               "versionNumber", "executionNumber", "queuedAt")}
    publish(client, f"$aws/things/{thing}/jobs/notify-next", body)


def on_message(client, _userdata, msg):
    parts = msg.topic.split("/")
    try:
        body = json.loads(msg.payload or b"{}")
    except ValueError:
        body = {}
    with lock:
        if msg.topic == "standin/jobs/create":
            for thing in body["things"]:
                executions.setdefault(thing, []).append({
                    "jobId": body["jobId"], "thingName": thing, "status": "QUEUED",
                    "jobDocument": body["document"], "versionNumber": 1,
                    "executionNumber": 1, "queuedAt": now(), "statusDetails": {},
                })
                record(client, thing)
                notify_next(client, thing)
        elif len(parts) == 5 and parts[3] == "jobs" and parts[4] == "start-next":
            thing = parts[2]
            e = pending(thing)
            answer = {"timestamp": now()}
            if e:
                if e["status"] == "QUEUED":
                    e["status"] = "IN_PROGRESS"
                    e["startedAt"] = now()
                    e["versionNumber"] += 1
                answer["execution"] = dict(e)
                record(client, thing)
            publish(client, f"$aws/things/{thing}/jobs/start-next/accepted", answer)
        elif len(parts) == 6 and parts[3] == "jobs" and parts[5] == "update":
            thing, job = parts[2], parts[4]
            e = next((x for x in executions.get(thing, []) if x["jobId"] == job), None)
            status = body.get("status")
            if e is None or e["status"] in TERMINAL:
                publish(client, f"$aws/things/{thing}/jobs/{job}/update/rejected",
                        {"code": "InvalidStateTransition" if e else "ResourceNotFound",
                         "timestamp": now()})
                return
            e["status"] = status
            e["statusDetails"] = body.get("statusDetails", {})
            e["versionNumber"] += 1
            record(client, thing)
            publish(client, f"$aws/things/{thing}/jobs/{job}/update/accepted", {"timestamp": now()})
            if status in TERMINAL:
                notify_next(client, thing)


def main():
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="jobs-standin")
    client.on_message = on_message
    client.connect("127.0.0.1", PORT)
    client.subscribe([("standin/jobs/create", 1), ("$aws/things/+/jobs/start-next", 1),
                      ("$aws/things/+/jobs/+/update", 1)])
    client.loop_start()
    time.sleep(0.5)
    with open(READY_FILE, "w") as f:
        f.write("ready")
    while True:
        time.sleep(3600)


main()
