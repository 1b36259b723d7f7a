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
  if (field && event.detail.successful && form.elements[field]) {
    form.elements[field].value = "";
    form.elements[field].dispatchEvent(new Event("input")); // shrink it and reset its counter
  }
});

// The chat tab: follow the newest message, a question box that grows, keyboard paths.
document.addEventListener("DOMContentLoaded", () => {
  const messages = document.getElementById("messages");
  const form = document.getElementById("chat-form");
  if (!messages || !form) return;
  const question = form.elements.message;
  const send = form.querySelector("button[type=submit]");
  const hint = form.querySelector("#question-help .hint");
  const hintText = hint.textContent;
  const maxChars = Number(question.dataset.maxChars);
  const page = document.scrollingElement;
  // On a phone the conversation list starts folded, so the chat comes first.
  const menu = document.querySelector(".conversation-menu");
  if (menu && window.matchMedia("(max-width: 900px)").matches) menu.open = false;

  // Follow the conversation while the reader is at its end; leave them be once they scroll up.
  const atEnd = () => page.scrollHeight - page.scrollTop - window.innerHeight < 80;
  const toEnd = () => window.scrollTo({ top: page.scrollHeight });
  let following = true;
  window.addEventListener("scroll", () => (following = atEnd()), { passive: true });
  new MutationObserver((changes) => {
    if (following) toEnd();
    const answered = changes.some((change) =>
      [...change.addedNodes].some((node) => node.matches && node.matches("article.message.assistant:not(.streaming)")),
    );
    // After an answer, the question box takes the focus back unless the reader went elsewhere.
    const focused = document.activeElement;
    if (answered && (!focused || focused === document.body || form.contains(focused))) {
      question.focus({ preventScroll: true });
    }
  }).observe(messages, { childList: true, subtree: true, characterData: true });
  if (messages.querySelector(".message")) toEnd(); // a reopened conversation shows its latest answer
  form.addEventListener("htmx:beforeRequest", () => (following = true));

  // The question box grows with its text and says when a question is too long to send.
  const fit = () => {
    question.style.height = "auto";
    question.style.height = `${Math.min(question.scrollHeight + 2, window.innerHeight * 0.4)}px`;
    const over = question.value.length - maxChars;
    send.disabled = over > 0;
    question.setAttribute("aria-invalid", over > 0 ? "true" : "false");
    hint.textContent =
      over > 0
        ? `Your question is ${question.value.length.toLocaleString()} characters; the limit is ${maxChars.toLocaleString()}. Shorten it by ${over.toLocaleString()} to send it.`
        : hintText;
    hint.classList.toggle("error", over > 0);
  };
  question.addEventListener("input", fit);
  // Enter sends, Shift+Enter starts a new line (and an input method's Enter picks its candidate).
  question.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (question.value.trim() && !send.disabled) form.requestSubmit();
  });

  // A citation [n] opens its passage and takes the focus there, by mouse or keyboard.
  messages.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.cite");
    if (!link) return;
    const source = document.getElementById(link.getAttribute("href").slice(1));
    if (!source) return;
    event.preventDefault();
    const details = source.querySelector("details");
    details.open = true;
    document.querySelectorAll(".sources li.cited").forEach((item) => item.classList.remove("cited"));
    source.classList.add("cited");
    const passage = details.querySelector(".passage");
    passage.setAttribute("tabindex", "-1");
    passage.focus({ preventScroll: true });
    source.scrollIntoView({ block: "center" });
    history.replaceState(history.state, "", link.hash); // the address names the source, for sharing
  });
});

// Settings: a field that applies only once another setting is chosen (data-needs="provider":
// temperature means nothing to the built-in answerer) shows and hides with that choice.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form.settings [data-needs]").forEach((wrapper) => {
    const control = wrapper.closest("form").elements[wrapper.dataset.needs];
    if (!control) return;
    const update = () => (wrapper.hidden = !control.value);
    control.addEventListener("change", update);
    update();
  });
});
