// xinxibot web console: a little help on top of plain HTML forms (the pages work without it).
"use strict";

// A button with data-confirm asks first (the words come from the page); a posted form's
// button waits for the answer, so one click is one request.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (event.target.method === "post" && button && !("download" in event.target.dataset)) {
    setTimeout(() => { button.disabled = true; }, 0);  // after the browser took its value
  }
});

// Filters apply as soon as a choice changes.
for (const select of document.querySelectorAll("form.filters select")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}
