// The live dashboard (/dashboard): districts with their AQI, temperature and humidity, the live
// feed of /stream/readings, hourly charts of /aggregates (uPlot) and the pipeline's state.
// Every number comes from this API's own routes; URLs are relative, so the page follows the
// API's root path. No framework and no build step: this file is served as it is.
"use strict";

(function dashboard() {
  const KEY_STORAGE = "iot-pipeline.api-key";
  const FEED_LIMIT = 200; // rows kept in the live feed (and readings waiting to be drawn)
  const HOUR = 3600 * 1000;
  const EVERY = { sensors: 60e3, latest: 60e3, aqi: 120e3, pipeline: 10e3, chart: 120e3 };
  const CARD_METRICS = ["temperature", "humidity"];
  const METRIC_NAMES = {
    temperature: "Temperature",
    humidity: "Humidity",
    pm25: "PM2.5",
    pm10: "PM10",
    no2: "NO2",
    o3: "O3",
    co: "CO",
  };
  const byId = (id) => document.getElementById(id);
  const metricName = (metric) => METRIC_NAMES[metric] || metric;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const clock = (date, seconds = true) =>
    date.toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
      second: seconds ? "2-digit" : undefined,
      hourCycle: "h23",
    });

  // --- calls to the API, and its key ------------------------------------------------------

  let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
  let keyPrompt = null; // one prompt, shared by every call that was refused meanwhile

  class ApiError extends Error {
    constructor(status, detail) {
      super(`${detail} (${status})`);
      this.status = status;
    }
  }

  function headers(extra) {
    const all = { Accept: "application/json", ...extra };
    if (apiKey) all["X-API-Key"] = apiKey;
    return all;
  }

  function url(path, params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
      for (const item of [].concat(value)) {
        if (item !== undefined && item !== null && item !== "") query.append(name, item);
      }
    }
    const text = query.toString();
    return text ? `${path}?${text}` : path;
  }

  // A 401 shows the key dialog; the call goes on with the key the user gives.
  function askForKey(refused) {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => {
      const dialog = byId("key-dialog");
      const form = byId("key-form");
      const submit = (event) => {
        event.preventDefault();
        apiKey = byId("key-input").value.trim();
        sessionStorage.setItem(KEY_STORAGE, apiKey);
        byId("key-change").hidden = false;
        dialog.close();
      };
      // closed by a key or by Escape: the calls go on, and ask again if they still need it
      const closed = () => {
        form.removeEventListener("submit", submit);
        keyPrompt = null;
        resolve();
      };
      byId("key-message").textContent = refused
        ? "The API refused this key. Enter the right one (sent as X-API-Key, kept in this tab)."
        : "This API needs a key (sent as X-API-Key). It is kept in this tab only.";
      byId("key-input").value = "";
      form.addEventListener("submit", submit);
      dialog.addEventListener("close", closed, { once: true });
      dialog.showModal();
    });
    return keyPrompt;
  }

  async function problemDetail(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || response.statusText;
    } catch {
      return response.statusText || "error";
    }
  }

  async function api(path, params) {
    for (;;) {
      const sent = apiKey;
      const response = await fetch(url(path, params), { headers: headers(), cache: "no-store" });
      if (response.status === 401) {
        // a key entered while this call was out is tried before asking again
        if (apiKey === sent) await askForKey(Boolean(sent));
        continue;
      }
      if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
      return response.json();
    }
  }

  // --- the status line: when each part last worked, or what went wrong ---------------------

  const problems = new Map();

  function showStatus() {
    const status = byId("status");
    if (problems.size) {
      status.dataset.state = "problem";
      status.textContent = [...problems]
        .map(([part, error]) => `${part}: ${error.message}`)
        .join("; ");
    } else {
      status.dataset.state = "ok";
      status.textContent = `Updated ${clock(new Date())}`;
    }
  }

  function noteProblem(part, error) {
    const offline = error instanceof TypeError && /fetch/i.test(error.message); // fetch's own
    if (!(error instanceof ApiError) && !offline) console.error(part, error); // a bug of ours
    problems.set(part, offline ? new Error("the API is unreachable") : error);
  }

  // Runs `task` now and then every `ms`, never twice at once; a failure is shown, not thrown.
  async function every(ms, part, task) {
    try {
      await task();
      problems.delete(part);
    } catch (error) {
      noteProblem(part, error);
    }
    showStatus();
    setTimeout(() => every(ms, part, task), ms);
  }

  // --- districts ------------------------------------------------------------------------------

  const sensors = new Map(); // sensor_id -> the /sensors item
  const seen = new Map(); // sensor_id -> its metric, from /sensors, the readings and the stream
  const latest = new Map(); // sensor_id -> its newest valid reading {district, metric, value, ...}
  const aqiNow = new Map(); // district -> the /aqi hour shown
  const cards = new Map(); // district -> its card element
  const dirty = new Set(); // districts whose card needs drawing

  function card(district) {
    let element = cards.get(district);
    if (element) return element;
    element = document.createElement("article");
    element.className = "district";
    element.dataset.district = district;
    element.tabIndex = 0;
    element.innerHTML = `
      <h3></h3>
      <p class="aqi" data-role="aqi" data-category="">AQI -</p>
      <p class="aqi-detail" data-role="aqi-detail">no index yet</p>
      <dl>
        <dt>Temperature</dt><dd data-role="temperature">-</dd>
        <dt>Humidity</dt><dd data-role="humidity">-</dd>
      </dl>
      <p class="meta" data-role="sensors"></p>`;
    element.querySelector("h3").textContent = district;
    element.addEventListener("click", () => chartDistrict(district));
    element.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") chartDistrict(district);
    });
    cards.set(district, element);
    // alphabetical, whatever order districts are discovered in
    const names = [...cards.keys()].sort((a, b) => a.localeCompare(b));
    const next = cards.get(names[names.indexOf(district) + 1]);
    byId("districts").insertBefore(element, next || null);
    return element;
  }

  function role(element, name) {
    return element.querySelector(`[data-role="${name}"]`);
  }

  function drawCard(district) {
    const element = card(district);
    for (const metric of CARD_METRICS) {
      const values = [...latest.values()].filter(
        (r) => r.district === district && r.metric === metric,
      );
      const cell = role(element, metric);
      if (!values.length) {
        cell.textContent = "-";
        cell.dataset.value = "";
        continue;
      }
      const mean = values.reduce((sum, r) => sum + r.value, 0) / values.length;
      cell.textContent = `${mean.toFixed(1)} ${values[0].unit}`;
      cell.dataset.value = String(mean);
      const newest = new Date(Math.max(...values.map((r) => r.time)));
      cell.title = `mean of ${values.length} sensor(s), newest ${clock(newest)}`;
    }
    const own = [...sensors.values()].filter((s) => s.district === district);
    const online = own.filter((s) => s.status === "online").length;
    role(element, "sensors").textContent = own.length
      ? `${own.length} sensors, ${online} online`
      : "";
    drawAqi(element, aqiNow.get(district));
  }

  function textOn(colour) {
    // dark text on light colours (Good, Moderate), white on dark ones (Hazardous)
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111" : "#fff";
  }

  function drawAqi(element, hour) {
    const badge = role(element, "aqi");
    const detail = role(element, "aqi-detail");
    if (!hour) {
      badge.textContent = "AQI -";
      badge.dataset.category = "";
      badge.style.background = "";
      badge.style.color = "";
      detail.textContent = "no index yet";
      return;
    }
    badge.textContent = `AQI ${hour.aqi} ${hour.category}`;
    badge.dataset.category = hour.category;
    badge.dataset.aqi = String(hour.aqi);
    badge.style.background = hour.color;
    badge.style.color = textOn(hour.color);
    const [from, to] = [new Date(hour.hour_start), new Date(hour.hour_end)];
    detail.textContent = `${metricName(hour.dominant)}, ${clock(from, false)}-${clock(to, false)}`;
  }

  function drawDirty() {
    for (const district of dirty) drawCard(district);
    dirty.clear();
  }

  function noteSensor(sensorId, metric) {
    if (seen.has(sensorId)) return false;
    seen.set(sensorId, metric);
    return true;
  }

  function noteLatest(reading) {
    if (noteSensor(reading.sensor_id, reading.metric)) feed.newSensors = true;
    if (!cards.has(reading.district)) dirty.add(reading.district);
    if (!CARD_METRICS.includes(reading.metric)) return;
    const known = latest.get(reading.sensor_id);
    if (!reading.valid) {
      // the batch's verdict on the reading a card shows (a spike, say): it no longer counts
      if (known && known.eventId === reading.event_id) {
        latest.delete(reading.sensor_id);
        dirty.add(reading.district);
      }
      return;
    }
    const time = Date.parse(reading.event_time);
    if (known && known.time > time) return;
    latest.set(reading.sensor_id, {
      district: reading.district,
      metric: reading.metric,
      value: reading.value,
      unit: reading.unit,
      eventId: reading.event_id,
      time,
    });
    dirty.add(reading.district);
  }

  async function loadSensors() {
    const { items } = await api("sensors");
    for (const sensor of items) {
      sensors.set(sensor.sensor_id, sensor);
      noteSensor(sensor.sensor_id, sensor.metric);
      dirty.add(sensor.district);
    }
    drawDirty();
    fillSelects();
  }

  async function loadLatest() {
    const { items } = await api("readings/latest", { metric: CARD_METRICS });
    for (const reading of items) noteLatest(reading);
    drawDirty();
    fillSelects();
  }

  async function loadAqi() {
    // the current hour may not be aggregated yet: the latest of the last three with an index
    const start = new Date(Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR);
    const { items } = await api("aqi", { start: start.toISOString() });
    const newest = new Map();
    for (const hour of items) {
      if (hour.aqi === null) continue;
      const known = newest.get(hour.district);
      if (!known || known.hour_start < hour.hour_start) newest.set(hour.district, hour);
    }
    for (const district of new Set([...aqiNow.keys(), ...items.map((h) => h.district)])) {
      aqiNow.set(district, newest.get(district));
      dirty.add(district);
    }
    drawDirty();
  }

  // --- the pipeline -------------------------------------------------------------------------

  function ago(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 120) return `${seconds} s ago`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  async function loadPipeline() {
    const status = await api("pipeline/status");
    byId("pipeline-lag").textContent = status.total_lag.toLocaleString();
    byId("pipeline-lag").dataset.value = String(status.total_lag);
    const batch = byId("pipeline-last-batch");
    batch.textContent = status.last_batch
      ? `${status.last_batch.batch_id}, ${ago(status.last_batch.ingest_time)}`
      : "none yet";
    batch.dataset.batchId = status.last_batch ? status.last_batch.batch_id : "";
    const state = byId("pipeline-state");
    const troubles = [];
    if (status.failing_ranges.length) {
      troubles.push(`${status.failing_ranges.length} failing range(s)`);
    }
    if (status.quarantined_ranges) troubles.push(`${status.quarantined_ranges} quarantined`);
    state.dataset.state = status.stalled ? "stalled" : "ok";
    state.textContent = [status.stalled ? "stalled" : "keeping up", ...troubles].join(", ");
    byId("pipeline-dead-letters").textContent = status.dead_letters.toLocaleString();
  }

  // --- the chart ------------------------------------------------------------------------------

  const chart = { plot: null, shown: "", asked: "", ticket: 0 }; // shown, asked: selections

  function setOptions(select, values, label, keepFirst) {
    const kept = select.value;
    const fixed = keepFirst ? [select.options[0]] : [];
    select.replaceChildren(
      ...fixed,
      ...values.map((value) => new Option(label ? label(value) : value, value)),
    );
    if ([...select.options].some((o) => o.value === kept)) select.value = kept;
  }

  function fillSelects() {
    const known = new Set(seen.values());
    const districts = [...cards.keys()].sort((a, b) => a.localeCompare(b));
    // the network's metrics once it is known; until then every metric the API has
    const metrics = Object.keys(METRIC_NAMES).filter((m) => !known.size || known.has(m));
    setOptions(byId("feed-district"), districts, null, true);
    setOptions(byId("feed-metric"), metrics, metricName, true);
    const metric = byId("chart-metric");
    const hadMetric = metric.value;
    setOptions(metric, metrics, metricName, false);
    if (!hadMetric && metrics.includes("temperature")) metric.value = "temperature";
    fillChartKeys();
  }

  function fillChartKeys(reload = true) {
    const scope = byId("chart-scope").value;
    const metric = byId("chart-metric").value;
    const keys =
      scope === "district"
        ? [...cards.keys()].sort((a, b) => a.localeCompare(b))
        : [...seen]
            .filter(([, m]) => m === metric)
            .map(([sensorId]) => sensorId)
            .sort();
    byId("chart-key-label").textContent = scope === "district" ? "District" : "Sensor";
    setOptions(byId("chart-key"), keys, null, false);
    // a new selection (or the first one there can be) is drawn at once
    if (reload && chart.asked !== JSON.stringify(selection())) refreshChart();
  }

  function chartDistrict(district) {
    byId("chart-scope").value = "district";
    fillChartKeys(false);
    byId("chart-key").value = district;
    for (const [name, element] of cards) {
      element.setAttribute("aria-current", String(name === district));
    }
    refreshChart();
    byId("chart-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function refreshChart() {
    loadChart()
      .then(
        () => problems.delete("chart"),
        (error) => noteProblem("chart", error),
      )
      .finally(showStatus);
  }

  function selection() {
    return {
      scope: byId("chart-scope").value,
      key: byId("chart-key").value,
      metric: byId("chart-metric").value,
      hours: Number(byId("chart-range").value),
    };
  }

  async function loadChart() {
    const wanted = selection();
    if (!wanted.key || !wanted.metric) return;
    chart.asked = JSON.stringify(wanted);
    const ticket = ++chart.ticket;
    const first = Math.floor(Date.now() / HOUR) * HOUR - (wanted.hours - 1) * HOUR;
    const windows = [];
    let cursor = null;
    do {
      const page = await api("aggregates", {
        metric: wanted.metric,
        resolution: "1h",
        scope: wanted.scope,
        key: wanted.key,
        start: new Date(first).toISOString(),
        limit: 200,
        cursor,
      });
      windows.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && windows.length < 1000);
    if (ticket !== chart.ticket) return; // a newer selection was asked for meanwhile
    drawChart(wanted, first, windows);
  }

  // uPlot's date templates, on a 24-hour clock
  function clock24(template) {
    return uPlot.fmtDate(
      template
        .replace("{h}{aa}", "{HH}:{mm}")
        .replace("{h}", "{HH}")
        .replace(/\{aa?\}/g, ""),
    );
  }

  function drawChart(wanted, first, windows) {
    const slots = wanted.hours;
    const x = Array.from({ length: slots }, (_, i) => (first + i * HOUR) / 1000);
    const mean = new Array(slots).fill(null);
    const min = new Array(slots).fill(null);
    const max = new Array(slots).fill(null);
    let filled = 0;
    for (const aggregate of windows) {
      const slot = Math.round((Date.parse(aggregate.window_start) - first) / HOUR);
      if (slot < 0 || slot >= slots || aggregate.mean === null) continue;
      [mean[slot], min[slot], max[slot]] = [aggregate.mean, aggregate.min, aggregate.max];
      filled += 1;
    }
    const unit = windows.length ? windows[0].unit : "";
    const box = byId("chart");
    box.dataset.scope = wanted.scope;
    box.dataset.key = wanted.key;
    box.dataset.metric = wanted.metric;
    box.dataset.windows = String(filled);
    const what = `${metricName(wanted.metric)} of ${wanted.key}`;
    byId("chart-status").textContent = filled
      ? `${what}: hourly mean, with the hour's min-max band; ${filled} of ${slots} hours have ` +
        "valid readings."
      : `${what}: no valid reading in the last ${slots} hours.`;
    const data = [x, mean, min, max];
    const shown = JSON.stringify(wanted);
    if (chart.plot && chart.shown === shown) {
      chart.plot.setData(data);
      return;
    }
    if (chart.plot) chart.plot.destroy();
    chart.shown = shown;
    chart.plot = new uPlot(
      {
        width: Math.max(box.clientWidth, 300),
        height: 320,
        scales: { x: { time: true } },
        fmtDate: clock24,
        series: [
          {},
          { label: "mean", stroke: "#1f6feb", width: 2, points: { show: true, size: 5 } },
          { label: "min", stroke: "#7d98c7", dash: [4, 4] },
          { label: "max", stroke: "#7d98c7", dash: [4, 4] },
        ],
        bands: [{ series: [3, 2], fill: "rgba(31, 111, 235, 0.12)" }],
        axes: [{}, { label: `${metricName(wanted.metric)}${unit ? ` (${unit})` : ""}`, size: 60 }],
      },
      data,
      box,
    );
  }

  new ResizeObserver(() => {
    if (!chart.plot) return;
    chart.plot.setSize({ width: Math.max(byId("chart").clientWidth, 300), height: 320 });
  }).observe(byId("chart"));

  // --- the live feed: server-sent events read with fetch (EventSource sends no headers) ------

  const stream = { lastId: "", retry: 2000, failures: 0, controller: null, received: 0 };
  const feed = { rows: new Map(), waiting: [], timer: 0, newSensors: false };

  // An event-stream parser (the WHATWG format): lines end with \n, \r\n or \r; a blank line
  // dispatches the event; `id` is kept for Last-Event-ID; comments (`:`) are heartbeats.
  function eventStreamParser(dispatch) {
    let rest = "";
    let type = "";
    let data = [];
    return function push(chunk) {
      rest += chunk;
      const lines = rest.split(/\r\n|\n|\r(?!$)/); // a final \r may be half of a \r\n
      rest = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) dispatch(type || "message", data.join("\n"));
          type = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") type = value;
        else if (field === "id" && !value.includes("\0")) stream.lastId = value;
        else if (field === "retry" && /^\d+$/.test(value)) stream.retry = Number(value);
      }
    };
  }

  function setStream(state, text) {
    const status = byId("stream-status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function onEvent(type, data) {
    if (type === "reading") {
      let reading;
      try {
        reading = JSON.parse(data);
      } catch {
        return; // not a reading this page can show
      }
      stream.received += 1;
      feed.waiting.push(reading);
      if (feed.waiting.length > FEED_LIMIT) {
        feed.waiting.splice(0, feed.waiting.length - FEED_LIMIT);
      }
      noteLatest(reading);
      // drawn together a few times a second: the feed can bring hundreds of readings a second
      if (!feed.timer) feed.timer = setTimeout(drawFeed, 250);
    } else if (type === "gap") {
      byId("feed-note").textContent =
        "Some readings were missed while disconnected (they are in /readings).";
    }
    // `overflow` and `end` close the stream; the loop resumes from the last id
  }

  function feedRow(reading) {
    const row = document.createElement("li");
    Object.assign(row.dataset, {
      id: reading.id,
      eventId: reading.event_id,
      sensor: reading.sensor_id,
      district: reading.district,
      metric: reading.metric,
      provisional: String(reading.provisional),
      valid: String(reading.valid),
    });
    const time = document.createElement("time");
    time.dateTime = reading.event_time;
    time.textContent = clock(new Date(reading.event_time));
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = `${reading.district} - ${reading.sensor_id}`;
    where.title = where.textContent;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${metricName(reading.metric)} ${reading.value} ${reading.unit}`;
    const state = document.createElement("span");
    state.className = "state";
    const verdict = reading.provisional ? "provisional" : `stored by ${reading.batch_id}`;
    state.textContent = reading.flags.length ? `${verdict}; ${reading.flags.join(", ")}` : verdict;
    row.append(time, where, value, state);
    return row;
  }

  function drawFeed() {
    feed.timer = 0;
    const list = byId("feed");
    for (const reading of feed.waiting) {
      const row = feedRow(reading);
      const shown = feed.rows.get(reading.id);
      if (shown) {
        shown.replaceWith(row); // the stored reading replaces the provisional one
      } else {
        list.prepend(row);
      }
      feed.rows.set(reading.id, row);
    }
    feed.waiting = [];
    while (feed.rows.size > FEED_LIMIT && list.lastElementChild) {
      feed.rows.delete(list.lastElementChild.dataset.id);
      list.lastElementChild.remove();
    }
    // a reading comes twice, provisional then stored: this counts what the stream sent
    byId("feed-count").textContent = `${stream.received.toLocaleString()} events`;
    drawDirty();
    if (feed.newSensors) {
      feed.newSensors = false;
      fillSelects();
    }
  }

  async function readStream(body) {
    const push = eventStreamParser(onEvent);
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      push(value);
    }
  }

  async function runStream() {
    for (;;) {
      const sent = apiKey;
      let wait = stream.retry;
      stream.controller = new AbortController();
      try {
        const extra = { Accept: "text/event-stream" };
        if (stream.lastId) extra["Last-Event-ID"] = stream.lastId;
        const params = { district: byId("feed-district").value, metric: byId("feed-metric").value };
        const response = await fetch(url("stream/readings", params), {
          headers: headers(extra),
          cache: "no-store",
          signal: stream.controller.signal,
        });
        if (response.status === 401) {
          response.body?.cancel();
          if (apiKey === sent) await askForKey(Boolean(sent));
          continue;
        }
        if (!response.ok) {
          const detail = await problemDetail(response);
          if (response.status === 429) {
            wait = 1000 * Number(response.headers.get("Retry-After") || 5);
          } else if (response.status === 503) {
            wait = 30e3;
          }
          setStream("off", `not live: ${detail}`);
        } else {
          setStream("live", "live");
          stream.failures = 0;
          await readStream(response.body);
          setStream("reconnecting", "reconnecting");
        }
      } catch (error) {
        if (error.name === "AbortError") {
          wait = 0; // the filters changed: reconnect at once
        } else {
          stream.failures += 1;
          wait = Math.min(30e3, stream.retry * 2 ** Math.min(stream.failures - 1, 4));
          setStream("reconnecting", "connection lost; reconnecting");
        }
      }
      if (wait) await sleep(wait);
    }
  }

  function refilter() {
    stream.lastId = ""; // other filters: nothing to resume
    feed.rows.clear();
    feed.waiting = [];
    byId("feed").replaceChildren();
    byId("feed-note").textContent = "";
    stream.controller?.abort();
  }

  // --- start ----------------------------------------------------------------------------------

  function start() {
    for (const item of byId("aqi-legend").querySelectorAll("[data-color]")) {
      item.querySelector(".swatch").style.background = item.dataset.color;
    }
    byId("key-change").hidden = !apiKey;
    byId("key-change").addEventListener("click", () =>
      askForKey(false).then(() => location.reload()),
    );
    byId("chart-scope").addEventListener("change", () => fillChartKeys());
    byId("chart-metric").addEventListener("change", () => fillChartKeys());
    byId("chart-key").addEventListener("change", refreshChart);
    byId("chart-range").addEventListener("change", refreshChart);
    byId("feed-district").addEventListener("change", refilter);
    byId("feed-metric").addEventListener("change", refilter);
    for (const form of [byId("chart-form"), byId("feed-form")]) {
      form.addEventListener("submit", (event) => event.preventDefault());
    }
    // the sensors first: they name the districts, metrics and sensors of everything else
    every(EVERY.sensors, "sensors", loadSensors).then(() => {
      every(EVERY.latest, "latest readings", loadLatest);
      every(EVERY.aqi, "air quality", loadAqi);
      every(EVERY.pipeline, "pipeline", loadPipeline);
      every(EVERY.chart, "chart", loadChart);
      runStream();
    });
  }

  start();
})();
