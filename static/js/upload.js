// The knowledge tab's upload form swaps the documents table with the server's answer.
// Files of a kind Docent can't read are refused before sending (see the end of this file).
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

  // Files Docent can't read are refused here at once, by extension, before anything is sent;
  // the server checks each file's content again and has the last word. Keep this list in step
  // with documents/parsers/dispatch.py (a file without an extension is read as plain text).
  const SUPPORTED = new Set([
    ".pdf", ".docx", ".html", ".htm", ".xhtml", ".md", ".markdown", ".mdown",
    ".txt", ".text", ".log", ".csv", ".tsv", ".zip",
  ]);
  const SUPPORTED_DESCRIPTION =
    "PDF, Word (.docx), web pages (.html), Markdown (.md), plain text (.txt), spreadsheets saved as CSV (.csv, .tsv) " +
    "and ZIP archives of these";
  const extension = (name) => {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot).toLowerCase() : "";
  };
  const readable = (file) => extension(file.name) === "" || SUPPORTED.has(extension(file.name));

  // The refusals of the files held back from the upload being sent, shown above the server's answer.
  let heldBack = [];

  const refusalList = (files) => {
    const box = document.createElement("div");
    box.className = "error";
    box.setAttribute("role", "alert");
    const intro = document.createElement("p");
    intro.textContent =
      files.length === 1
        ? `${files[0].name} was not uploaded: Docent can't read ${extension(files[0].name)} files.`
        : `${files.length} files were not uploaded: Docent can't read files of their kinds.`;
    box.append(intro);
    if (files.length > 1) {
      const list = document.createElement("ul");
      list.className = "refused";
      for (const file of files) {
        const item = document.createElement("li");
        const name = document.createElement("strong");
        name.textContent = file.name;
        item.append(name, `: Docent can't read ${extension(file.name)} files.`);
        list.append(item);
      }
      box.append(list);
    }
    const supported = document.createElement("p");
    supported.textContent = `Supported: ${SUPPORTED_DESCRIPTION}.`;
    box.append(supported);
    return box;
  };

  // Capturing on the document runs before htmx's own submit handler on the form, for dropped
  // and chosen files alike (both end in the form's submit).
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!form || form.id !== "upload-form") return;
      const input = form.querySelector("input[type=file]");
      if (!input || !input.files.length) return;
      const files = Array.from(input.files);
      const refused = files.filter((file) => !readable(file));
      heldBack = refused;
      if (!refused.length) return;
      const box = document.getElementById("upload-message");
      if (refused.length === files.length) {
        // Nothing to send: say why at once and leave the table as it is.
        event.preventDefault();
        event.stopImmediatePropagation();
        input.value = "";
        heldBack = [];
        if (box) box.replaceChildren(refusalList(refused));
        return;
      }
      const kept = new DataTransfer();
      files.filter(readable).forEach((file) => kept.items.add(file));
      input.files = kept.files;
    },
    true,
  );
  // After the server's answer (the table, and its message about the files it took), the
  // files held back here are named too.
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!isUpload(event) || !heldBack.length) return;
    const box = document.getElementById("upload-message");
    if (box) box.prepend(refusalList(heldBack));
    heldBack = [];
  });
})();
