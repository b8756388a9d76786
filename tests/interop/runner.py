#!/usr/bin/env python3
"""Helper of run.sh: runs one test of the Paho interoperability suite and writes its outcome,
expands the group template, and prints the side-by-side table.

  runner.py group TEMPLATE SUBJECTS OUT          write the group (every device -> every device)
  runner.py freeport                             print a free TCP port on 127.0.0.1
  runner.py list SUITE_DIR VERSION               the suite's test names, in unittest's order
  runner.py run SUITE_DIR VERSION PORT TEST OUT  run one test against 127.0.0.1:PORT
  runner.py table RESULTS_DIR BROKER...          the table of RESULTS_DIR/<version>/<broker>/*.json

VERSION is 311 (interoperability/client_test.py) or 5 (interoperability/client_test5.py).
"""
import io
import json
import os
import re
import socket
import sys
import traceback
import unittest

MODULES = {"311": "client_test", "5": "client_test5"}


def load(suite_dir, version, port):
    """Imports the suite's module and sets the globals its __main__ block sets."""
    sys.path.insert(0, os.path.join(suite_dir, "interoperability"))
    mod = __import__(MODULES[version])
    mod.host = "127.0.0.1"
    mod.port = port
    if version == "311":
        mod.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
        mod.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
    else:
        # as client_test5.py's __main__ does; its setUpClass (setData) then sets the unprefixed
        # topics again, so only the shared subscription test uses the prefix.
        mod.topic_prefix = "client_test5/"
        mod.topics = [mod.topic_prefix + t for t in ["TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA"]]
        mod.wildtopics = [mod.topic_prefix + t for t in ["TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#"]]
    mod.nosubscribe_topics = ("test/nosubscribe",)
    return mod


def test_names(mod):
    return [t.id().rsplit(".", 1)[1] for t in unittest.TestLoader().loadTestsFromTestCase(mod.Test)]


EXC = re.compile(r"^[A-Za-z_.]*(Error|Exception|Exit)\b")


def exceptions(text):
    """The exception lines of the tracebacks in text, each with the source line that raised it
    when the exception alone says little (a bare assert, `True != False`)."""
    lines = text.splitlines()
    found = []
    for i, l in enumerate(lines):
        if not EXC.match(l):
            continue
        e = l.strip()
        # the source line under the last frame of the suite itself (not unittest's)
        frames = [j for j in range(max(0, i - 16), i)
                  if lines[j].strip().startswith("File ") and "/unittest/" not in lines[j]]
        code = lines[frames[-1] + 1].strip() if frames and frames[-1] + 1 < i else ""
        if code and (e in ("AssertionError", "AssertionError: True != False", "AssertionError: False != True")
                     or e.startswith("AssertionError: False is not true")):
            e = f"{e} at `{code}`"
        if e not in found:
            found.append(e)
    return found


def reason_of(r):
    """Why a test did not pass: the exceptions its own output printed (the suite often catches
    its assertion, prints the traceback and fails later on `succeeded == True`), then unittest's."""
    if r["outcome"] == "skip":
        return r.get("detail", "")
    found = exceptions(r.get("printed", ""))
    for e in exceptions(r.get("detail", "")):
        if e not in found and "`self.assertEqual(succeeded, True)`" not in e:
            found.append(e)
    why = " <- ".join(reversed(found[-3:])) if found else r.get("reason", "")
    return ("in setUpClass (the suite's cleanup): " + why) if r.get("detail", "").startswith("setUpClass") else why


class Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcome, self.detail = "pass", ""

    def addFailure(self, test, err):
        self.outcome, self.detail = "FAIL", self._exc_info_to_string(err, test)

    def addError(self, test, err):
        where = "" if isinstance(test, unittest.TestCase) else f"{test.id()}: "
        self.outcome, self.detail = "ERROR", where + self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        self.outcome, self.detail = "skip", reason


def run_one(suite_dir, version, port, name, out):
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    mod = load(suite_dir, version, port)
    captured = io.StringIO()
    real_out, real_err = sys.stdout, sys.stderr

    class Tee(io.TextIOBase):
        def __init__(self, real):
            self.real = real

        def write(self, s):
            captured.write(s)
            return self.real.write(s)

        def flush(self):
            self.real.flush()

    sys.stdout, sys.stderr = Tee(real_out), Tee(real_err)
    result = Result()
    try:
        unittest.TestLoader().loadTestsFromName("Test." + name, mod).run(result)
    except BaseException:
        result.outcome, result.detail = "ERROR", traceback.format_exc()
    sys.stdout, sys.stderr = real_out, real_err
    printed = captured.getvalue()
    with open(out, "w") as f:
        json.dump({"test": name, "outcome": result.outcome,
                   "detail": result.detail, "printed": printed[-20000:]}, f, indent=1)
    real_out.flush()
    real_err.flush()
    os._exit(0)  # the bundled client's receiver threads must not keep the process alive


def table(results, brokers):
    totals = {}
    for version, title in (("311", "MQTT 3.1.1 (client_test.py)"), ("5", "MQTT 5 (client_test5.py)")):
        vdir = os.path.join(results, version)
        if not os.path.isdir(vdir):
            continue
        names_file = os.path.join(vdir, "tests.txt")
        names = open(names_file).read().split() if os.path.exists(names_file) else []
        cells = {}
        for b in brokers:
            for n in names:
                path = os.path.join(vdir, b, n + ".json")
                if os.path.exists(path):
                    r = json.load(open(path))
                    r["reason"] = reason_of(r)
                    cells[(b, n)] = r
                else:
                    cells[(b, n)] = {"outcome": "TIMEOUT", "reason": "no result (killed at the timeout)"}
        width = max([len(n) for n in names] + [4])
        print(f"\n{title}\n")
        print("| " + "test".ljust(width) + " | " + " | ".join(b.ljust(9) for b in brokers) + " |")
        print("|" + "-" * (width + 2) + "|" + "|".join("-" * 11 for _ in brokers) + "|")
        for n in names:
            print("| " + n.ljust(width) + " | " +
                  " | ".join(cells[(b, n)]["outcome"].ljust(9) for b in brokers) + " |")
        line = []
        for b in brokers:
            passed = sum(1 for n in names if cells[(b, n)]["outcome"] == "pass")
            totals.setdefault(b, [0, 0])
            totals[b][0] += passed
            totals[b][1] += len(names)
            line.append(f"{b} {passed}/{len(names)}")
        print("\npassed: " + ", ".join(line))
        failing = [(n, b) for n in names for b in brokers if cells[(b, n)]["outcome"] != "pass"]
        if failing:
            print("\nwhy (the exceptions each test that did not pass printed, last first):")
            for n, b in failing:
                print(f"  {n} [{b}]: {cells[(b, n)]['outcome']}: {cells[(b, n)]['reason'][:400]}")
    if totals:
        print("\ntotal passed: " + ", ".join(f"{b} {p}/{t}" for b, (p, t) in totals.items()))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "group":
        template, subjects_file, out = argv[2:5]
        group = open(template).read()
        doc = json.loads(group.replace("@SUBSCRIPTIONS@", "[]"))
        arns = [d["ThingArn"] for d in doc["DeviceDefinitionVersion"]["Devices"]]
        subjects = [l.strip() for l in open(subjects_file) if l.strip() and not l.startswith("#")]
        subs = [{"Id": f"s{i}-{j}-{k}", "Source": s, "Subject": subj, "Target": t}
                for i, s in enumerate(arns) for j, t in enumerate(arns) for k, subj in enumerate(subjects)]
        doc["SubscriptionDefinitionVersion"]["Subscriptions"] = subs
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)
    elif cmd == "freeport":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
        s.close()
    elif cmd == "list":
        print("\n".join(test_names(load(argv[2], argv[3], 0))))
    elif cmd == "run":
        run_one(argv[2], argv[3], int(argv[4]), argv[5], argv[6])
    elif cmd == "table":
        table(argv[2], argv[3:])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
