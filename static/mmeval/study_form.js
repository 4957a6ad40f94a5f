// The study form follows its task: choosing a task fills in the design values that task starts
// from (a refused option switched off) and disables the explanation displays it cannot show, so
// the default design of every task is valid. The server checks the design again whatever this does.
(function () {
  "use strict";
  const data = document.getElementById("task-designs");
  const task = document.getElementById("id_task");
  if (!data || !task) return;
  const designs = JSON.parse(data.textContent);
  const note = document.getElementById("task-adjusted");

  function allowDisplays(design) {
    const display = document.getElementById("id_explanation_display");
    if (!display) return;
    for (const option of display.options) option.disabled = !design.displays.includes(option.value);
  }

  function setField(name, value) {
    const input = document.getElementById("id_" + name);
    if (!input) return false;
    if (input.type === "checkbox") {
      if (input.checked === Boolean(value)) return false;
      input.checked = Boolean(value);
    } else {
      if (input.value === String(value)) return false;
      input.value = String(value);
    }
    return true;
  }

  function labelOf(name) {
    const input = document.getElementById("id_" + name);
    const label = document.querySelector('label[for="id_' + name + '"]') || (input && input.closest("label"));
    return label ? label.textContent.replace(/:$/, "").trim() : name;
  }

  task.addEventListener("change", function () {
    const design = designs[task.value];
    if (!design) return;
    const changed = Object.entries(design.fields).filter(([name, value]) => setField(name, value));
    allowDisplays(design);
    if (note) {
      note.textContent = changed.length
        ? "Set for this task: " + changed.map(([name]) => labelOf(name)).join(", ") + "."
        : "";
    }
  });

  if (designs[task.value]) allowDisplays(designs[task.value]);
})();
