// Keyboard and small comforts for the chat page. No inline script: this file is all of it.
// Enter sends (Stop & Send while a reply streams), Shift+Enter adds a line, Esc stops.
(function () {
  "use strict";

  // Words shown to the user go through Django's JavaScript catalog (/jsi18n/, loaded before
  // this file), in the page's language; without it, as written here.
  var gettext = window.gettext || function (text) { return text; };
  var ngettext = window.ngettext || function (one, many, n) { return n === 1 ? one : many; };
  function fmt(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (all, name) { return String(values[name]); });
  }

  function byId(id) { return document.getElementById(id); }

  function clickIfPresent(id) {
    var button = byId(id);
    if (button && !button.disabled) { button.click(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    if (!byId("chat")) { return; }
    var editor = event.target && event.target.closest ? event.target.closest(".edit-form") : null;
    if (editor) {
      if (event.key === "Escape") { event.preventDefault(); closeEditor(editor.closest("article")); }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (event.target.value.trim() !== "") { editor.querySelector(".edit-save").click(); }
      }
      return;
    }
    if (event.key === "Escape") {
      // Esc stops from the composer or anywhere outside a text field; in the search, rename or
      // settings boxes it keeps its usual meaning there.
      var field = event.target && event.target.closest && event.target.closest("input, textarea, select");
      if (field && field.id !== "composer-input") { return; }
      if (clickIfPresent("stop-button")) { event.preventDefault(); }
      return;
    }
    var input = byId("composer-input");
    if (event.key === "Enter" && event.target === input && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      // Files alone make a message too.
      if (input.value.trim() !== "" || composerFiles().length) { clickIfPresent("send-button"); }
    }
  });

  // With the socket down, Stop still works: the same stop goes through the HTTP endpoint.
  // Capture phase, so this runs before htmx's ws-send handler on the button.
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("#stop-button") : null;
    var chat = byId("chat");
    var connection = byId("connection");
    if (!button || !chat || (connection && connection.dataset.state === "open")) { return; }
    event.preventDefault();
    event.stopImmediatePropagation();
    fetch(chat.dataset.stopUrl, {
      method: "POST",
      headers: { "X-CSRFToken": chat.dataset.csrf, "HX-Request": "true" },
      credentials: "same-origin"
    }).then(function (response) { return response.text(); }).then(function (html) {
      var notice = byId("notice");
      if (notice && window.htmx) { htmx.swap(notice, html, { swapStyle: "outerHTML" }); }
    }).catch(function () {
      var notice = byId("notice");
      if (notice) { notice.textContent = gettext("The stop could not be sent: the server is unreachable."); }
    });
  }, true);

  // Copy buttons: a code block copies its code, a reply's button its Markdown source, a new
  // API token's button the token.
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest(".copy-btn") : null;
    if (!button) { return; }
    var text = "";
    var block = button.closest(".code-block");
    var article = button.closest("article");
    if (button.dataset.copyTarget) {
      text = byId(button.dataset.copyTarget).value;
    } else if (block) {
      text = block.querySelector("code").textContent;
    } else if (article && article.querySelector("template.msg-source")) {
      text = article.querySelector("template.msg-source").content.textContent;
    }
    if (!navigator.clipboard) { return; }
    navigator.clipboard.writeText(text).then(function () {
      var label = button.textContent;
      button.textContent = gettext("Copied");
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  document.addEventListener("submit", function (event) {
    if (event.target && event.target.id === "composer") {
      event.preventDefault();
      clickIfPresent("send-button");
    } else if (event.target && event.target.classList.contains("edit-form")) {
      event.preventDefault();
      event.target.querySelector(".edit-save").click();
    }
  });

  // Edit the last message: an editor takes the bubble's place until it is sent or cancelled.
  // Sending it (ws-send, action "edit") makes the server replace the message and its reply.
  function openEditor(article) {
    var template = byId("edit-template");
    if (!article || !template || article.querySelector(".edit-form")) { return; }
    var form = template.content.firstElementChild.cloneNode(true);
    var input = form.querySelector("textarea");
    input.value = article.querySelector(".msg-body").textContent;
    article.classList.add("editing");
    article.querySelector(".bubble").after(form);
    if (window.htmx) { htmx.process(form); }
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
  function closeEditor(article) {
    var form = article && article.querySelector(".edit-form");
    if (!form) { return; }
    form.remove();
    article.classList.remove("editing");
    var button = article.querySelector(".edit-btn");
    if (button) { button.focus(); }
  }
  document.addEventListener("click", function (event) {
    var target = event.target && event.target.closest ? event.target : null;
    if (!target) { return; }
    if (target.closest(".edit-btn")) { openEditor(target.closest("article")); return; }
    if (target.closest(".edit-cancel")) { closeEditor(target.closest("article")); return; }
    // After regenerate, continue or an edit, the keyboard goes back to the composer (Esc stops).
    if (target.closest(".regenerate-btn, .continue-btn, .edit-save")) {
      var input = byId("composer-input");
      if (input) { setTimeout(function () { input.focus(); }, 0); }
    }
  });

  // A sent message leaves the composer when the server accepts its turn, not on Enter, so a
  // refused one stays in the box. The turn-started frame names the text it accepted
  // (<template id="composer-input" hx-swap-oob="none" data-sent="…">, templates/chat/frames.html;
  // only the sending tab gets it) and exactly that text is taken out: what was typed after
  // Enter stays, caret included. Each send is remembered with where its text sits in the box,
  // kept up to date as the user types around it; an edit inside it means the user is
  // reworking it, and then it is left alone. A frame that swaps the box (a composer command's)
  // forgets them all.
  var pending = [];      // oldest first: {message (as sent), text (left in the box), start, broken}
  var tracked = null;    // the textarea `pending` refers to
  var lastValue = "";
  function composer() {
    var input = byId("composer-input");
    if (input !== tracked) { tracked = input; pending = []; lastValue = input ? input.value : ""; }
    return input;
  }
  // What the server makes of a message (Python's str.strip(), chat/ws/protocol.py): it is the
  // text the frame names.
  var PY_STRIP = /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
  function pyStrip(text) { return text.replace(PY_STRIP, ""); }

  document.addEventListener("htmx:wsConfigSend", function (event) {
    var input = composer();
    var params = event.detail && event.detail.parameters;
    if (event.defaultPrevented) { return; }  // held back (a file still uploading): not sent
    if (!input || !event.target || event.target.id !== "send-button" || !params) { return; }
    var message = params.message;
    if (typeof message !== "string" || pyStrip(message) === "") { return; }
    lastValue = input.value;
    pending.push({ message: message, text: input.value, start: 0, broken: false });
    if (pending.length > 20) { pending.shift(); }
  });

  // The edit that made `after` of `before`: `removed` characters at `at` replaced by `added`.
  // Where the text alone is ambiguous (an "a" typed next to an "a"), the caret, which ends up
  // after what was typed, says where the edit was.
  function editBetween(before, after, caret) {
    var max = Math.min(before.length, after.length);
    var head = 0;
    while (head < max && before[head] === after[head]) { head++; }
    var tail = 0;
    while (tail < max - head && before[before.length - 1 - tail] === after[after.length - 1 - tail]) { tail++; }
    var added = after.length - tail - head;
    var removed = before.length - tail - head;
    var at = caret - added;
    if (!(at >= 0 && at < head && before.slice(0, at) === after.slice(0, at) &&
          before.slice(at + removed) === after.slice(at + added))) { at = head; }
    return { at: at, removed: removed, added: added };
  }
  document.addEventListener("input", function (event) {
    var input = composer();
    if (!input || event.target !== input) { return; }
    var before = lastValue;
    lastValue = input.value;
    if (!pending.length || before === input.value) { return; }
    var edit = editBetween(before, input.value, input.selectionEnd);
    pending.forEach(function (entry) {
      if (entry.broken) { return; }
      if (edit.at + edit.removed <= entry.start) {  // before it (typing at its start counts)
        entry.start += edit.added - edit.removed;
      } else if (edit.at < entry.start + entry.text.length) {
        entry.broken = true;  // typed or deleted inside the sent text
      }  // else after it (typing at its end counts)
    });
  });

  function acceptSent(message) {
    var input = composer();
    var found = -1;
    for (var i = 0; i < pending.length && found < 0; i++) {
      if (pyStrip(pending[i].message) === message) { found = i; }
    }
    if (!input || found < 0) { return; }
    var entry = pending[found];
    pending = pending.slice(found + 1);  // older sends were refused: the socket answers in order
    var start = entry.start;
    var end = start + entry.text.length;
    if (entry.broken || input.value.slice(start, end) !== entry.text) { return; }
    input.setRangeText("", start, end, "preserve");  // the caret keeps its place in the rest
    lastValue = input.value;
    // A later send still waiting may hold this text too (Enter pressed twice): keep the rest.
    pending = pending.filter(function (other) {
      if (other.broken) { return true; }
      var from = Math.min(Math.max(start - other.start, 0), other.text.length);
      var to = Math.min(Math.max(end - other.start, 0), other.text.length);
      other.text = other.text.slice(0, from) + other.text.slice(to);
      other.start -= Math.min(end, other.start) - Math.min(start, other.start);
      return other.text !== "";
    });
    input.dispatchEvent(new Event("input", { bubbles: true }));  // for whatever follows the box
  }
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var detail = event.detail || {};
    var signal = detail.fragment;
    if (!detail.target || detail.target.id !== "composer-input" || !signal ||
        !signal.hasAttribute || !signal.hasAttribute("data-sent")) { return; }
    detail.shouldSwap = false;
    acceptSent(signal.getAttribute("data-sent"));
  });

  // Attachments (chat/web/attachments.py). A file picked with the paperclip, dropped on the
  // page or pasted is uploaded at once and shown as a chip in #composer-files: first an
  // "uploading…" placeholder, then the server's chip, whose hidden input sends the file's id
  // with the message (ws-send sends the composer form). A refused file says why in #notice and
  // leaves no chip. The server decides what it accepts; the count and size are checked here
  // too, for a quick answer.
  function composerFiles() {
    var list = byId("composer-files");
    return list ? list.querySelectorAll(".file-chip") : [];
  }
  function uploading() {
    var list = byId("composer-files");
    return Boolean(list && list.querySelector(".file-chip--uploading"));
  }
  // What the page says itself about files; a frame's notice replaces it.
  function fileNotice(text, level) {
    var notice = byId("notice");
    if (!notice) { return; }
    notice.className = "notice notice--" + level;
    notice.setAttribute("role", level === "error" ? "alert" : "status");
    notice.setAttribute("data-files", "");
    notice.textContent = text;
  }
  function clearFileNotice(level) {
    var notice = byId("notice");
    if (notice && notice.hasAttribute("data-files") && (!level || notice.classList.contains("notice--" + level))) {
      notice.textContent = "";
      notice.className = "notice";
      notice.setAttribute("role", "status");
      notice.removeAttribute("data-files");
    }
  }
  // As Django's filesizeformat says it (the server's messages use it).
  function sizeText(bytes) {
    if (bytes < 1024) { return fmt(ngettext("%(n)s byte", "%(n)s bytes", bytes), { n: bytes }); }
    var units = ["KB", "MB", "GB"];
    var value = bytes / 1024;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return value.toFixed(1) + " " + units[unit];
  }
  function fileName(file) { return file.name || gettext("pasted file"); }

  function attachFiles(fileList) {
    var chat = byId("chat");
    var list = byId("composer-files");
    if (!chat || !list || !chat.dataset.uploadUrl) { return; }
    var files = Array.prototype.slice.call(fileList || []);
    if (!files.length) { return; }
    var maxFiles = Number(chat.dataset.maxFiles) || 5;
    var maxBytes = Number(chat.dataset.maxBytes) || 0;
    var room = maxFiles - composerFiles().length;
    var problems = [];
    var left = 0;
    clearFileNotice();
    files.forEach(function (file) {
      if (maxBytes && file.size > maxBytes) {
        problems.push(fmt(gettext("%(name)s is %(size)s; files can be at most %(max)s."),
          { name: fileName(file), size: sizeText(file.size), max: sizeText(maxBytes) }));
      } else if (room <= 0) {
        left++;
      } else {
        room--;
        upload(file, chat, list);
      }
    });
    if (left) {
      problems.push(fmt(ngettext(
        "A message can carry at most %(max)s files: %(left)s more was not attached.",
        "A message can carry at most %(max)s files: %(left)s more were not attached.", left),
        { max: maxFiles, left: left }));
    }
    if (problems.length) { fileNotice(problems.join(" "), "error"); }
  }

  function placeholderChip(file) {
    var chip = document.createElement("li");
    chip.className = "file-chip file-chip--uploading";
    chip.setAttribute("aria-busy", "true");
    var icon = document.createElement("span");
    icon.className = "file-icon file-spinner";
    icon.setAttribute("aria-hidden", "true");
    var name = document.createElement("span");
    name.className = "file-name";
    name.textContent = name.title = fileName(file);
    var state = document.createElement("span");
    state.className = "file-size muted";
    state.textContent = gettext("uploading…");
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "file-remove";
    cancel.title = gettext("Cancel");
    cancel.setAttribute("aria-label", fmt(gettext("Cancel uploading %(name)s"), { name: fileName(file) }));
    cancel.textContent = "\u00d7";
    chip.append(icon, name, state, cancel);
    return chip;
  }

  function upload(file, chat, list) {
    var chip = placeholderChip(file);
    list.appendChild(chip);
    var controller = window.AbortController ? new AbortController() : null;
    chip.stopchatUpload = controller;
    var form = new FormData();
    form.append("file", file, fileName(file));
    // It waits in this conversation's composer (a new chat's without one) until sent: the page
    // shows it there again after a reload.
    if (chat.dataset.conversation) { form.append("conversation", chat.dataset.conversation); }
    fetch(chat.dataset.uploadUrl, {
      method: "POST",
      body: form,
      credentials: "same-origin",
      signal: controller ? controller.signal : undefined,
      // A header holds Latin-1 only; the name is in the form, this one only words a refusal.
      headers: { "X-CSRFToken": chat.dataset.csrf, "X-File-Name": fileName(file).replace(/[^\x20-\x7e]/g, "_") }
    }).then(function (response) {
      return response.text().then(function (text) { return { status: response.status, text: text }; });
    }).then(function (answer) {
      if (answer.status === 201) {
        var template = document.createElement("template");
        template.innerHTML = answer.text.trim();
        var done = template.content.querySelector("li.file-chip");
        if (done && !chip.isConnected) { discard(done); return; }  // cancelled meanwhile
        if (done) { chip.replaceWith(done); } else { answer.status = 0; }
      }
      if (answer.status !== 201 && chip.isConnected) {
        chip.remove();
        fileNotice(refusal(file, answer), "error");
      }
      if (!uploading()) { clearFileNotice("info"); }
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      var wasShown = chip.isConnected;
      chip.remove();
      if (wasShown) {
        fileNotice(fmt(gettext("%(name)s could not be uploaded: the server is unreachable."), { name: fileName(file) }), "error");
      }
      if (!uploading()) { clearFileNotice("info"); }
    });
  }
  function refusal(file, answer) {
    try {
      var message = JSON.parse(answer.text).error.message;
      if (typeof message === "string" && message) { return message; }
    } catch (ignored) { /* not the JSON error shape: a proxy's page, a login page */ }
    var name = { name: fileName(file), status: answer.status };
    if (!answer.status) { return fmt(gettext("%(name)s could not be uploaded."), name); }
    if (answer.status === 403) { return fmt(gettext("%(name)s could not be uploaded: reload the page and try again."), name); }
    return fmt(gettext("%(name)s could not be uploaded (HTTP %(status)s)."), name);
  }
  // Take an upload back out: from the page at once, from the server in the background.
  function discard(chip) {
    var button = chip.querySelector(".file-remove");
    var url = button && button.getAttribute("data-remove-url");
    var chat = byId("chat");
    if (chip.stopchatUpload) { chip.stopchatUpload.abort(); }
    chip.remove();
    if (url && chat) {
      fetch(url, {
        method: "POST",
        headers: { "X-CSRFToken": chat.dataset.csrf },
        credentials: "same-origin"
      }).catch(function () { /* gone anyway: an unsent upload is deleted after a day */ });
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target && event.target.closest ? event.target : null;
    if (!target) { return; }
    if (target.closest("#attach-button")) {
      var picker = byId("file-input");
      if (picker) { picker.click(); }
      return;
    }
    var remove = target.closest("#composer-files .file-remove");
    if (remove) {
      discard(remove.closest(".file-chip"));
      if (!uploading()) { clearFileNotice("info"); }
      var input = byId("composer-input");
      if (input) { input.focus(); }
    }
  });
  document.addEventListener("change", function (event) {
    if (!event.target || event.target.id !== "file-input") { return; }
    attachFiles(event.target.files);
    event.target.value = "";  // the same file can be picked again
    var input = byId("composer-input");
    if (input) { input.focus(); }
  });

  // Paste a screenshot (or copied files) anywhere on the page but another text field.
  document.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!byId("composer-files") || !data || !data.files || !data.files.length) { return; }
    var field = event.target && event.target.closest ? event.target.closest("input, textarea, select, [contenteditable]") : null;
    if (field && field.id !== "composer-input") { return; }
    event.preventDefault();
    attachFiles(data.files);
  });

  // Drag files over the page: an overlay says where they go; drop them anywhere.
  var dragDepth = 0;
  function carriesFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return Boolean(types && Array.prototype.indexOf.call(types, "Files") >= 0);
  }
  function showDropOverlay(shown) {
    var overlay = byId("drop-overlay");
    if (overlay) { overlay.hidden = !shown; }
  }
  document.addEventListener("dragenter", function (event) {
    if (!byId("composer-files") || !carriesFiles(event)) { return; }
    event.preventDefault();
    dragDepth++;
    showDropOverlay(true);
  });
  document.addEventListener("dragover", function (event) {
    if (!byId("composer-files") || !carriesFiles(event)) { return; }
    event.preventDefault();  // (without it the browser opens the file instead)
    event.dataTransfer.dropEffect = "copy";
    showDropOverlay(true);
  });
  document.addEventListener("dragleave", function (event) {
    if (!byId("composer-files") || !carriesFiles(event)) { return; }
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0 || !event.relatedTarget) { dragDepth = 0; showDropOverlay(false); }
  });
  document.addEventListener("drop", function (event) {
    if (!byId("composer-files") || !carriesFiles(event)) { return; }
    event.preventDefault();
    dragDepth = 0;
    showDropOverlay(false);
    attachFiles(event.dataTransfer.files);
    var input = byId("composer-input");
    if (input) { input.focus(); }
  });
  document.addEventListener("dragend", function () { dragDepth = 0; showDropOverlay(false); });

  // What is typed and not sent yet survives a reload: it is kept in this browser's
  // localStorage, one draft per user and conversation (data-draft-key, "new" for a new
  // chat's composer), always what the box holds, so a sent message, taken out of the box,
  // leaves the draft with it. Signing out forgets every draft.
  var DRAFT_PREFIX = "stopchat:draft:";
  function draftKey() {
    var chat = byId("chat");
    return chat && chat.dataset.draftKey ? DRAFT_PREFIX + chat.dataset.draftKey : null;
  }
  function keepDraft() {
    var key = draftKey();
    var input = byId("composer-input");
    if (!key || !input) { return; }
    try {
      if (input.value.trim() !== "") { window.localStorage.setItem(key, input.value); }
      else { window.localStorage.removeItem(key); }
    } catch (ignored) { /* storage full or refused (a private window): nothing kept */ }
  }
  function restoreDraft() {
    var key = draftKey();
    var input = byId("composer-input");
    if (!key || !input) { return; }
    // A refused first message is back in the box from the server: that is the draft now.
    if (input.value !== "") { keepDraft(); return; }
    var draft = null;
    try { draft = window.localStorage.getItem(key); } catch (ignored) { /* none kept */ }
    if (draft) {
      input.value = draft;
      input.setSelectionRange(draft.length, draft.length);
    }
  }
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "composer-input") { keepDraft(); }
  });
  document.addEventListener("htmx:wsAfterMessage", keepDraft);  // a command's frame empties the box
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form) { return; }
    if (form.id === "sign-out") {
      try {
        Object.keys(window.localStorage).forEach(function (key) {
          if (key.indexOf(DRAFT_PREFIX) === 0) { window.localStorage.removeItem(key); }
        });
      } catch (ignored) { /* nothing kept */ }
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", restoreDraft);
  } else {
    restoreDraft();
  }

  // A message is not sent while one of its files is still on its way (its id is not known
  // yet): the send waits for the user to press again. Capture phase, so that the handler
  // above sees it held back.
  // A new conversation's composer (templates/chat/new_chat.html) is a plain form: it waits
  // for its uploads the same way, and is sent once.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "start-form") { return; }
    if (uploading()) {
      event.preventDefault();
      fileNotice(gettext("A file is still uploading: send again when its chip is ready."), "info");
      return;
    }
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "true";
    // Sent: a refused message comes back in the box from the server, with its files.
    var key = draftKey();
    try { if (key) { window.localStorage.removeItem(key); } } catch (ignored) { /* none kept */ }
    var button = byId("send-button");
    if (button) { button.disabled = true; button.textContent = gettext("Sending…"); }
  });

  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (!event.target || event.target.id !== "send-button" || !uploading()) { return; }
    event.preventDefault();
    fileNotice(gettext("A file is still uploading: send again when its chip is ready."), "info");
  }, true);

  // The turn-started frame names the files the message took
  // (<template id="composer-files" hx-swap-oob="none" data-sent-files="id id …">,
  // templates/chat/frames.html; only the sending tab gets it): exactly those chips leave the
  // composer, so a file attached meanwhile stays, and a refused send keeps them all.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var detail = event.detail || {};
    var signal = detail.fragment;
    if (!detail.target || detail.target.id !== "composer-files" || !signal ||
        !signal.hasAttribute || !signal.hasAttribute("data-sent-files")) { return; }
    detail.shouldSwap = false;
    signal.getAttribute("data-sent-files").split(/\s+/).forEach(function (id) {
      var chip = id && byId("chip-" + id);
      if (chip) { chip.remove(); }
    });
  });

  // Frames append to the message list and may replace the composer's textarea (a command
  // empties it): keep the focus in the composer and follow the reply unless the user has
  // scrolled up to read.
  var hadFocus = false;
  var onActions = false;  // the focus was on Stop or Send, which a frame may swap away
  var nearBottom = true;
  var thinkingAtEnd = [];  // streaming thinking parts scrolled to their end (or not scrollable)
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var messages = byId("messages");
    thinkingAtEnd = [].filter.call(document.querySelectorAll(".msg--streaming .thinking-body"), function (body) {
      return body.scrollHeight - body.scrollTop - body.clientHeight < 24;
    });
    hadFocus = document.activeElement && document.activeElement.id === "composer-input";
    onActions = Boolean(document.activeElement && document.activeElement.closest &&
                        document.activeElement.closest("#composer-actions"));
    nearBottom = !messages || messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var input = byId("composer-input");
    if (hadFocus && input && document.activeElement !== input) { input.focus(); }
    // Stop (or Send) pressed with the mouse or the keyboard is swapped away when the reply ends
    // or starts: the keyboard goes on in the composer rather than at the top of the page.
    if (onActions && input && (!document.activeElement || document.activeElement === document.body)) { input.focus(); }
    var messages = byId("messages");
    if (messages) { keepInOrder(messages); }
    if (messages && nearBottom) { messages.scrollTop = messages.scrollHeight; }
    // A long thought scrolls in its own box: it follows the newest thinking, unless the reader
    // scrolled up in it.
    thinkingAtEnd.forEach(function (body) { if (body.isConnected) { body.scrollTop = body.scrollHeight; } });
    var jump = byId("jump-latest");
    if (jump && messages && !nearBottom) { jump.hidden = false; }
    updateLiveStatus();
    announceReplies();
    syncSidebarTitle();
    // /new: the server made a conversation and sent its link; go there.
    var go = byId("navigate");
    if (go) { window.location.assign(go.href); }
  });

  // What a screen reader hears of a reply (#announcer, a polite live region,
  // templates/chat/conversation.html): that it started, and how it ended, never its text as it
  // streams (the streaming bubble is no live region). The page watches the bubbles the frames
  // swap in: a new streaming one is a start; the one announced turning complete, interrupted or
  // error is its end. A reply streaming when the page opens is announced too.
  var answering = null;  // the id of the streaming reply announced
  function announce(key, fallback, extra) {
    var announcer = byId("announcer");
    if (!announcer) { return; }
    var text = (announcer.getAttribute("data-" + key) || fallback) + (extra ? " " + extra : "");
    // The same words again (a second reply finished) must still change the region to be read.
    if (announcer.textContent === text) { text += "\u00a0"; }
    announcer.textContent = text;
  }
  function announceReplies() {
    var streaming = document.querySelector("#messages article.msg--streaming");
    if (streaming) {
      if (streaming.id !== answering) { answering = streaming.id; announce("started", "Claude is answering."); }
      return;
    }
    if (!answering) { return; }
    var ended = byId(answering);
    answering = null;
    if (!ended) { return; }  // gone with a version switch or a deletion: nothing to say
    var note = ended.querySelector(".stop-note");
    if (ended.classList.contains("msg--error")) {
      var error = ended.querySelector(".msg-error");
      announce("failed", "The reply failed:", error ? error.textContent.trim() : "");
    } else if (ended.classList.contains("msg--interrupted")) {
      announce("stopped", "Reply stopped.", note ? note.textContent.trim() : "");
    } else {
      announce("finished", "Reply finished.", note ? note.textContent.trim() : "");
    }
  }
  document.addEventListener("htmx:afterSwap", announceReplies);
  document.addEventListener("DOMContentLoaded", function () { setTimeout(announceReplies, 100); });

  // A version switch (< or >) re-renders the message list, the pressed arrow with it: the
  // keyboard stays on that arrow in the version it led to (the other arrow where this one is
  // now disabled, at the first or last version; the composer if neither is there).
  var switchedTo = null;  // {id: the version asked for, next: whether > was pressed}
  document.addEventListener("htmx:beforeRequest", function (event) {
    var button = event.target && event.target.closest ? event.target.closest(".version-prev, .version-next") : null;
    switchedTo = button && button.dataset.version
      ? { id: button.dataset.version, next: button.classList.contains("version-next") }
      : null;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!switchedTo || !event.detail || !event.detail.target || event.detail.target.id !== "messages") { return; }
    var asked = switchedTo;
    switchedTo = null;
    var active = document.activeElement;
    if (active && active !== document.body && active.isConnected) { return; }  // the user moved on
    var article = byId("msg-" + asked.id);
    var same = article && article.querySelector(asked.next ? ".version-next" : ".version-prev");
    var other = article && article.querySelector(asked.next ? ".version-prev" : ".version-next");
    var input = byId("composer-input");
    if (same && !same.disabled) { same.focus(); } else if (other && !other.disabled) { other.focus(); } else if (input) { input.focus(); }
  });

  // The heading takes a new title from a frame (the first message, then the model's title);
  // the sidebar's entry follows it here, where a missing entry (a search hides it) is no error.
  var shownTitle = byId("chat-title") ? byId("chat-title").textContent : "";
  function syncSidebarTitle() {
    var chat = byId("chat");
    var heading = byId("chat-title");
    if (!chat || !heading || heading.textContent === shownTitle) { return; }
    var entry = byId("conv-" + chat.dataset.conversation + "-title");
    if (entry) { entry.textContent = heading.textContent; }
    var rename = byId("rename-title");  // a rename box left as it was follows the new title
    if (rename && document.activeElement !== rename && rename.value === rename.defaultValue) {
      rename.value = rename.defaultValue = heading.textContent;
    }
    shownTitle = heading.textContent;
  }

  // Follow the reply unless the user scrolled up to read; then offer a way back down.
  document.addEventListener("click", function (event) {
    if (!event.target || event.target.id !== "jump-latest") { return; }
    var messages = byId("messages");
    if (messages) { messages.scrollTop = messages.scrollHeight; }
    event.target.hidden = true;
  });
  document.addEventListener("scroll", function (event) {
    var messages = byId("messages");
    var jump = byId("jump-latest");
    if (event.target !== messages || !jump) { return; }
    if (messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80) { jump.hidden = true; }
  }, true);

  // A streaming reply's footer: connecting (nothing yet), thinking (thoughts, no answer yet),
  // then elapsed time and characters.
  var chat = byId("chat");
  var skewMs = chat && chat.dataset.serverNow ? Date.now() - Number(chat.dataset.serverNow) * 1000 : 0;
  function updateLiveStatus() {
    var items = document.querySelectorAll("article.msg--streaming .live-status");
    for (var i = 0; i < items.length; i++) {
      var article = items[i].closest("article");
      var text = article.querySelector(".msg-body").textContent;
      var thinking = article.querySelector(".thinking-body");
      var seconds = Math.max(0, (Date.now() - skewMs) / 1000 - Number(items[i].dataset.started));
      if (text.length === 0 && thinking && thinking.textContent.length > 0) {
        items[i].textContent = fmt(gettext("thinking · %(seconds)s s"), { seconds: seconds.toFixed(1) });
      } else {
        items[i].textContent = text.length === 0
          ? fmt(gettext("connecting… %(seconds)s s"), { seconds: seconds.toFixed(1) })
          : fmt(gettext("streaming · %(seconds)s s · %(chars)s characters"),
            { seconds: seconds.toFixed(1), chars: text.length.toLocaleString(document.documentElement.lang || undefined) });
      }
    }
  }
  setInterval(updateLiveStatus, 250);

  // Another tab's turn can reach this page after this tab's own, newer turn (the socket was
  // busy with its own Stop & Send while that turn's frame waited for it). Message ids grow
  // with time, so put the bubbles back in id order.
  function messageId(el) { return parseInt((el.id || "").slice(4), 10) || 0; }
  function keepInOrder(list) {
    var items = Array.prototype.slice.call(list.children);
    for (var i = 1; i < items.length; i++) {
      if (messageId(items[i]) < messageId(items[i - 1])) {
        items.sort(function (a, b) { return messageId(a) - messageId(b); });
        items.forEach(function (el) { list.appendChild(el); });
        return;
      }
    }
  }

  function setConnection(state, text) {
    var el = byId("connection");
    if (el) { el.dataset.state = state; el.textContent = text; }
  }
  // htmx's WebSocket extension reconnects by itself only after an abnormal closure (1006, 1011,
  // 1012, 1013); a server that restarts for a deploy closes cleanly (1000, 1001), so the page
  // reconnects then too, backing off. On reconnecting it is sent the true state (a catch-up).
  var retries = 0;
  var SELF_RECONNECTING = [1006, 1011, 1012, 1013];
  document.addEventListener("htmx:wsOpen", function () { retries = 0; setConnection("open", gettext("connected")); });
  var GONE = 4404;  // the conversation was deleted (chat/consumers.py): nothing to reconnect to
  document.addEventListener("htmx:wsClose", function (event) {
    var detail = event.detail || {};
    var code = detail.event ? detail.event.code : 0;
    if (code === GONE) { setConnection("closed", gettext("conversation deleted")); return; }
    setConnection("closed", gettext("disconnected, reconnecting…"));
    if (!detail.socketWrapper || SELF_RECONNECTING.indexOf(code) >= 0) { return; }
    var delay = Math.min(10000, 500 * Math.pow(2, retries++)) * (0.5 + Math.random() / 2);
    setTimeout(function () { detail.socketWrapper.reconnect(); }, delay);
  });
  document.addEventListener("htmx:wsError", function () { setConnection("closed", gettext("connection error")); });

  document.addEventListener("DOMContentLoaded", function () {
    var messages = byId("messages");
    if (messages) { messages.scrollTop = messages.scrollHeight; }
    var input = byId("composer-input");
    if (input) { input.focus(); }
  });
})();

// "Show earlier messages" (a page opens with the newest messages only) puts older bubbles above
// the ones in view: keep the view where it was, instead of letting it jump by the height of
// what was added. htmx moves the focus to the next such button (same id); with none left, the
// keyboard goes back to the composer.
(function () {
  "use strict";
  var fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail || {};
    var messages = document.getElementById("messages");
    if (!messages || !detail.shouldSwap || !detail.target || detail.target.id !== "earlier-messages") { return; }
    fromBottom = messages.scrollHeight - messages.scrollTop;
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (fromBottom === null) { return; }
    var messages = document.getElementById("messages");
    if (messages) { messages.scrollTop = messages.scrollHeight - fromBottom; }
    fromBottom = null;
    var input = document.getElementById("composer-input");
    if (!document.getElementById("show-earlier") && input && document.activeElement === document.body) {
      input.focus({ preventScroll: true });
    }
  });
})();
