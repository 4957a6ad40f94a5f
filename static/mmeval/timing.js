/* Response timing in the browser, as jsPsych does it.

Any <form data-timing> gets hidden fields, filled when it is submitted (the server checks them:
annotations/services/client_timing.py):
  client_timing      "1": this script ran (absent without JavaScript: the time is then missing)
  client_rt_ms       performance.now() from the stimulus fully displayed to the submission;
                     empty when submitted before that
  client_display_ms  navigation start to the display (load time)
  client_blur_count  times the participant left the page (tab hidden or window blurred)
  client_hidden_ms   total time the tab was hidden
"Fully displayed": every <img> in the form decoded (src URL or data: URI alike; a broken image
counts as settled), then one painted frame. Leaving is counted from this script's start.

Preloading: the URLs of <link rel="prefetch" as="image"> and of data-preload="url url …" on the
form are fetched into the cache once the stimulus is displayed (so they never compete with it);
with none listed nothing happens. */
(function () {
  "use strict";
  var FIELDS = ["client_timing", "client_rt_ms", "client_display_ms", "client_blur_count", "client_hidden_ms"];

  function field(form, name) {
    var input = form.querySelector('input[type="hidden"][name="' + name + '"]');
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    return input;
  }

  function settled(img) {
    // decode() waits for the load and the decoding; a broken image rejects: it is as shown as it gets.
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) return Promise.resolve();
    if (typeof img.decode === "function") return img.decode().catch(function () {});
    if (img.complete) return Promise.resolve();
    return new Promise(function (done) {
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", done, { once: true });
    });
  }

  function painted() {
    // The frame after the next one: the one that shows what was decoded.
    return new Promise(function (done) {
      requestAnimationFrame(function () { requestAnimationFrame(done); });
    });
  }

  function preload(form) {
    var urls = [];
    document.querySelectorAll('link[rel="prefetch"][as="image"]').forEach(function (link) { urls.push(link.href); });
    (form.getAttribute("data-preload") || "").split(/\s+/).forEach(function (url) { if (url) urls.push(url); });
    urls.forEach(function (url) { var img = new Image(); img.decoding = "async"; img.src = url; });
  }

  // Leaving the page, for all timed forms at once.
  var away = false;
  var blurs = 0;
  var hiddenSince = document.visibilityState === "hidden" ? performance.now() : null;
  var hiddenMs = 0;
  function leave() { if (!away) { away = true; blurs += 1; } }
  function back() { if (document.visibilityState !== "hidden") away = false; }
  document.addEventListener("visibilitychange", function () {
    var now = performance.now();
    if (document.visibilityState === "hidden") {
      if (hiddenSince === null) hiddenSince = now;
      leave();
    } else {
      if (hiddenSince !== null) { hiddenMs += now - hiddenSince; hiddenSince = null; }
      back();
    }
  });
  window.addEventListener("blur", leave);
  window.addEventListener("focus", back);
  function hiddenTotal(now) { return hiddenMs + (hiddenSince === null ? 0 : now - hiddenSince); }

  function timed(form) {
    var shownAt = null;
    FIELDS.forEach(function (name) { field(form, name).value = ""; });
    field(form, "client_timing").value = "1";
    // A lazy image may never load off screen: it is not part of the stimulus the clock waits for.
    var images = Array.prototype.slice.call(form.querySelectorAll("img")).filter(function (img) { return img.loading !== "lazy"; });
    Promise.all(images.map(settled)).then(painted).then(function () {
      shownAt = performance.now();
      field(form, "client_display_ms").value = String(Math.round(shownAt));
      form.setAttribute("data-timing-shown", "");
      preload(form);
    });
    // Form data are read after the submit event: the values set here go with the answer.
    form.addEventListener("submit", function () {
      var now = performance.now();
      field(form, "client_rt_ms").value = shownAt === null ? "" : String(Math.round(now - shownAt));
      field(form, "client_blur_count").value = String(blurs);
      field(form, "client_hidden_ms").value = String(Math.round(hiddenTotal(now)));
    });
  }

  document.querySelectorAll("form[data-timing]").forEach(timed);
})();
