/* Tollgate dashboard: dialogs, copy buttons, tabs, phone nav and live updates. No dependencies. */
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  /* dialogs: <button data-dialog-open="id">, <button data-dialog-close>, <dialog data-open-on-load> */
  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-dialog-open]");
    if (opener) {
      var d = document.getElementById(opener.getAttribute("data-dialog-open"));
      if (d && d.showModal) { e.preventDefault(); d.showModal(); var f = $("input:not([type=hidden]),select,textarea", d); if (f) f.focus(); }
      return;
    }
    var closer = e.target.closest("[data-dialog-close]");
    if (closer) { var dlg = closer.closest("dialog"); if (dlg) { e.preventDefault(); dlg.close(); } }
  });
  $$("dialog[data-open-on-load]").forEach(function (d) { if (d.showModal) d.showModal(); });
  /* a page answering a POST (e.g. the one-time secret) swaps its URL, so a reload is a GET, never a re-POST */
  var replace = $("[data-replace-url]");
  if (replace && window.history.replaceState) window.history.replaceState(null, "", replace.getAttribute("data-replace-url"));

  /* copy buttons: data-copy="#selector" copies that element's text */
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("[data-copy]");
    if (!btn) return;
    var src = $(btn.getAttribute("data-copy"));
    if (!src) return;
    var text = src.value !== undefined && src.tagName !== "CODE" && src.tagName !== "PRE" ? src.value : src.textContent;
    var done = function () {
      /* change only the words, so the icon beside them stays */
      var label = btn.querySelector("[data-copy-label]");
      if (!label) {
        label = document.createElement("span");
        label.setAttribute("data-copy-label", "");
        Array.prototype.slice.call(btn.childNodes).forEach(function (n) {
          if (n.nodeType === 3 && n.textContent.trim()) { label.textContent += n.textContent.trim(); btn.removeChild(n); }
        });
        btn.appendChild(label);
      }
      if (!btn.hasAttribute("data-label")) btn.setAttribute("data-label", label.textContent);
      label.textContent = "Copied";
      clearTimeout(btn._copyTimer);
      btn._copyTimer = setTimeout(function () { label.textContent = btn.getAttribute("data-label"); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text.trim()).then(done, function () { fallbackCopy(src, done); });
    } else { fallbackCopy(src, done); }
  });
  function fallbackCopy(el, done) {
    var ta = document.createElement("textarea");
    ta.value = el.textContent.trim(); ta.setAttribute("readonly", ""); ta.style.position = "absolute"; ta.style.left = "-9999px";
    document.body.appendChild(ta); ta.select();
    try { document.execCommand("copy"); done(); } catch (err) { /* the text is selectable anyway */ }
    document.body.removeChild(ta);
  }

  /* confirmations for dangerous forms: <form data-confirm="…"> (dialogs cover the main ones) */
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  /* tabs (delegated, so regions refreshed live keep working): [data-tabs] > [role=tab][aria-controls] */
  function selectTab(tab) {
    var box = tab.closest("[data-tabs]");
    $$("[role=tab]", box).forEach(function (t) {
      var on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      var panel = document.getElementById(t.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
  }
  document.addEventListener("click", function (e) {
    var tab = e.target.closest("[data-tabs] [role=tab]");
    if (tab) selectTab(tab);
  });
  document.addEventListener("keydown", function (e) {
    var tab = e.target.closest && e.target.closest("[data-tabs] [role=tab]");
    var n = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!tab || !n) return;
    var tabs = $$("[role=tab]", tab.closest("[data-tabs]"));
    var next = tabs[(tabs.indexOf(tab) + n + tabs.length) % tabs.length];
    selectTab(next); next.focus();
  });

  /* phone navigation */
  var toggle = $("[data-nav-toggle]");
  if (toggle) toggle.addEventListener("click", function () {
    var open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  /* auto-submit selects: <select data-autosubmit> */
  $$("[data-autosubmit]").forEach(function (el) { el.addEventListener("change", function () { el.form.submit(); }); });

  /* history back without a javascript: URL: <button data-history-back> */
  $$("[data-history-back]").forEach(function (el) { el.addEventListener("click", function () { history.back(); }); });

  /* polled regions: <section id="x" data-poll="2000"> is re-fetched until the server drops data-poll (bounded) */
  $$("[data-poll][id]").forEach(function (el) {
    var every = parseInt(el.getAttribute("data-poll"), 10) || 3000, left = 150;
    function tick() {
      if (--left < 0 || !el.hasAttribute("data-poll")) return;
      setTimeout(function () {
        fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "poll" } })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            var fresh = html && new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
            if (fresh) {
              el.innerHTML = fresh.innerHTML;
              if (!fresh.hasAttribute("data-poll")) el.removeAttribute("data-poll");
            }
            tick();
          })
          .catch(tick);
      }, every);
    }
    tick();
  });

  /* ---- live updates over the team websocket ---- */
  var team = document.body.getAttribute("data-team");
  if (!team || !("WebSocket" in window)) return;
  var status = $("[data-live-status]");
  var refreshTimer = null;
  var attempts = 0;

  function setStatus(text, cls) { if (status) { status.textContent = text; status.className = "badge dot " + cls; } }

  function applyBalance(b) {
    ["balance", "held", "available"].forEach(function (k) {
      $$('[data-live="' + k + '"]').forEach(function (el) {
        if (el.textContent !== b[k]) { el.textContent = b[k]; el.classList.remove("flash-live"); void el.offsetWidth; el.classList.add("flash-live"); }
      });
    });
  }

  function fill(node, r) {
    $$("[data-field]", node).forEach(function (el) {
      var f = el.getAttribute("data-field");
      if (f === "link") {
        var parts = r.id.split("_"); var rest = parts.slice(1).join("_");
        el.href = r.url; el.title = r.id; el.textContent = rest.length > 12 ? parts[0] + "_…" + rest.slice(-8) : r.id; return;
      }
      if (f === "status") {
        el.textContent = r.status;
        el.className = "badge " + (r.status === "succeeded" ? "ok" : r.status === "failed" ? "bad" : "warn");
        return;
      }
      if (f === "test-marker" || f === "not-charged") { el.hidden = !r.is_test; return; }
      if (f === "cost") {
        el.textContent = r.cost;
        if (r.is_test) { el.className = "muted"; el.title = "What it would cost with a live key. Test requests are never charged."; }
        return;
      }
      var v = r[f];
      el.textContent = typeof v === "number" ? v.toLocaleString("en-US") : (v || "—");
    });
  }

  function addReceipt(r) {
    $$("[data-live-receipts]").forEach(function (tbody) {
      if ($('[data-receipt="' + r.id + '"]', tbody)) return;
      /* Billing lists charges (test requests never are one); Usage lists the mode it reports on */
      var mode = tbody.getAttribute("data-live-mode");
      if (mode && (mode === "test") !== !!r.is_test) return;
      var tpl = document.getElementById(tbody.getAttribute("data-live-receipts"));
      if (!tpl) return;
      var row = tpl.content.firstElementChild.cloneNode(true);
      row.setAttribute("data-receipt", r.id);
      if (r.is_test) row.setAttribute("data-test", "");
      fill(row, r);
      row.classList.add("flash-live");
      tbody.insertBefore(row, tbody.firstChild);
      var limit = parseInt(tbody.getAttribute("data-live-limit") || "0", 10);
      while (limit && tbody.children.length > limit) tbody.removeChild(tbody.lastElementChild);
      var box = tbody.closest("[data-live-box]");
      if (box) { box.hidden = false; var empty = document.getElementById(box.getAttribute("data-live-box")); if (empty) empty.hidden = true; }
    });
  }

  function refreshRegions() {
    var regions = $$("[data-live-refresh]");
    if (!regions.length) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          regions.forEach(function (el) {
            var fresh = doc.getElementById(el.id);
            if (fresh) el.innerHTML = fresh.innerHTML;
          });
        })
        .catch(function () { /* the next update retries */ });
    }, 400);
  }

  function connect() {
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + window.location.host + "/ws/team/" + team + "/");
    ws.onopen = function () { attempts = 0; setStatus("Live updates", "ok"); document.body.setAttribute("data-live-ready", "1"); };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (err) { return; }
      if (msg.type !== "update") return;
      if (msg.balance) applyBalance(msg.balance);
      if (msg.receipt) addReceipt(msg.receipt);
      refreshRegions();
    };
    ws.onclose = function (ev) {
      document.body.removeAttribute("data-live-ready");
      if (ev.code === 4403) { setStatus("Live updates off", ""); return; }
      setStatus("Live updates: reconnecting…", "warn");
      attempts = Math.min(attempts + 1, 6);
      setTimeout(connect, 500 * Math.pow(2, attempts));
    };
  }
  connect();
})();
