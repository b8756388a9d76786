"use strict";
// The status page's script: polls api/status and renders it. Everything that came from the
// gateway (names, log lines, errors) enters the document only as text nodes or attribute
// values, never as markup; the Content-Security-Policy allows this script by its hash only.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);
  // Component logs the reader opened or closed; the others open while the component is down.
  const toggledLogs = new Map();
  let pollSecs = 5;

  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + String(m).padStart(2, "0") + "m";
    if (m > 0) return m + "m " + String(s).padStart(2, "0") + "s";
    return s + "s";
  }

  function memory(kib) {
    if (kib === null || kib === undefined) return "–";
    if (kib < 1024) return kib + " KiB";
    const mib = kib / 1024;
    return (mib < 100 ? mib.toFixed(1) : Math.round(mib)) + " MiB";
  }

  function rate(r) {
    if (r >= 100) return Math.round(r) + "/s";
    if (r >= 10) return r.toFixed(1) + "/s";
    return r.toFixed(2) + "/s";
  }

  const count = (n) => Number(n).toLocaleString("en-US");

  function card(label, value, sub, tone) {
    return el("div", { class: "card" + (tone ? " " + tone : "") },
      el("div", { class: "label" }, label),
      el("div", { class: "value" }, value),
      sub ? el("div", { class: "sub" }, sub) : null);
  }

  function badge(text) {
    return el("span", { class: "badge " + String(text).toLowerCase() }, text);
  }

  // Message rates in and out as two lines over the same scale; the newest point is right.
  function sparkline(rateIn, rateOut, samples, sampleSecs) {
    const w = 180, h = 34, pad = 2;
    const n = Math.max(samples - 1, 1);
    const peak = Math.max(0, ...rateIn, ...rateOut);
    // Headroom above the peak, so a steady rate is not drawn on the top edge.
    const max = Math.max(1, peak * 1.15);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", 0); axis.setAttribute("x2", w);
    axis.setAttribute("y1", h - pad); axis.setAttribute("y2", h - pad);
    svg.append(axis);
    for (const [cls, values] of [["in", rateIn], ["out", rateOut]]) {
      if (values.length === 0) continue;
      const points = values.map((v, i) => {
        const x = w - (values.length - 1 - i) * (w / n);
        const y = h - pad - (v / max) * (h - 2 * pad);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      // A single interval still draws a short line.
      if (points.length === 1) points.unshift((w - w / n).toFixed(1) + "," + points[0].split(",")[1]);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", cls);
      line.setAttribute("points", points.join(" "));
      svg.append(line);
    }
    const title = document.createElementNS(SVG, "title");
    title.textContent = "messages per second over the last " + duration(n * sampleSecs * 1000) +
      " (peak " + rate(peak) + ")";
    svg.append(title);
    return svg;
  }

  // "<file> (group version <id>)" as the file's name over the version; other labels whole.
  function groupCard(group) {
    const m = /^(.*) \(group version ([0-9a-f]+)\)$/.exec(group);
    if (!m) return card("Group", group, null, null);
    const file = m[1].split("/").pop() || m[1];
    return el("div", { class: "card", title: group },
      el("div", { class: "label" }, "Group"),
      el("div", { class: "value" }, file),
      el("div", { class: "sub" }, "version " + m[2]));
  }

  function renderSummary(doc) {
    const rt = doc.runtime, c = rt.counts;
    const notRunning = c.components - c.running;
    const cloud = rt.cloudLink;
    const spoolDrops = cloud ? cloud.drops.handOffFull + cloud.drops.spoolFull + cloud.drops.notStored : 0;
    byId("summary").replaceChildren(
      card("Version", rt.version, "pid " + rt.pid),
      card("Uptime", duration(rt.uptimeMs), "memory " + memory(rt.rssKib)),
      card("Components", c.running + " / " + c.components + " running",
        [c.failed ? c.failed + " failed" : null, c.backoff ? c.backoff + " backing off" : null,
          c.starting ? c.starting + " starting" : null, c.subscriptions + " subscriptions"]
          .filter(Boolean).join(", "),
        c.failed ? "bad" : (notRunning ? "warn" : null)),
      card("Cloud", cloud ? cloud.state : "not configured",
        cloud ? count(cloud.spooled) + " spooled" + (spoolDrops ? ", " + count(spoolDrops) + " lost" : "") : null,
        cloud && cloud.state !== "connected" ? "warn" : null),
      card("Devices", rt.mqtt ? count(rt.mqtt.connected) + " connected" : "–",
        rt.mqtt ? count(rt.mqtt.publishes.received) + " publishes in" : null),
      groupCard(rt.group));
  }

  function renderComponents(doc) {
    // The whole window, so a young runtime's lines start part-way and grow to the left.
    const samples = doc.samplePoints + 1;
    const rows = doc.components.map((c) => {
      const lastIn = c.rateIn.length ? c.rateIn[c.rateIn.length - 1] : 0;
      const lastOut = c.rateOut.length ? c.rateOut[c.rateOut.length - 1] : 0;
      return el("tr", { "data-component": c.name, class: c.state === "Failed" ? "failed" : null },
        el("td", { title: c.arn }, el("div", { class: "name" }, c.name),
          el("div", { class: "kind" }, c.kind + (c.pid ? " · pid " + c.pid : "") +
            (c.uptimeMs !== null && c.uptimeMs !== undefined ? " · up " + duration(c.uptimeMs) : ""))),
        el("td", null, badge(c.state)),
        el("td", { class: "num" }, count(c.restarts)),
        el("td", { class: "num" }, memory(c.rssKib)),
        el("td", { class: "num" }, c.cpuPercent === null || c.cpuPercent === undefined ? "–" : c.cpuPercent.toFixed(1) + " %"),
        el("td", { class: "num" }, count(c.messagesIn)),
        el("td", { class: "num" }, count(c.messagesOut)),
        el("td", null, c.rateIn.length
          ? sparkline(c.rateIn, c.rateOut, samples, doc.sampleSecs)
          : el("span", { class: "rate" }, "collecting…"),
          el("div", { class: "rate" }, "in " + rate(lastIn) + " · out " + rate(lastOut))),
        el("td", { class: "num" }, count(c.queueDepth)),
        el("td", { class: "num" + (c.drops ? " drops" : "") }, count(c.drops)),
        el("td", { class: "exit" }, c.lastExit || "–"));
    });
    if (rows.length === 0) rows.push(el("tr", null, el("td", { colspan: 11, class: "muted" }, "No components are deployed.")));
    byId("components").tBodies[0].replaceChildren(...rows);
    byId("component-count").textContent = "(" + doc.components.length + ")";
  }

  function renderDeployments(doc) {
    const rows = doc.deployments.map((d) => el("tr", null,
      el("td", { class: "when" }, String(d.CreatedAt).replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")),
      el("td", null, badge(d.DeploymentStatus), d.RolledBack ? el("div", { class: "kind" }, "rolled back") : null),
      el("td", null, d.DeploymentType.replace("Deployment", "")),
      el("td", { title: d.GroupVersion || "" }, d.GroupVersion ? d.GroupVersion.slice(0, 12) : "–"),
      el("td", { class: "exit" }, d.ErrorMessage || "")));
    if (rows.length === 0) rows.push(el("tr", null, el("td", { colspan: 5, class: "muted" }, "No deployments recorded yet.")));
    byId("deployments").tBodies[0].replaceChildren(...rows);
  }

  function renderLinks(doc) {
    const rt = doc.runtime, items = [];
    const fact = (k, v) => items.push(el("dt", null, k), el("dd", null, v));
    fact("Cloud", rt.cloud);
    if (rt.cloudLink) {
      const d = rt.cloudLink.drops;
      fact("Spool depth", count(rt.cloudLink.spooled) + " messages");
      fact("Spool drops", count(d.spoolFull) + " spool full, " + count(d.handOffFull) + " hand-off full, " +
        count(d.notStored) + " not stored");
    }
    if (rt.mqtt) {
      const m = rt.mqtt;
      fact("Devices", count(m.connected) + " connected, " + count(m.connections.accepted) + " connections accepted");
      fact("Publishes", count(m.publishes.received) + " in, " + count(m.publishes.routed) + " routed, " +
        count(m.publishes.delivered) + " delivered");
      fact("Refused", count(m.connections.refusedNotAuthorized) + " not authorized connections, " +
        count(m.drops.notAuthorized) + " unauthorized publishes");
    }
    fact("Log lines dropped", count(rt.logLinesDropped));
    byId("links").replaceChildren(...items);
  }

  function logLines(lines) {
    return lines.map((line) => el("div",
      { class: /\[(ERROR|FATAL)\]/.test(line) ? "err" : (/\[WARN\]/.test(line) ? "warn" : null) }, line));
  }

  function renderLogs(doc) {
    // The newest line in view, unless the reader scrolled up to read older ones.
    const log = byId("log");
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.replaceChildren(...logLines(doc.log));
    if (atEnd) log.scrollTop = log.scrollHeight;
    byId("log-file").textContent = doc.runtime.logFile || "";
    const blocks = doc.components.map((c) => {
      const details = el("details", { "data-component": c.name },
        el("summary", null, c.name + " ", el("span", { class: "muted" }, "(" + c.log.length + " lines, " + c.logFile + ")")),
        el("div", { class: "log" }, ...logLines(c.log)));
      const down = c.state === "Failed" || c.state === "Backoff";
      details.open = toggledLogs.has(c.arn) ? toggledLogs.get(c.arn) : down;
      // Only a reader's click counts: a "toggle" for the value just set is not one.
      const initial = details.open;
      details.addEventListener("toggle", () => {
        if (details.open !== initial || toggledLogs.has(c.arn)) toggledLogs.set(c.arn, details.open);
      });
      return details;
    });
    byId("component-logs").replaceChildren(...blocks);
  }

  function banner(text) {
    const b = byId("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  function render(doc) {
    document.title = doc.title + " · Evergreen status";
    byId("title").textContent = doc.title;
    renderSummary(doc);
    renderComponents(doc);
    renderDeployments(doc);
    renderLinks(doc);
    renderLogs(doc);
    byId("updated").textContent = "updated " + new Date().toLocaleTimeString() + " · every " + pollSecs + " s";
    document.body.setAttribute("data-rendered", String(Date.now()));
  }

  async function poll() {
    try {
      const answer = await fetch("api/status", { cache: "no-store", credentials: "same-origin" });
      if (answer.status === 401) {
        banner("This browser has no valid token any more: on the gateway, run `evergreen status --page-url` and open the URL it prints.");
      } else if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        banner("The runtime did not answer (" + answer.status + "): " + (body.error || "no reason given") + ". Showing the last data.");
      } else {
        const doc = await answer.json();
        pollSecs = Math.max(2, doc.sampleSecs);
        render(doc);
        banner(null);
      }
    } catch (e) {
      banner("Cannot reach the gateway (" + e.message + "). Showing the last data; retrying.");
    }
    setTimeout(poll, pollSecs * 1000);
  }

  poll();
})();
