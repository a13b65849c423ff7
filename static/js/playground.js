/* Tollgate Playground: streams a chat through the public /v1 API with a short-lived, session-bound credential
   that this script fetches from the dashboard (never an API key, never in the page source). Stop aborts the
   request; the server sees the disconnect and settles what was produced (receipt "partial"). No dependencies. */
(function () {
  "use strict";

  var root = document.getElementById("playground");
  if (!root || !window.fetch || !window.AbortController || !window.TextDecoder) return;

  function $(id) { return document.getElementById(id); }
  var el = {
    settings: $("pg-settings"), model: $("pg-model"), price: $("pg-model-price"), system: $("pg-system"),
    temperature: $("pg-temperature"), maxTokens: $("pg-max-tokens"), testMode: $("pg-test-mode"),
    scenario: $("pg-scenario"), scenarioField: $("pg-scenario-field"), badge: $("pg-mode-badge"),
    transcript: $("pg-transcript"), empty: $("pg-empty"), compose: $("pg-compose"), message: $("pg-message"),
    send: $("pg-send"), stop: $("pg-stop"), clear: $("pg-clear"), status: $("pg-status"), stats: $("pg-stats")
  };
  var csrf = el.settings.querySelector("input[name=csrfmiddlewaretoken]").value;
  var history = [];           /* the conversation so far: {role, content} */
  var credential = null;      /* {token, mode, expiresAt}: kept in memory only, for the minutes it lives */
  var controller = null;      /* the AbortController of the request in flight */
  var REFRESH_BEFORE_MS = 30000;

  function mode() { return el.testMode.checked ? "test" : "live"; }

  function setStatus(text, kind) {
    el.status.textContent = text || "";
    el.status.className = "pg-status" + (kind ? " " + kind : "");
  }

  function bubble(role, text) {
    if (el.empty) { el.empty.remove(); el.empty = null; }
    var box = document.createElement("div");
    box.className = "pg-msg pg-" + role;
    box.setAttribute("data-role", role);
    var who = document.createElement("div");
    who.className = "pg-who";
    who.textContent = role === "user" ? "You" : el.model.value;
    var body = document.createElement("div");
    body.className = "pg-text";
    body.textContent = text;
    box.appendChild(who);
    box.appendChild(body);
    el.transcript.appendChild(box);
    el.transcript.scrollTop = el.transcript.scrollHeight;
    return body;
  }

  function showError(where, status, error) {
    var note = document.createElement("div");
    note.className = "pg-error";
    note.setAttribute("role", "alert");
    note.textContent = (status ? status + " " : "") + (error.code ? error.code + ": " : "") + (error.message || "The request failed.");
    where.parentNode.appendChild(note);
  }

  function busy(on) {
    el.send.disabled = on;
    el.stop.disabled = !on;
    el.message.disabled = on;
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  /* ---- the credential --------------------------------------------------------------------------------- */

  async function token(fresh) {
    var wanted = mode();
    if (!fresh && credential && credential.mode === wanted && credential.expiresAt - Date.now() > REFRESH_BEFORE_MS) {
      return credential.token;
    }
    credential = null;
    var response = await fetch(root.getAttribute("data-token-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: "mode=" + encodeURIComponent(wanted)
    });
    var type = response.headers.get("Content-Type") || "";
    if (response.redirected || type.indexOf("application/json") !== 0) {
      throw new Error("Your session has ended. Reload the page and log in again.");
    }
    var body = await response.json();
    if (!response.ok) throw new Error(body.error || "The Playground could not start a session.");
    credential = { token: body.token, mode: body.mode, expiresAt: Date.now() + body.expires_in * 1000 };
    return credential.token;
  }

  async function post(payload, retried) {
    var headers = { "Authorization": "Bearer " + (await token(retried)), "Content-Type": "application/json" };
    var scenario = mode() === "test" ? el.scenario.value : "";
    if (scenario) headers[root.getAttribute("data-scenario-header")] = scenario;
    var response = await fetch(root.getAttribute("data-api-url"), {
      method: "POST",
      credentials: "same-origin", /* the credential works only with this session's cookie */
      headers: headers,
      body: JSON.stringify(payload),
      signal: controller.signal
    });
    if (response.status === 401 && !retried) return post(payload, true); /* expired meanwhile: once more */
    return response;
  }

  /* ---- the stream ------------------------------------------------------------------------------------- */

  async function relay(response, onData) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var part = await reader.read();
      if (part.done) return;
      buffer += decoder.decode(part.value, { stream: true });
      var end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        var frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        frame.split("\n").forEach(function (line) {
          if (line.indexOf("data: ") === 0) onData(line.slice(6));
        });
      }
    }
  }

  function payload() {
    var messages = [];
    if (el.system.value.trim()) messages.push({ role: "system", content: el.system.value });
    var body = {
      model: el.model.value,
      messages: messages.concat(history),
      stream: true,
      stream_options: { include_usage: true }
    };
    var temperature = parseFloat(el.temperature.value);
    if (!isNaN(temperature)) body.temperature = temperature;
    var maxTokens = parseInt(el.maxTokens.value, 10);
    if (!isNaN(maxTokens)) body.max_tokens = maxTokens;
    return body;
  }

  async function receipt(requestId, attempts) {
    var url = root.getAttribute("data-receipt-url").replace("REQUEST_ID", encodeURIComponent(requestId));
    for (var i = 0; i < attempts; i++) { /* bounded: a stopped stream is settled moments after it stops */
      var response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) return response.json();
      await sleep(250);
    }
    return null;
  }

  function showStats(r) {
    var cell = function (name) { return el.stats.querySelector('[data-stat="' + name + '"]'); };
    cell("tokens").textContent = r.prompt_tokens.toLocaleString("en-US") + " in · " +
      r.completion_tokens.toLocaleString("en-US") + " out";
    cell("cost").textContent = r.cost + (r.is_test ? " (test: not charged)" : "");
    cell("latency").textContent = r.latency_ms.toLocaleString("en-US") + " ms" +
      (r.ttft_ms !== null ? " · first token " + r.ttft_ms.toLocaleString("en-US") + " ms" : "");
    var where = cell("receipt");
    where.textContent = "";
    var ref = document.createElement(r.url ? "a" : "code");
    ref.textContent = r.id;
    if (r.url) ref.href = r.url;
    where.appendChild(ref);
    var state = document.createElement("span");
    state.className = "badge " + (r.status === "succeeded" ? "ok" : r.status === "failed" ? "bad" : "warn");
    state.setAttribute("data-testid", "pg-receipt-status");
    state.textContent = r.status;
    where.appendChild(document.createTextNode(" "));
    where.appendChild(state);
    el.stats.hidden = false;
  }

  async function send(text) {
    history.push({ role: "user", content: text });
    bubble("user", text);
    var out = bubble("assistant", "");
    out.parentNode.classList.add("pg-streaming");
    controller = new AbortController();
    busy(true);
    el.stats.hidden = true;
    setStatus("Streaming…");
    var reply = "", requestId = null, failure = null, failureStatus = 0, stopped = false, finished = false;
    try {
      var response = await post(payload(), false);
      requestId = response.headers.get("X-Request-Id");
      if (!response.ok) {
        failureStatus = response.status;
        var body = await response.json().catch(function () { return {}; });
        failure = body.error || { message: "HTTP " + response.status };
      } else {
        await relay(response, function (data) {
          if (data === "[DONE]") { finished = true; return; }
          var chunk = JSON.parse(data);
          if (chunk.error) { failure = chunk.error; return; }
          var choice = chunk.choices && chunk.choices[0];
          var piece = choice && choice.delta && choice.delta.content;
          if (piece) { reply += piece; out.textContent = reply; el.transcript.scrollTop = el.transcript.scrollHeight; }
        });
      }
    } catch (err) {
      if (err.name === "AbortError") stopped = true;
      else failure = { message: err.message };
    } finally {
      controller = null;
      busy(false);
      out.parentNode.classList.remove("pg-streaming");
      el.message.focus();
    }
    if (reply) history.push({ role: "assistant", content: reply });
    else out.textContent = stopped ? "(stopped before the first token)" : "";
    if (failure) showError(out, failureStatus, failure);
    if (stopped) setStatus("Stopped. You pay only for what was produced; the receipt is partial.", "warn");
    else if (failure) setStatus("The request failed" + (failureStatus ? " with " + failureStatus : " mid-stream") + ".", "bad");
    else if (finished) setStatus("Done.", "ok");
    if (!requestId) return;
    /* refusals before the upstream call (400–429) write no receipt; everything else has one */
    var expectReceipt = !(failureStatus >= 400 && failureStatus < 500);
    var r = expectReceipt ? await receipt(requestId, stopped ? 40 : 12) : null;
    if (r) showStats(r);
    else if (!expectReceipt) setStatus(el.status.textContent + " Nothing was charged.", "bad");
  }

  /* ---- wiring ----------------------------------------------------------------------------------------- */

  el.compose.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = el.message.value.trim();
    if (!text || controller) return;
    el.message.value = "";
    send(text);
  });
  el.message.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); el.compose.requestSubmit(); }
  });
  el.stop.addEventListener("click", function () { if (controller) controller.abort(); });
  el.clear.addEventListener("click", function () {
    if (controller) controller.abort();
    history = [];
    el.transcript.textContent = "";
    el.stats.hidden = true;
    setStatus("");
  });

  function showMode() {
    var test = mode() === "test";
    el.scenarioField.hidden = !test;
    el.badge.innerHTML = test ? '<span class="badge info">test · free</span>' : '<span class="badge brand">live · paid from the wallet</span>';
  }
  el.testMode.addEventListener("change", showMode);
  showMode();

  function showModel() {
    var option = el.model.options[el.model.selectedIndex];
    if (!option) return;
    el.price.textContent = option.getAttribute("data-price") || "";
    var max = parseInt(option.getAttribute("data-max-output"), 10);
    if (!isNaN(max)) {
      el.maxTokens.max = max;
      if (parseInt(el.maxTokens.value, 10) > max) el.maxTokens.value = max;
    }
  }
  el.model.addEventListener("change", showModel);
  showModel();
})();
