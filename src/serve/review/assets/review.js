// The review page's keyboard, and the JSON editor's check. Everything works without this
// script (forms post, links navigate); it only adds shortcuts:
//   1-9    choose the label with that number (the row marked data-hotkeys)
//   Enter  save and go to the next run (outside text fields; Ctrl+Enter inside them)
//   s      skip to the next run
"use strict";
(function () {
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return el.isContentEditable === true;
    return !/^(radio|checkbox|button|submit|reset)$/.test(el.type);
  }
  var form = document.getElementById("review-form");
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.metaKey || e.defaultPrevented) return;
    var inField = typing(e.target);
    if (form && e.key === "Enter" && (e.ctrlKey || !inField)) {
      var t = e.target;
      // Enter on a link or a button keeps its own meaning.
      if (!e.ctrlKey && t && (t.tagName === "A" || t.tagName === "BUTTON")) return;
      e.preventDefault();
      form.requestSubmit();
      return;
    }
    if (inField || e.ctrlKey) return;
    if (/^[1-9]$/.test(e.key)) {
      var row = document.querySelector("[data-hotkeys]");
      if (!row) return;
      var choice = row.querySelectorAll("input[type=radio]")[Number(e.key) - 1];
      if (choice) {
        e.preventDefault();
        choice.checked = true;
        choice.focus();
      }
    } else if (e.key === "s" || e.key === "S") {
      var skip = document.getElementById("skip");
      if (skip) {
        e.preventDefault();
        skip.click();
      }
    }
  });
  // The JSON editor: says whether the text parses before the form is sent.
  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-json]"), function (area) {
    var status = area.nextElementSibling;
    function check() {
      var ok = true;
      var message = "valid JSON";
      try { JSON.parse(area.value); } catch (err) { ok = false; message = err.message; }
      area.setAttribute("aria-invalid", ok ? "false" : "true");
      if (status) status.textContent = message;
      return ok;
    }
    area.addEventListener("input", check);
    check();
  });
  if (form) {
    form.addEventListener("submit", function (e) {
      var bad = form.querySelector("textarea[data-json][aria-invalid=true]");
      if (bad) { e.preventDefault(); bad.focus(); }
    });
  }
})();
