// The console's behaviour (no inline scripts: the Content-Security-Policy allows this file only).
// - the Sync from PSA dialog: opens when its content arrives, counts the ticked items live on the
//   button, "select all additions of this agreement", keeps ticks across live refreshes;
// - live updates: an EventSource on the page's data-events URL; a sync event of this client makes the
//   contracts list and the dialog refresh ("contracts-changed"); the Activity page lists the events.
(function () {
  "use strict";

  var REFRESHING_TYPES = {
    "sync.contracts.applied": true,
    "sync.catalog.changed": true,
    "sync.auto_sync.changed": true,
    "sync.edit.applied": true,
    "sync.command.rejected": true
  };
  var EVENT_TYPES = [
    "sync.poll.completed", "sync.catalog.changed", "sync.contracts.applied", "sync.auto_sync.changed",
    "sync.command.rejected", "sync.edit.rejected", "sync.edit.applied", "sync.failed", "sync.heartbeat"
  ];

  function selectedCount(form) {
    return form.querySelectorAll(
      'input[name="agreement_ids"]:checked:not(:disabled), input[name="addition_ids"]:checked:not(:disabled)'
    ).length;
  }

  function updateSyncButton() {
    var form = document.getElementById("sync-form");
    if (!form) return;
    var button = document.getElementById("sync-button");
    var count = selectedCount(form);
    var counter = button.querySelector("[data-selected-count]");
    if (counter) counter.textContent = String(count);
    button.disabled = form.dataset.autoSync === "on" || count === 0;
  }

  var savedTicks = null;
  var openRequested = false;

  document.addEventListener("change", function (event) {
    if (event.target.closest && event.target.closest("#sync-form")) updateSyncButton();
  });

  document.addEventListener("click", function (event) {
    var picker = event.target.closest && event.target.closest("[data-select-additions]");
    if (picker) {
      var group = picker.closest("fieldset");
      group.querySelectorAll('input[name="addition_ids"]:not(:disabled)').forEach(function (box) {
        box.checked = true;
      });
      updateSyncButton();
      return;
    }
    if (event.target.closest && event.target.closest("#open-sync")) openRequested = true;
    var closer = event.target.closest && event.target.closest("[data-close-dialog]");
    if (closer) {
      var dialog = document.getElementById(closer.dataset.closeDialog);
      if (dialog) dialog.close();
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "sync-dialog-content") {
      savedTicks = Array.prototype.map.call(
        target.querySelectorAll('input[name$="_ids"]:checked'),
        function (box) { return box.id; }
      );
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "sync-dialog-content") {
      (savedTicks || []).forEach(function (id) {
        var box = document.getElementById(id);
        if (box && !box.disabled) box.checked = true;
      });
      savedTicks = null;
      updateSyncButton();
      var dialog = document.getElementById("sync-dialog");
      if (dialog && !dialog.open && openRequested) {
        openRequested = false;
        document.getElementById("sync-status").textContent = "";
        dialog.showModal();
        var first = dialog.querySelector("input:not(:disabled), button:not(:disabled)");
        if (first) first.focus();
      }
    }
  });

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  var HIDDEN_FIELDS = { tenant_id: true, client_id: true, command_id: true };

  function details(event) {
    var data = event.data || {};
    var parts = [];
    Object.keys(data).forEach(function (name) {
      var value = data[name];
      if (HIDDEN_FIELDS[name] || value === null || value === undefined || typeof value === "object" && !Array.isArray(value)) return;
      parts.push(name + "=" + (Array.isArray(value) ? value.join(" ") : String(value)));
    });
    var line = parts.join(", ");
    return line.length > 220 ? line.slice(0, 219) + "…" : line;
  }

  function addActivityRow(event) {
    var rows = document.getElementById("activity-rows");
    if (!rows) return;
    var row = document.createElement("tr");
    row.dataset.type = text(event.type);
    row.dataset.tenant = text(event.tenantid);
    var time = document.createElement("td");
    time.textContent = text(event.time).replace("T", " ").slice(0, 19) + " UTC";
    var type = document.createElement("td");
    type.textContent = text(event.type);
    var client = document.createElement("td");
    var clientId = text((event.data || {}).client_id);
    client.textContent = clientId === "*" ? "all" : clientId;
    var detail = document.createElement("td");
    detail.textContent = details(event);
    [time, type, client, detail].forEach(function (cell) { row.appendChild(cell); });
    rows.insertBefore(row, rows.firstChild);
    while (rows.children.length > 200) rows.removeChild(rows.lastChild);
  }

  var refreshTimer = null;

  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      if (window.htmx) window.htmx.trigger(document.body, "contracts-changed");
    }, 400);
  }

  function connect() {
    var url = document.body.dataset.events;
    if (!url || !window.EventSource) return;
    var state = document.getElementById("activity-state");
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      document.body.dataset.live = "connected";
      if (state) state.textContent = "Live: new sync events of your tenant appear below as they happen.";
    });
    source.addEventListener("error", function () {
      document.body.dataset.live = "reconnecting";
      if (state) state.textContent = "Live stream interrupted; reconnecting…";
    });
    EVENT_TYPES.forEach(function (type) {
      source.addEventListener(type, function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (error) { return; }
        if (document.body.dataset.activity && type !== "sync.heartbeat") addActivityRow(event);
        if (document.getElementById("contracts") && REFRESHING_TYPES[type]) refreshSoon();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    updateSyncButton();
    connect();
  });
})();
