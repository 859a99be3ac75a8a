// Progressive enhancement only: every page works without this script.
// - a copy button next to the TOTP setup key;
// - a print button next to the backup codes;
// - on a login step answering a form (the TOTP form answering the
//   password, a wrong code), the step's own address in the address bar,
//   so that a reload or Back fetches it instead of posting the form again.
(function () {
  "use strict";

  function button(label, className) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "button secondary " + className;
    b.textContent = label;
    return b;
  }

  function setupCopy() {
    var key = document.getElementById("setup-key");
    if (!key || !navigator.clipboard || !window.isSecureContext) {
      return;
    }
    var box = key.parentElement;
    var label = box.getAttribute("data-copy-label") || "Copy";
    var done = box.getAttribute("data-copied-label") || label;
    var b = button(label, "copy-button");
    var status = document.createElement("span");
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    b.addEventListener("click", function () {
      var text = (key.textContent || "").replace(/\s+/g, "");
      navigator.clipboard.writeText(text).then(function () {
        b.textContent = done;
        status.textContent = done;
        window.setTimeout(function () {
          b.textContent = label;
          status.textContent = "";
        }, 2000);
      }, function () {});
    });
    box.appendChild(b);
    box.appendChild(status);
  }

  function setupPrint() {
    var boxes = document.querySelectorAll("[data-print-label]");
    if (typeof window.print !== "function") {
      return;
    }
    for (var i = 0; i < boxes.length; i++) {
      var b = button(boxes[i].getAttribute("data-print-label"), "print-button");
      b.addEventListener("click", function () {
        window.print();
      });
      boxes[i].appendChild(b);
    }
  }

  function setupStepURL() {
    var step = document.querySelector('meta[name="idp-step"]');
    var flow = document.querySelector('form input[name="flow"]');
    if (!step || !flow || !window.history || typeof window.history.replaceState !== "function") {
      return;
    }
    try {
      window.history.replaceState(null, "", step.getAttribute("content") + "?flow=" + encodeURIComponent(flow.value));
    } catch (e) {
      // An address the browser refuses: the page stays where it is.
    }
  }

  function init() {
    setupCopy();
    setupPrint();
    setupStepURL();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
