// The knowledge tab's upload form swaps the documents table with the server's answer.
// Docent's own refusals come back as a message retargeted to #upload-message; anything
// else that is an error (a proxy's error page, a 500, a lost connection) must not replace
// the table either: it becomes a readable message in the same place.
(() => {
  // beforeSwap fires on the swap target; the form that sent the request is in requestConfig.
  const source = (event) => (event.detail.requestConfig && event.detail.requestConfig.elt) || event.detail.elt;
  const isUpload = (event) => {
    const element = source(event);
    return Boolean(element) && element.id === "upload-form";
  };

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

  // A request answered from another path was redirected: to the login page, when the session
  // ended. Neither an upload nor the table's polling may put that page in the table.
  const redirected = (event) => {
    const answered = event.detail.xhr.responseURL;
    const asked = event.detail.pathInfo && event.detail.pathInfo.finalRequestPath;
    return Boolean(answered && asked) && new URL(answered).pathname !== new URL(asked, window.location.href).pathname;
  };

  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status < 400 && redirected(event)) {
      event.detail.shouldSwap = false;
      say(
        isUpload(event)
          ? "Nothing was uploaded: you have been logged out. Reload the page, log in and drop the files again."
          : "You have been logged out. Reload the page and log in to see the documents again.",
      );
      return;
    }
    if (!isUpload(event)) return;
    if (xhr.status < 400 || xhr.getResponseHeader("HX-Retarget")) return;
    event.detail.shouldSwap = false;
    event.detail.isError = false;
    say(describe(xhr));
  });
  document.addEventListener("htmx:sendError", (event) => {
    if (isUpload(event)) say("The upload could not be sent: the server did not answer. Check the connection and try again.");
  });
})();
