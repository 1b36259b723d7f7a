// The knowledge tab's upload form swaps the documents table with the server's answer.
// Docent's own refusals come back as a message retargeted to #upload-message; anything
// else that is an error (a proxy's error page, a 500, a lost connection) must not replace
// the table either: it becomes a readable message in the same place.
(() => {
  const isUpload = (event) => event.detail.elt && event.detail.elt.id === "upload-form";

  const say = (text) => {
    const box = document.getElementById("upload-message");
    if (!box) return;
    const message = document.createElement("p");
    message.className = "error";
    message.setAttribute("role", "alert");
    message.textContent = text;
    box.replaceChildren(message);
  };

  const describe = (xhr) => {
    if (xhr.status === 413) return "This upload is too large. Send fewer or smaller files at a time.";
    if (xhr.status === 403) return "The upload was not accepted: your session may have expired. Reload the page and try again.";
    if (xhr.status >= 500) {
      return `The upload failed on the server (error ${xhr.status}). Try again; if it keeps failing, ask an administrator.`;
    }
    return `The upload was refused (error ${xhr.status}). Reload the page and try again.`;
  };

  document.addEventListener("htmx:beforeSwap", (event) => {
    if (!isUpload(event)) return;
    const xhr = event.detail.xhr;
    if (xhr.status < 400 || xhr.getResponseHeader("HX-Retarget")) return;
    event.detail.shouldSwap = false;
    event.detail.isError = false;
    say(describe(xhr));
  });
  document.addEventListener("htmx:sendError", (event) => {
    if (isUpload(event)) say("The upload could not be sent: the server did not answer. Check the connection and try again.");
  });
})();
