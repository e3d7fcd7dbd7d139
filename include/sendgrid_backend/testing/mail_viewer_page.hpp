#pragma once

/// @file
/// The mail viewer the fake server serves on `GET /`: one page of plain HTML, CSS and
/// JavaScript (no build step, no external resource) over the fake server's JSON endpoints
/// (`/__messages`, `/__events`, `/__requests`).
///
/// A mail is untrusted input, so the page never parses mail data as HTML: every value is
/// inserted as text, and the HTML body is shown in an `<iframe sandbox srcdoc>` without
/// `allow-scripts` (its scripts never run) nor `allow-same-origin` (it cannot reach the page).
/// `mail_viewer_content_security_policy()` is the header to send with the page: it lets only
/// the page's own script run, and the iframe inherits it.

#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {
namespace detail {

/// The page (HTML, CSS and JavaScript in one document).
inline std::string_view mail_viewer_html() {
    return R"page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Local SendGrid</title>
<style>
:root { --line: #d8dde3; --muted: #5f6b7a; --accent: #1a5fb4; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1f2328; background: var(--bg); }
header { display: flex; gap: 12px; align-items: center; padding: 10px 16px;
         background: #0d2a4a; color: #fff; }
header h1 { font-size: 16px; margin: 0 12px 0 0; white-space: nowrap; }
header input { flex: 1; max-width: 420px; padding: 6px 10px; border-radius: 4px;
               border: 1px solid #7a8ca3; font: inherit; }
button { font: inherit; padding: 4px 10px; border-radius: 4px; border: 1px solid var(--line);
         background: #fff; cursor: pointer; }
button:hover { border-color: var(--accent); }
header button { background: #23446b; color: #fff; border-color: #5a7aa3; }
#notice { padding: 6px 16px; background: #fff4ce; border-bottom: 1px solid #e6d48a; }
#status { margin-left: auto; font-size: 12px; color: #cfd8e3; }
main { display: grid; grid-template-columns: minmax(280px, 38%) 1fr;
       height: calc(100vh - 52px); }
#list { margin: 0; padding: 0; list-style: none; overflow-y: auto; background: #fff;
        border-right: 1px solid var(--line); }
#list li { padding: 10px 14px; border-bottom: 1px solid var(--line); cursor: pointer; }
#list li:hover { background: #eef4fb; }
#list li.selected { background: #dceafb; }
#list .top { display: flex; justify-content: space-between; gap: 8px; }
#list .subject { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#list time, .meta { color: var(--muted); font-size: 12px; white-space: nowrap; }
.empty { padding: 24px; color: var(--muted); }
.badge { display: inline-block; margin: 2px 4px 0 0; padding: 0 6px; border-radius: 9px;
         font-size: 12px; background: #e8ebef; white-space: nowrap; }
.status-delivered { background: #d3f2dc; }
.status-bounce, .status-blocked, .status-dropped, .status-spamreport { background: #fbd5d5; }
.status-deferred, .status-scheduled { background: #fdebc8; }
.status-open, .status-click { background: #d6e6fb; }
.status-unsubscribe, .status-group_unsubscribe { background: #eadcf8; }
.status-cancelled { background: #e8ebef; text-decoration: line-through; }
.category { background: #f0f0f0; border: 1px solid var(--line); }
#detail { overflow-y: auto; padding: 16px 20px; }
#detail h2 { margin: 0 0 8px; font-size: 18px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 12px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
td, th { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
td.actions, td.time { white-space: nowrap; }
td.actions button { padding: 2px 8px; margin-right: 4px; }
.tabs { display: flex; gap: 4px; margin-top: 16px; }
.tabs button[aria-selected="true"] { background: var(--accent); color: #fff; }
.panel { border: 1px solid var(--line); background: #fff; padding: 8px; min-height: 120px; }
iframe { width: 100%; height: 360px; border: 0; background: #fff; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; }
details summary { cursor: pointer; }
</style>
</head>
<body>
<header>
  <h1>Local SendGrid</h1>
  <input id="search" type="search" placeholder="Search recipient, subject or category"
         aria-label="Search recipient, subject or category" autocomplete="off">
  <button id="refresh" type="button">Refresh</button>
  <button id="clear" type="button" title="DELETE /__requests">Clear all</button>
  <span id="status" role="status"></span>
</header>
<div id="notice" hidden></div>
<main>
  <ul id="list" aria-label="Messages, newest first"></ul>
  <section id="detail" aria-live="polite">
    <p class="empty">Choose a message on the left.</p>
  </section>
</main>
<script>
"use strict";
// Mail data is untrusted: it only ever reaches the page as text (textContent, attribute
// values, srcdoc of a sandboxed iframe), never through innerHTML.
const EVENT_BUTTONS = [["delivered", "deliver"], ["bounce", "bounce"], ["open", "open"],
                       ["click", "click"], ["spamreport", "report spam"]];
const TABS = ["HTML", "Text", "Request", "Attachments"];
let shownListJson = "";
let shownMessageJson = "";
let shownMessageId = "";
let shownTab = "HTML";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
function time(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toLocaleString();
}
function badge(status) {
  return el("span", {class: "badge status-" + String(status).replace(/[^a-z_]/g, ""),
                     text: status});
}
function setStatus(text) { document.getElementById("status").textContent = text; }
async function request(method, url, body) {
  const options = {method, headers: {}};
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, options);
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (error) { json = null; }
  if (!response.ok) {
    const reason = json && (json.errors && json.errors[0] && json.errors[0].message ||
                            json.error || json.message);
    throw new Error(method + " " + url + ": HTTP " + response.status +
                    (reason ? " (" + reason + ")" : text ? " (" + text.slice(0, 200) + ")" : ""));
  }
  return json;
}
function messageUrl(id) { return "/__messages/" + encodeURIComponent(id); }
function selectedId() {
  const match = location.hash.match(/^#\/message\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : "";
}

function renderNotice(list) {
  const notice = document.getElementById("notice");
  const dropped = list.dropped || 0;
  const max = list.max_messages;
  let text = "";
  if (dropped > 0) {
    text = dropped + (dropped === 1 ? " older message was" : " older messages were") +
           " dropped: the server keeps the newest " + max + " (--max-messages).";
  } else if (typeof max === "number") {
    text = "The server keeps the newest " + max + " messages (--max-messages).";
  }
  notice.textContent = text;
  notice.hidden = text === "";
}
function renderList(list) {
  const json = JSON.stringify(list);
  if (json === shownListJson) return markSelected();
  shownListJson = json;
  renderNotice(list);
  const items = (list.messages || []).map(message => {
    const recipients = el("div", {});
    for (const recipient of message.recipients || []) {
      recipients.append(el("span", {class: "badge status-" +
                                    String(recipient.status).replace(/[^a-z_]/g, ""),
                                    title: recipient.status,
                                    text: recipient.email + ": " + recipient.status}));
    }
    const categories = (message.categories || []).map(c => el("span", {class: "badge category",
                                                                        text: c}));
    return el("li", {"data-message-id": message.message_id,
                     onclick: () => { location.hash = "#/message/" +
                                                      encodeURIComponent(message.message_id); }},
              el("div", {class: "top"},
                 el("span", {class: "subject", text: message.subject || "(no subject)"}),
                 el("time", {text: time(message.received_at)})),
              el("div", {class: "meta", text: "from " + (message.from || "")}),
              recipients, categories.length ? el("div", {}, ...categories) : null);
  });
  const query = document.getElementById("search").value.trim();
  const listNode = document.getElementById("list");
  listNode.replaceChildren(...items);
  if (items.length === 0) {
    listNode.append(el("li", {class: "empty", text: query ?
        "No message matches \u201c" + query + "\u201d." :
        "No messages yet: send one to POST " + location.origin + "/v3/mail/send."}));
  }
  markSelected();
}
function markSelected() {
  for (const item of document.querySelectorAll("#list li[data-message-id]")) {
    item.classList.toggle("selected", item.dataset.messageId === selectedId());
  }
}

function recipientsTable(message) {
  const button = (email, event, label) => el("button", {
    type: "button", "data-event": event, title: "Send a signed " + event + " event", text: label,
    onclick: () => fire(message.message_id, email, event)});
  const rows = (message.recipients || []).map(recipient => el("tr", {"data-email": recipient.email},
    el("td", {text: recipient.email}), el("td", {}, badge(recipient.status)),
    el("td", {class: "actions"},
       ...EVENT_BUTTONS.map(([event, label]) => button(recipient.email, event, label)))));
  return el("table", {id: "recipients"},
            el("tr", {}, el("th", {text: "Recipient"}), el("th", {text: "Status"}),
               el("th", {text: "Send an event"})), ...rows);
}
function timeline(message) {
  const events = message.events || [];
  if (events.length === 0) return el("p", {class: "meta", text: "No event fired yet."});
  const rows = events.map(event => {
    const details = [event.type, event.reason, event.url, event.response]
                        .filter(Boolean).join(" \u00b7 ");
    return el("tr", {class: "event"}, el("td", {class: "time", text: time(event.timestamp)}),
              el("td", {}, badge(event.event)), el("td", {text: event.email || ""}),
              el("td", {}, details ? el("div", {text: details}) : null,
                 el("details", {}, el("summary", {text: "JSON"}),
                    el("pre", {text: JSON.stringify(event, null, 2)}))));
  });
  return el("table", {id: "events"},
            el("tr", {}, el("th", {text: "Time"}), el("th", {text: "Event"}),
               el("th", {text: "Recipient"}), el("th", {text: "Details"})), ...rows);
}
function panel(message, tab) {
  if (tab === "HTML") {
    if (typeof message.html !== "string") return el("p", {class: "meta", text: "No HTML body."});
    // No allow-scripts: the mail's scripts never run. No allow-same-origin: an opaque origin.
    const frame = el("iframe", {sandbox: "", title: "HTML body", referrerpolicy: "no-referrer"});
    frame.srcdoc = message.html;
    return frame;
  }
  if (tab === "Text") {
    return typeof message.text === "string" ? el("pre", {id: "text-body", text: message.text})
                                            : el("p", {class: "meta", text: "No text body."});
  }
  if (tab === "Request") {
    return el("pre", {id: "request-json", text: JSON.stringify(message.request, null, 2)});
  }
  const attachments = message.attachments || [];
  if (attachments.length === 0) return el("p", {class: "meta", text: "No attachments."});
  return el("ul", {id: "attachments"}, ...attachments.map(a => el("li", {},
    el("a", {href: messageUrl(message.message_id) + "/attachments/" +
                   encodeURIComponent(a.index),
             download: a.filename || "attachment", text: a.filename || "(no name)"}),
    el("span", {class: "meta", text: " " + (a.type || "") + ", " + a.size + " bytes"}))));
}
function renderTabs(message) {
  const tabs = el("div", {class: "tabs", role: "tablist"}, ...TABS.map(tab => el("button", {
    type: "button", role: "tab", "data-tab": tab, "aria-selected": String(tab === shownTab),
    text: tab === "Attachments" ? tab + " (" + (message.attachments || []).length + ")" : tab,
    onclick: () => { shownTab = tab; renderTabs(message); }})));
  document.getElementById("tabs").replaceWith(el("div", {id: "tabs"}, tabs,
    el("div", {class: "panel", role: "tabpanel"}, panel(message, shownTab))));
}
function renderMessage(message) {
  const json = JSON.stringify(message);
  if (json === shownMessageJson) return;
  const sameMessage = shownMessageId === message.message_id;
  shownMessageJson = json;
  shownMessageId = message.message_id;
  const facts = [["From", message.from], ["Message ID", message.message_id],
                 ["Received", time(message.received_at)],
                 ["Send at", message.send_at !== undefined ? time(message.send_at) : null],
                 ["Batch", message.batch_id],
                 ["Categories", (message.categories || []).join(", ") || null]];
  const list = el("dl", {});
  for (const [name, value] of facts) {
    if (value) list.append(el("dt", {text: name}), el("dd", {text: value}));
  }
  const summary = el("div", {id: "summary"},
                     el("h2", {id: "subject", text: message.subject || "(no subject)"}), list,
                     el("h3", {text: "Recipients"}), recipientsTable(message),
                     el("h3", {text: "Event timeline"}), timeline(message));
  const detail = document.getElementById("detail");
  if (sameMessage && document.getElementById("summary")) {
    // Only statuses and events changed: the body's iframe stays as it is (moving it reloads it).
    document.getElementById("summary").replaceWith(summary);
    return;
  }
  detail.replaceChildren(summary, el("div", {id: "tabs"}));
  renderTabs(message);
}

async function fire(messageId, email, event) {
  try {
    const answer = await request("POST", "/__events", {message_id: messageId, email, event});
    const fired = answer && answer.events ? answer.events.length : 0;
    setStatus("Sent " + event + " for " + email + " (" + fired + " event" +
              (fired === 1 ? "" : "s") + ")");
  } catch (error) {
    setStatus(error.message);
  }
  await refresh();
}
let refreshes = 0;
async function refresh() {
  // Answers can arrive out of order (a poll, then a keystroke): only the latest is shown.
  const mine = ++refreshes;
  const query = document.getElementById("search").value.trim();
  try {
    const search = query ? "?q=" + encodeURIComponent(query) : "";
    const list = await request("GET", "/__messages" + search);
    if (mine !== refreshes) return;
    renderList(list);
    const id = selectedId();
    if (id) {
      const message = await request("GET", messageUrl(id));
      if (mine === refreshes) renderMessage(message);
    } else if (shownMessageId) {
      shownMessageId = shownMessageJson = "";
      document.getElementById("detail").replaceChildren(
          el("p", {class: "empty", text: "Choose a message on the left."}));
    }
  } catch (error) {
    setStatus(error.message);
  }
}
async function clearAll() {
  try {
    await request("DELETE", "/__requests");
    setStatus("Cleared");
  } catch (error) {
    setStatus(error.message);
  }
  if (location.hash) location.hash = ""; else await refresh();
}

let searchTimer = 0;
document.getElementById("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refresh, 150);
});
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("clear").addEventListener("click", clearAll);
window.addEventListener("hashchange", refresh);
// Events fired by the server itself (a send_at passing, a batch resumed) show up unasked.
setInterval(() => { if (!document.hidden) refresh(); }, 2000);
refresh();
</script>
</body>
</html>
)page";
}

/// The Content-Security-Policy to send with the page: nothing from the network but the
/// server's own JSON (a mail's remote images stay unloaded), only the page's own script (by
/// its hash: tests/browser/test_mail_viewer.py names the new one when the script changes), and
/// no frames of other pages. The mail's iframe (srcdoc) inherits it, a second lock after its
/// sandbox.
inline std::string_view mail_viewer_content_security_policy() {
    return "default-src 'none'; "
           "script-src 'sha256-5JQODSq+UvBH45QHtb5W1Il98RgqkJsfJeh+ocFqRMg='; "
           "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
           "frame-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

}  // namespace detail
}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
