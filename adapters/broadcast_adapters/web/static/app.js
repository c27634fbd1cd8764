// The results screen's only script: the confirmation before acknowledging, and the
// status bar that follows summary.json while the broadcast is sending. Plain JS, no build.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("acknowledge-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      // はい (OK) posts the form unchanged; anything else records nothing.
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }

  var status = document.getElementById("status");
  if (!status || status.getAttribute("data-poll") !== "on") {
    return;
  }
  var url = status.getAttribute("data-summary-url");
  var seconds = parseInt(status.getAttribute("data-poll-seconds"), 10) || 3;
  var labels = {scheduled: "予約済み", sending: "配信中", sent: "配信済み", cancelled: "キャンセル", paused: "一時停止"};

  function set(name, value) {
    var nodes = status.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = value;
    }
  }

  function draw(s) {
    ["recipients", "delivered", "succeeded", "errors", "sending", "scheduled",
     "unacknowledged_errors"].forEach(function (name) { set(name, String(s[name])); });
    var total = Math.max(s.recipients, 1);
    ["succeeded", "errors", "sending", "scheduled"].forEach(function (name) {
      var seg = status.querySelector('[data-seg="' + name + '"]');
      if (seg) {
        seg.style.width = (100 * s[name] / total).toFixed(2) + "%";
      }
    });
    set("status", labels[s.status] || s.status);
    var eta = status.querySelector(".eta");
    if (eta) {
      eta.hidden = !s.estimated_completion_at;
      if (s.estimated_completion_at) {
        set("estimated_completion_at", new Date(s.estimated_completion_at).toLocaleString("ja-JP"));
      }
    }
  }

  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (s) {
        if (!s) {
          return;
        }
        draw(s);
        if (s.status === "sending") {
          window.setTimeout(poll, seconds * 1000);
        } else {
          // Finished: the recipient list below is stale too, so load it afresh.
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, seconds * 1000); });
  }
  window.setTimeout(poll, seconds * 1000);
});
