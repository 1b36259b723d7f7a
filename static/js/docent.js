// Drag-and-drop onto a bot's knowledge panel. The dropzone is a real file input
// inside a real form, so choosing files works without this script; this only
// adds dropping and submits as soon as files are chosen (htmx sends the form).
document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const form = zone.closest("form");
  const input = zone.querySelector("input[type=file]");

  const submit = () => {
    if (input.files.length) form.requestSubmit();
  };
  input.addEventListener("change", submit);

  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    }),
  );
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, () => zone.classList.remove("over")),
  );
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    submit();
  });
  // A new upload clears the last error; once sent, the same file can be dropped again.
  form.addEventListener("htmx:beforeRequest", () => {
    document.getElementById("upload-message").innerHTML = "";
  });
  form.addEventListener("htmx:afterRequest", () => {
    input.value = "";
  });
});

// The page's Content-Security-Policy forbids inline handlers, so behaviour that
// templates used to write as onsubmit/hx-on is declared with data attributes and
// wired here. Listeners sit on the document so forms swapped in by htmx work too.

// <form data-confirm="Delete this?">: ask before submitting; Cancel keeps the page.
// (For plain forms: htmx handles its forms first, and they use hx-confirm.)
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// <form data-clear-after-send="message">: empty that field once htmx has sent the form.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  const field = form && form.dataset && form.dataset.clearAfterSend;
  if (field && event.detail.successful && form.elements[field]) form.elements[field].value = "";
});
