// loopc feedback widget: thumbs and a "correct this" form under an answer.
//
// On a product page (whose origin the server allows with --allow-origin):
//   <div data-loopc-run="RUN_ID" data-loopc-token="FEEDBACK_TOKEN"
//        data-loopc-labels="billing,tech,other"></div>          (labels: optional)
//   <script src="https://loopc.example.com/v1/widget.js" defer></script>
// or from code: LoopcWidget.attach(element, {run: RUN_ID, token: FEEDBACK_TOKEN}).
// Options (data-loopc-… or the object): server (default: where this script came from),
// thumbs-key (default "thumbs"), correction-key (default "correction"), labels.
// Feedback is posted to POST /v1/feedback with the run's token, which allows feedback on that
// run and nothing else. Text is set with textContent only: nothing is parsed as HTML.
"use strict";
(function () {
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src).origin : "";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }

  function attach(host, options) {
    var o = options || {};
    var d = host.dataset || {};
    var server = o.server || d.loopcServer || origin;
    var run = o.run || d.loopcRun;
    var token = o.token || d.loopcToken;
    var thumbsKey = o.thumbsKey || d.loopcThumbsKey || "thumbs";
    var correctionKey = o.correctionKey || d.loopcCorrectionKey || "correction";
    var labels = o.labels || (d.loopcLabels ? d.loopcLabels.split(",").map(function (s) { return s.trim(); }).filter(Boolean) : null);
    if (!run || !token) return null;

    var box = el("div", { "class": "loopc-widget", role: "group", "aria-label": "Feedback on this answer" });
    box.style.cssText = "display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;font:inherit;margin-top:.5rem";
    var status = el("span", { "aria-live": "polite" });
    function send(body) {
      body.run_id = run;
      status.textContent = "Sending…";
      return fetch(server + "/v1/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
        body: JSON.stringify(body),
        credentials: "omit"
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) throw new Error((j.error && j.error.message) || ("HTTP " + r.status));
          status.textContent = "Thanks!";
          return j;
        });
      }).catch(function (err) { status.textContent = "Could not send: " + err.message; });
    }
    var id = "loopc-" + run.replace(/[^A-Za-z0-9_-]/g, "");
    var up = el("button", { type: "button", "aria-label": "Good answer" }, "👍");
    var down = el("button", { type: "button", "aria-label": "Bad answer" }, "👎");
    var fix = el("button", { type: "button", "aria-expanded": "false", "aria-controls": id + "-form" }, "Correct this");
    up.addEventListener("click", function () { send({ key: thumbsKey, score: 1 }); });
    down.addEventListener("click", function () { send({ key: thumbsKey, score: 0 }); });

    var form = el("form", { id: id + "-form", hidden: "" });
    form.style.cssText = "flex-basis:100%;display:grid;gap:.4rem";
    var field;
    if (labels && labels.length) {
      field = el("select", { "aria-label": "The right answer" });
      labels.forEach(function (l) { field.appendChild(el("option", { value: l }, l)); });
    } else {
      field = el("textarea", { rows: "3", "aria-label": "The right answer" });
    }
    var comment = el("input", { type: "text", placeholder: "Comment (optional)", "aria-label": "Comment" });
    var submit = el("button", { type: "submit" }, "Send correction");
    form.appendChild(field);
    form.appendChild(comment);
    form.appendChild(submit);
    fix.addEventListener("click", function () {
      var open = form.hasAttribute("hidden");
      if (open) { form.removeAttribute("hidden"); field.focus(); } else { form.setAttribute("hidden", ""); }
      fix.setAttribute("aria-expanded", open ? "true" : "false");
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { key: correctionKey, correction: field.value };
      if (comment.value.trim()) body.comment = comment.value.trim();
      send(body).then(function () { form.setAttribute("hidden", ""); fix.setAttribute("aria-expanded", "false"); });
    });
    [up, down, fix, status, form].forEach(function (c) { box.appendChild(c); });
    host.appendChild(box);
    return box;
  }

  window.LoopcWidget = { attach: attach };
  function scan() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-loopc-run]"), function (h) {
      if (!h.querySelector(".loopc-widget")) attach(h);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan); else scan();
})();
