// The rationale page (templates/participant/rationale.html): every mark is a checkbox, so the
// keyboard (Space toggles) and a plain form already work. This adds arrow keys between the
// marks of one part, digits for the confidence, Enter to submit, and dragging (mouse, pen or
// finger) across the picture's cells: the first cell's new state is painted on every cell crossed.
(function () {
  "use strict";
  const form = document.getElementById("answer-form");
  if (!form) return;
  let sent = false;
  form.addEventListener("submit", function (e) {
    const marked = form.querySelector('input[name="mark"]:checked');
    document.getElementById("marks-needed").hidden = Boolean(marked);
    if (sent || !marked) { e.preventDefault(); return; }
    sent = true;
    document.getElementById("submit").disabled = true;
  });

  function boxes(part) { return Array.from(part.querySelectorAll('input[name="mark"]')); }

  // One Tab stop per part (a roving tabindex): Tab moves between the picture, the words and the
  // table, the arrow keys within one.
  document.querySelectorAll(".rationale-part").forEach(function (part) {
    const all = boxes(part);
    all.forEach(function (box, k) { box.tabIndex = k === 0 ? 0 : -1; });
    part.addEventListener("focusin", function (e) {
      if (e.target.name !== "mark") return;
      all.forEach(function (box) { box.tabIndex = box === e.target ? 0 : -1; });
    });
  });

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || document.querySelector("dialog[open]")) return;
    const target = e.target;
    const part = target.closest && target.closest(".rationale-part");
    if (part && target.name === "mark") {
      const all = boxes(part);
      const at = all.indexOf(target);
      const columns = part.classList.contains("rationale-image") ? Number(part.dataset.columns) || 1 : 1;
      const rowStep = part.classList.contains("rationale-text") ? 1 : columns;
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: rowStep, ArrowUp: -rowStep }[e.key];
      if (step !== undefined) {
        const next = all[at + step];
        if (next) next.focus();
        e.preventDefault();
        return;
      }
    }
    if (/^[1-5]$/.test(e.key)) {
      const radio = form.querySelector('input[name="confidence"][value="' + e.key + '"]');
      if (radio) { radio.checked = true; e.preventDefault(); }
      return;
    }
    if (e.key === "Enter" && form.checkValidity()) { e.preventDefault(); form.requestSubmit(); }
  });

  // Dragging across the grid: pointer events, so a finger works as a mouse does.
  document.querySelectorAll(".rationale-grid").forEach(function (grid) {
    let painting = null;
    let moved = false;
    function boxAt(x, y) {
      const el = document.elementFromPoint(x, y);
      const cell = el && el.closest(".cell");
      return cell && grid.contains(cell) ? cell.querySelector("input") : null;
    }
    grid.addEventListener("pointerdown", function (e) {
      const box = boxAt(e.clientX, e.clientY);
      if (!box) return;
      e.preventDefault();
      painting = !box.checked;
      moved = true;
      box.checked = painting;
      box.focus({ preventScroll: true });
      grid.setPointerCapture(e.pointerId);
    });
    grid.addEventListener("pointermove", function (e) {
      if (painting === null) return;
      const box = boxAt(e.clientX, e.clientY);
      if (box) box.checked = painting;
    });
    function stop() { painting = null; }
    grid.addEventListener("pointerup", stop);
    grid.addEventListener("pointercancel", stop);
    // the click that follows a pointer press would toggle the box back
    grid.addEventListener("click", function (e) {
      if (moved && e.detail !== 0) { e.preventDefault(); }
      moved = false;
    });
  });
})();
