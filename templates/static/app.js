// Progressive enhancement only: every page works without this script.
// - a copy button next to the TOTP setup key;
// - a print button next to the backup codes.
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

  function init() {
    setupCopy();
    setupPrint();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
