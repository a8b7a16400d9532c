// What htmx attributes cannot say on their own. Kept out of the HTML because the pages' CSP
// forbids inline script and eval.
(function () {
  "use strict";

  var paused = false;
  var failures = 0;

  function isPoller(element) {
    return element && (element.classList.contains("poller") || element.id === "tabs" ||
      element.hasAttribute("data-poller"));
  }

  function setState(state, label) {
    var live = document.getElementById("live");
    if (!live) return;
    live.dataset.state = state;
    live.querySelector(".live-label").textContent = label;
  }

  // Pause keeps what is on screen (and what is expanded) still; resume catches up from the cursor.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("#pause");
    if (!button) return;
    paused = !paused;
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(paused));
    setState(paused ? "paused" : "live", paused ? "Paused" : "Live");
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (paused && isPoller(event.detail.elt)) event.preventDefault();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isPoller(event.detail.elt)) return;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401) {
      window.location.assign("/");  // the session ended: back to the login form
      return;
    }
    if (event.detail.successful) {
      if (failures > 0 && !paused) setState("live", "Live");
      failures = 0;
    } else if (++failures >= 2 && !paused) {
      setState("offline", "Reconnecting…");
    }
  });

  // Filters apply as soon as a select changes; the text field applies on Enter.
  document.addEventListener("change", function (event) {
    var select = event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.requestSubmit();
  });
})();
