// The resilient dashboard: renders the snapshots the server streams (Server-Sent Events).
// No dependencies, no build step; every text from the server goes through textContent.
"use strict";

(function () {
  const HISTORY = 60; // seconds kept per chart
  const STALE_AFTER = 5000; // ms without a frame: show "stale"
  const RECONNECT_AFTER = 12000; // ms without a frame: reconnect
  const STATE_LABELS = {
    closed: "CLOSED", open: "OPEN", half_open: "HALF-OPEN",
    forced_open: "FORCED OPEN", disabled: "DISABLED",
  };
  const cards = new Map(); // policy name -> card record
  const seenChanges = new Set();
  let source = null;
  let lastFrame = 0;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (k === "text") node.textContent = v;
        else if (k === "class") node.className = v;
        else node.setAttribute(k, v);
      }
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    if (value === 0) return "0";
    if (value < 1) return value.toFixed(2);
    if (value < 10) return value.toFixed(1);
    return Math.round(value).toLocaleString();
  }

  function pct(value) {
    return value === null || value === undefined ? "–" : Math.round(value * 100) + "%";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 1) return seconds.toFixed(2) + " s";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  // -- connection --------------------------------------------------------------------------

  function setConnection(status, text) {
    const node = $("connection");
    node.dataset.status = status;
    node.textContent = text;
  }

  function connect(planned) {
    if (source) source.close();
    if (!planned) setConnection("connecting", "connecting…");
    source = new EventSource("events");
    source.addEventListener("snapshot", (e) => frame(e.data, true));
    source.addEventListener("update", (e) => frame(e.data, false));
    // The server ends each stream after a while (so that it can stop quickly): come back.
    source.addEventListener("reconnect", () => connect(true));
    source.onopen = () => setConnection("live", "live");
    source.onerror = () => {
      setConnection("reconnecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
  }

  setInterval(() => {
    if (!lastFrame) return;
    const quiet = Date.now() - lastFrame;
    if (quiet > RECONNECT_AFTER) { lastFrame = Date.now(); connect(); }
    else if (quiet > STALE_AFTER && $("connection").dataset.status === "live") {
      setConnection("stale", "no update for " + Math.round(quiet / 1000) + " s");
    }
  }, 1000);

  function frame(text, whole) {
    let data;
    try { data = JSON.parse(text); } catch (err) { return; }
    lastFrame = Date.now();
    if (whole) document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
    if ($("connection").dataset.status !== "live") setConnection("live", "live");
    render(data, whole);
  }

  // -- rendering ---------------------------------------------------------------------------

  function render(data, whole) {
    if (data.title) { $("title").textContent = data.title; document.title = data.title; }
    if (data.version !== undefined) $("version").textContent = String(data.version);
    const error = $("error");
    if (data.error) { error.hidden = false; error.textContent = data.error; } else { error.hidden = true; }
    $("updated").textContent = new Date((data.time || Date.now() / 1000) * 1000).toLocaleTimeString();
    renderChanges(data.changes || [], whole);
    if (!Array.isArray(data.policies)) return;
    const main = $("cards");
    const present = new Set();
    let previous = null;
    for (const policy of data.policies) {
      present.add(policy.name);
      let card = cards.get(policy.name);
      if (!card) {
        card = makeCard(policy);
        cards.set(policy.name, card);
      }
      // keep the server's order
      const want = previous ? previous.nextSibling : main.firstChild;
      if (want !== card.root) main.insertBefore(card.root, want);
      previous = card.root;
      update(card, policy, whole);
    }
    for (const [name, card] of cards) {
      if (!present.has(name)) { card.root.remove(); cards.delete(name); }
    }
    if (!data.policies.length && !main.querySelector(".empty")) {
      main.appendChild(el("p", { class: "empty", text: "No policies." }));
    } else if (data.policies.length) {
      const empty = main.querySelector(".empty");
      if (empty) empty.remove();
    }
    summary(data.policies);
  }

  function summary(policies) {
    const node = $("summary");
    node.textContent = "";
    const open = policies.filter((p) => p.state === "open" || p.state === "forced_open").length;
    const half = policies.filter((p) => p.state === "half_open").length;
    let calls = 0, rejected = 0, retries = 0;
    for (const p of policies) {
      if (p.rates) { calls += p.rates.calls || 0; rejected += p.rates.rejected; retries += p.rates.retries; }
    }
    const item = (label, value, alert) => {
      const span = el("span", alert ? { class: "alert" } : null, [el("b", { text: value })]);
      span.appendChild(document.createTextNode(" " + label));
      node.appendChild(span);
    };
    item(policies.length === 1 ? "policy" : "policies", String(policies.length));
    item("open", String(open), open > 0);
    if (half) item("half-open", String(half), true);
    item("calls/s", rate(calls));
    item("rejected/s", rate(rejected), rejected > 0);
    item("retries/s", rate(retries));
  }

  function renderChanges(changes, whole) {
    const list = $("changes");
    let added = false;
    for (const change of changes) {
      const id = [change.time, change.policy, change.key, change.old, change.new].join("|");
      if (seenChanges.has(id)) continue;
      seenChanges.add(id);
      const none = list.querySelector(".none");
      if (none) none.remove();
      const when = new Date(change.time * 1000).toLocaleTimeString();
      const text = when + "  " + change.policy + (change.key ? " [" + change.key + "]" : "") + ": " +
        (STATE_LABELS[change.old] || change.old) + " → " + (STATE_LABELS[change.new] || change.new) +
        (change.why ? " (" + change.why + ")" : "");
      const item = el("li", { class: whole ? "" : "fresh", "data-state": String(change.new), text: text });
      list.insertBefore(item, list.firstChild);
      added = true;
    }
    while (added && list.children.length > 6) list.removeChild(list.lastChild);
  }

  function makeCard(policy) {
    const c = {};
    c.root = el("article", { class: "card", "data-policy": policy.name });
    c.name = el("h3", { text: policy.name });
    c.state = el("span", { class: "state" });
    c.since = el("span", { class: "since" });
    c.root.appendChild(el("div", { class: "head" }, [c.name, c.since, c.state]));
    c.steps = el("div", { class: "steps" });
    c.root.appendChild(c.steps);
    const number = (metric, label) => {
      const b = el("b", { text: "–" });
      const box = el("div", { class: "number", "data-metric": metric }, [b, el("small", { text: label })]);
      return { box, b };
    };
    c.calls = number("calls", "calls/s");
    c.rejected = number("rejected", "rejected/s");
    c.retries = number("retries", "retries/s");
    c.root.appendChild(el("div", { class: "numbers" }, [c.calls.box, c.rejected.box, c.retries.box]));
    c.reasons = el("div", { class: "reasons" });
    c.root.appendChild(c.reasons);
    c.rows = el("div", { class: "rows" });
    c.root.appendChild(c.rows);
    c.canvas = el("canvas", { class: "chart", "aria-hidden": "true" });
    c.root.appendChild(c.canvas);
    c.root.appendChild(el("div", { class: "legend" }, [
      el("span", { class: "l-calls", text: "calls" }),
      el("span", { class: "l-rejected", text: "rejected" }),
      el("span", { class: "l-retries", text: "retries" }),
      el("span", { text: "per second, last " + HISTORY + " s" }),
    ]));
    c.keys = el("div", { class: "keys" });
    c.root.appendChild(c.keys);
    c.series = new Map(); // second -> [calls, rejected, retries]
    c.lastState = undefined;
    return c;
  }

  function update(c, policy, whole) {
    const state = policy.state || null;
    c.root.dataset.state = state || "none";
    c.state.dataset.state = state || "none";
    c.state.textContent = state ? (STATE_LABELS[state] || state.toUpperCase()) : policy.kind.replace(/_/g, " ");
    if (c.lastState !== undefined && c.lastState !== state) {
      c.root.classList.remove("changed");
      void c.root.offsetWidth; // restart the animation
      c.root.classList.add("changed");
    }
    c.lastState = state;
    const breaker = policy.steps.find((s) => s.kind === "circuit_breaker" && s.state !== undefined);
    c.since.textContent = breaker && breaker.time_in_state !== null ? "for " + duration(breaker.time_in_state) : "";

    c.steps.textContent = "";
    for (const step of policy.steps) {
      c.steps.appendChild(el("span", { text: step.kind.replace(/_/g, " ") }));
    }

    const rates = policy.rates;
    c.calls.b.textContent = rates && rates.calls !== null ? rate(rates.calls) : "–";
    c.rejected.b.textContent = rates ? rate(rates.rejected) : "–";
    c.retries.b.textContent = rates ? rate(rates.retries) : "–";
    c.rejected.box.classList.toggle("hot", !!rates && rates.rejected > 0);
    c.retries.box.classList.toggle("hot", !!rates && rates.retries > 0);
    c.reasons.textContent = "";
    if (rates) {
      for (const [reason, value] of Object.entries(rates.rejections)) {
        const span = el("span", { "data-reason": reason }, [el("b", { text: rate(value) })]);
        span.appendChild(document.createTextNode(" " + reason.replace(/_/g, " ") + "/s"));
        c.reasons.appendChild(span);
      }
      if (rates.timeouts > 0) {
        c.reasons.appendChild(el("span", { "data-reason": "timeout", text: rate(rates.timeouts) + " timeouts/s" }));
      }
    }

    c.rows.textContent = "";
    for (const step of policy.steps) rows(c.rows, step);

    if (policy.history) merge(c, policy.history, whole);
    draw(c);
    keys(c.keys, policy.keys || []);
  }

  function row(parent, label, fraction, threshold, text, neutral) {
    const bar = el("div", { class: fraction === null ? "nobar" : neutral ? "bar neutral" : "bar" });
    if (fraction !== null) {
      const fill = el("i");
      fill.style.width = Math.max(0, Math.min(1, fraction)) * 100 + "%";
      bar.appendChild(fill);
      if (threshold !== null && threshold !== undefined) {
        const mark = el("u", { title: "threshold " + pct(threshold) });
        mark.style.left = "calc(" + Math.min(1, threshold) * 100 + "% - 1px)";
        bar.appendChild(mark);
        if (fraction >= threshold) bar.classList.add("over");
      } else if (fraction >= 0.9 && !neutral) {
        bar.classList.add("high");
      }
    }
    parent.appendChild(el("div", { class: "row" }, [el("span", { text: label }), bar, el("span", { text: text })]));
  }

  function rows(parent, step) {
    if (step.kind === "circuit_breaker" && step.failure_rate !== undefined) {
      row(parent, "failure rate", step.failure_rate, step.failure_rate_threshold,
        pct(step.failure_rate) + " / " + pct(step.failure_rate_threshold));
      row(parent, "slow calls", step.slow_call_rate, step.slow_call_rate_threshold,
        pct(step.slow_call_rate) + " / " + pct(step.slow_call_rate_threshold));
      const extra = step.calls + " calls (min. " + step.minimum_calls + ")";
      row(parent, "window", Math.min(1, step.calls / Math.max(1, step.minimum_calls)), null, extra, true);
      if (step.retry_after !== null && step.retry_after !== undefined) {
        row(parent, "probe in", null, null, duration(step.retry_after));
      }
    } else if (step.limit !== undefined && step.rate !== undefined) {
      const keyed = step.keys && step.keys.tracked > 0 && !step.own_key_used;
      if (step.remaining !== null && !keyed) {
        row(parent, "remaining", 1 - step.remaining / Math.max(1, step.limit), null,
          step.remaining + " / " + step.limit);
        row(parent, "retry after", null, null, step.retry_after ? duration(step.retry_after) : "now");
      } else if (keyed) {
        row(parent, "keys", null, null, step.keys.tracked + " active");
      } else {
        row(parent, "limit", null, null, step.rate.join(", ") + " (" + step.store + ")");
      }
    } else if (step.kind === "bulkhead" || step.kind === "adaptive_concurrency") {
      const slots = step.kind === "bulkhead" ? step.max_concurrent : step.limit;
      row(parent, "in flight", step.in_flight / Math.max(1, slots), null, step.in_flight + " / " + slots);
      if (step.max_queued) {
        row(parent, "queued", step.queued / Math.max(1, step.max_queued), null, step.queued + " / " + step.max_queued);
      } else if (step.queued) {
        row(parent, "queued", null, null, String(step.queued));
      }
    } else if (step.kind === "retry" && step.budget && step.budget.available !== undefined) {
      row(parent, "retry budget", null, null, Math.floor(step.budget.available) + " left");
    } else if (step.kind === "throttle" && step.reject_probability !== undefined) {
      row(parent, "throttling", step.reject_probability, null, pct(step.reject_probability));
    }
    if (step.error) row(parent, "error", null, null, step.error);
  }

  function keys(parent, busiest) {
    parent.textContent = "";
    for (const key of busiest) {
      const node = el("div", { class: "key", "data-key": key.key });
      node.appendChild(el("code", { text: key.key }));
      const bar = el("div", { class: "bar" });
      const fill = el("i");
      const used = 1 - key.remaining / Math.max(1, key.limit);
      fill.style.width = used * 100 + "%";
      bar.appendChild(fill);
      if (key.remaining === 0) { bar.classList.add("over"); node.classList.add("hot"); }
      else if (used >= 0.75) bar.classList.add("high");
      node.appendChild(bar);
      let text = key.remaining + " / " + key.limit + " left";
      if (key.retry_after) text += " · retry " + duration(key.retry_after);
      if (key.rejected) text += " · " + rate(key.rejected) + " rej/s";
      node.appendChild(el("small", { text: text }));
      parent.appendChild(node);
    }
  }

  // -- charts ------------------------------------------------------------------------------

  function merge(c, history, whole) {
    if (whole) c.series.clear();
    const n = history.calls.length;
    for (let i = 0; i < n; i++) {
      const second = history.end - n + 1 + i;
      c.series.set(second, [history.calls[i], history.rejected[i], history.retries[i]]);
    }
    c.end = Math.max(c.end || 0, history.end);
    for (const second of c.series.keys()) if (second <= c.end - HISTORY) c.series.delete(second);
  }

  function draw(c) {
    const canvas = c.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const styles = getComputedStyle(document.documentElement);
    ctx.strokeStyle = styles.getPropertyValue("--line");
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, height - 0.5); ctx.lineTo(width, height - 0.5); ctx.stroke();
    if (!c.end) return;
    let top = 1;
    for (const values of c.series.values()) top = Math.max(top, values[0], values[1], values[2]);
    const colours = ["--calls", "--rejected", "--retries"];
    for (let s = 0; s < 3; s++) {
      ctx.strokeStyle = styles.getPropertyValue(colours[s]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let i = 0; i < HISTORY; i++) {
        const second = c.end - HISTORY + 1 + i;
        const values = c.series.get(second);
        const v = values ? values[s] : 0;
        const x = (i / (HISTORY - 1)) * (width - 2) + 1;
        const y = height - 2 - (v / top) * (height - 6);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    ctx.fillStyle = styles.getPropertyValue("--muted");
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(String(top), 2, 10);
  }

  window.addEventListener("resize", () => { for (const c of cards.values()) draw(c); });
  connect();
})();
