// The notify console: one page, routed by the URL's fragment, that calls the API with the key
// the person signed in with. The key lives in sessionStorage (gone with the tab), never in a
// URL. Everything shown is built as DOM nodes with text, never parsed as HTML; an email's HTML
// is only ever put in a sandboxed frame that cannot run script.
"use strict";

const KEY = "notify.apiKey";
const TERMINAL = ["completed", "partially_failed", "failed", "cancelled"];
const CHANNELS = ["email", "sms", "in_app", "push"];
const DELIVERY_STATUSES = ["pending", "sent", "failed", "skipped", "delivered", "bounced", "complained"];

let timer = null; // the current page's refresh, stopped when the page changes
let generation = 0; // which page is current: an answer for an earlier one is dropped

// ---- DOM ----------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function page(title, ...content) {
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", {}, title), ...content);
  document.title = `${title} · notify console`;
  main.focus();
  return main;
}

function say(message, isError) {
  const status = document.getElementById("status");
  status.textContent = message || "";
  status.className = isError ? "error" : "";
}

function table(caption, headings, rows) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, "None."))));
}

function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "";
}

function target(to) {
  if (!to) return "";
  const [kind, value] = Object.entries(to).find(([, v]) => v) || ["", ""];
  return `${kind.replace("_id", "")}: ${value}`;
}

function statusText(status) {
  return h("span", { class: `status-${status}` }, status);
}

// ---- API ----------------------------------------------------------------------------------

class Unauthorized extends Error {}

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

async function api(path, options) {
  const key = sessionStorage.getItem(KEY);
  const headers = { Authorization: `Bearer ${key}` };
  const init = { method: "GET", ...options, headers };
  if (options && options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options && options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized();
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

function failed(error) {
  if (error instanceof Unauthorized) {
    sessionStorage.removeItem(KEY);
    signIn("The API key was refused; sign in again.");
    return;
  }
  const fields = error.errors && error.errors.length
    ? ": " + error.errors.map((e) => `${e.field} ${e.message}`).join("; ")
    : "";
  say(`${error.message}${fields}`, true);
}

const path = (...parts) => parts.map(encodeURIComponent).join("/");

// ---- sign in ------------------------------------------------------------------------------

function signIn(message) {
  stopRefresh();
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true });
  const form = h("form", { id: "sign-in" },
    h("label", { for: "api-key" }, "API key", input),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      await api("/v1/notifications?limit=1");
    } catch (error) {
      if (error instanceof Unauthorized) {
        sessionStorage.removeItem(KEY);
        say("That API key was refused.", true);
        input.focus();
        return;
      }
      failed(error);
      return;
    }
    say("");
    await showNav();
    if (location.hash === "" || location.hash === "#/sign-in") location.hash = "#/notifications";
    else route();
  });
  page("Sign in", h("p", {}, "Sign in with an API key of this deployment. It is kept in this tab only."), form);
  say(message || "", Boolean(message));
  input.focus();
}

async function showNav() {
  document.getElementById("nav").hidden = false;
  // notifyd without providers keeps what it "sent" in an outbox; other deployments have none.
  let hasOutbox = false;
  try {
    await api("/v1/outbox/sms?limit=1");
    hasOutbox = true;
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
  }
  document.getElementById("nav-outbox").hidden = !hasOutbox;
}

// ---- pages --------------------------------------------------------------------------------

function stopRefresh() {
  generation += 1;
  if (timer) clearTimeout(timer);
  timer = null;
}

function every(ms, tick) {
  const mine = generation;
  const run = async () => {
    let again = false;
    try {
      again = await tick();
    } catch (error) {
      if (mine === generation) failed(error);
    }
    if (again && mine === generation) timer = setTimeout(run, ms);
  };
  if (mine === generation) timer = setTimeout(run, ms);
}

// Whether the page that asked is still the one shown.
function current(mine) {
  return mine === generation;
}

async function notificationsPage() {
  const body = h("tbody", {});
  const list = h("table", {},
    h("caption", {}, "Newest first; refreshed while a send is under way"),
    h("thead", {}, h("tr", {}, ["Id", "Created", "To", "Channels", "Status"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  page("Notifications", h("p", {}, h("a", { href: "#/send" }, "Send a notification")), list);
  const load = async () => {
    const result = await api("/v1/notifications?limit=50");
    body.replaceChildren(...result.items.map((n) => h("tr", { "data-id": n.id },
      h("td", {}, h("a", { href: `#/notifications/${n.id}` }, n.id)),
      h("td", {}, when(n.created_at)),
      h("td", {}, target(n.to)),
      h("td", {}, n.channels.join(", ")),
      h("td", { class: "status" }, statusText(n.status)))));
    if (!result.items.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No notifications yet.")));
    return result.items.some((n) => n.status === "queued" || n.status === "sending");
  };
  const mine = generation;
  if ((await load()) && current(mine)) every(2000, load);
}

async function notificationPage(id) {
  const summary = h("dl", { id: "summary" });
  const counts = h("tbody", {});
  const deliveries = h("tbody", {});
  const statusFilter = h("select", { id: "filter-status", name: "status" },
    h("option", { value: "" }, "any"), DELIVERY_STATUSES.map((s) => h("option", { value: s }, s)));
  const channelFilter = h("select", { id: "filter-channel", name: "channel" },
    h("option", { value: "" }, "any"), CHANNELS.map((c) => h("option", { value: c }, c)));
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let cursor = null;

  const deliveryRow = (d) => h("tr", {},
    h("td", {}, d.user_id || d.address || d.recipient),
    h("td", {}, d.channel),
    h("td", {}, d.address || ""),
    h("td", { class: "status" }, statusText(d.status)),
    h("td", {}, String(d.attempts)),
    h("td", {}, d.error || ""),
    h("td", {}, h("a", { href: `#/notifications/${path(id, d.recipient, d.channel)}` }, "Message")));

  const loadDeliveries = async (append) => {
    const query = new URLSearchParams({ limit: "100" });
    if (statusFilter.value) query.set("status", statusFilter.value);
    if (channelFilter.value) query.set("channel", channelFilter.value);
    if (append && cursor) query.set("cursor", cursor);
    const result = await api(`/v1/notifications/${path(id)}/deliveries?${query}`);
    const rows = result.items.map(deliveryRow);
    if (append) deliveries.append(...rows);
    else deliveries.replaceChildren(...rows);
    cursor = result.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => loadDeliveries(true).catch(failed));
  const filters = h("form", { class: "inline", "aria-label": "Filter deliveries" },
    h("label", { for: "filter-status" }, "Status", statusFilter),
    h("label", { for: "filter-channel" }, "Channel", channelFilter));
  for (const select of [statusFilter, channelFilter]) {
    select.addEventListener("change", () => loadDeliveries(false).catch(failed));
  }

  page(`Notification ${id}`, summary,
    h("table", {}, h("caption", {}, "Deliveries by status"),
      h("thead", {}, h("tr", {}, ["Recipients", "Pending", "Sent", "Failed", "Skipped", "Delivered", "Bounced", "Complained"].map((t) => h("th", { scope: "col" }, t)))),
      counts),
    h("h2", {}, "Deliveries"), filters,
    h("table", {}, h("caption", {}, "One per recipient and channel; a filtered page may be short"),
      h("thead", {}, h("tr", {}, ["Recipient", "Channel", "Address", "Status", "Attempts", "Error or reason", ""].map((t) => h("th", { scope: "col" }, t)))),
      deliveries),
    more);

  let last = "";
  const load = async () => {
    const n = await api(`/v1/notifications/${path(id)}`);
    const facts = [
      ["Status", statusText(n.status), "notification-status"],
      ["To", target(n.to)],
      ["Channels", n.channels.join(", ")],
      ["Send at", when(n.send_at)],
      ["Created", when(n.created_at)],
      n.category ? ["Category", n.category] : null,
      n.template_id ? ["Template", n.template_id] : null,
    ].filter(Boolean);
    summary.replaceChildren(...facts.flatMap(([term, value, id]) => [h("dt", {}, term), h("dd", { id }, value)]));
    const c = n.counts;
    counts.replaceChildren(h("tr", { id: "counts" }, [c.recipients, c.pending, c.sent, c.failed, c.skipped, c.delivered, c.bounced, c.complained]
      .map((v, i) => h("td", { "data-count": ["recipients", "pending", "sent", "failed", "skipped", "delivered", "bounced", "complained"][i] }, String(v)))));
    const now = JSON.stringify(c) + n.status;
    if (now !== last && !cursor) await loadDeliveries(false);
    last = now;
    return !TERMINAL.includes(n.status);
  };
  const mine = generation;
  if ((await load()) && current(mine)) every(1000, load);
}

function emailView(email) {
  const frame = h("iframe", { class: "email", title: "The email's HTML part", sandbox: "", referrerpolicy: "no-referrer" });
  // The sandbox (no allow-scripts, no same origin) is set before the content: the sender's
  // markup never runs script, nor reaches this page or its key.
  if (email.html !== null && email.html !== undefined) frame.srcdoc = email.html;
  return [
    h("dl", {},
      h("dt", {}, "From"), h("dd", {}, email.from || ""),
      h("dt", {}, "To"), h("dd", {}, email.to || ""),
      h("dt", {}, "Subject"), h("dd", { id: "email-subject" }, email.subject || "")),
    h("h2", {}, "HTML"),
    email.html !== null && email.html !== undefined ? frame : h("p", { class: "muted" }, "No HTML part."),
    h("h2", {}, "Text"),
    email.text !== null && email.text !== undefined ? h("pre", { id: "email-text" }, email.text) : h("p", { class: "muted" }, "No text part."),
    table("Headers", ["Name", "Value"], (email.headers || []).map((x) => h("tr", {}, h("td", {}, x.name), h("td", {}, x.value)))),
  ];
}

function partView(label, part) {
  return h("dl", { id: "message" },
    part.to !== undefined ? [h("dt", {}, "To"), h("dd", {}, part.to)] : null,
    part.title !== undefined ? [h("dt", {}, "Title"), h("dd", {}, part.title || "")] : null,
    h("dt", {}, label), h("dd", {}, h("pre", {}, part.body || "")),
    part.url ? [h("dt", {}, "Link"), h("dd", {}, part.url)] : null);
}

async function messagePage(id, recipient, channel) {
  page(`Message to ${recipient} (${channel})`, h("p", {}, h("a", { href: `#/notifications/${id}` }, "Back to the notification")));
  const mine = generation;
  const m = await api(`/v1/notifications/${path(id)}/deliveries/${path(recipient, channel)}/message`);
  if (!current(mine)) return;
  const main = document.getElementById("main");
  main.append(h("p", { class: "muted" }, "Rendered now from the notification, its template and the recipient as they are now."));
  if (m.email) main.append(...emailView(m.email));
  if (m.sms) main.append(partView("SMS", m.sms));
  if (m.in_app) main.append(partView("Body", m.in_app));
  if (m.push) main.append(partView("Body", m.push));
}

function sendPage() {
  const field = (id, label, input) => h("label", { for: id }, label, input);
  const kind = h("select", { id: "to-kind", name: "to-kind" },
    ["user_id", "group_id", "email", "phone"].map((k) => h("option", { value: k }, k.replace("_id", ""))));
  const to = h("input", { id: "to", name: "to", required: true });
  const boxes = CHANNELS.map((c) => h("input", { type: "checkbox", id: `channel-${c}`, name: "channels", value: c, checked: c === "email" }));
  const subject = h("input", { id: "subject", name: "subject" });
  const text = h("textarea", { id: "text", name: "text" });
  const html = h("textarea", { id: "html", name: "html" });
  const sms = h("textarea", { id: "sms", name: "sms" });
  const inApp = h("textarea", { id: "in-app", name: "in-app" });
  const form = h("form", { id: "send" },
    h("fieldset", {}, h("legend", {}, "To"), field("to-kind", "Kind", kind), field("to", "Id or address", to)),
    h("fieldset", {}, h("legend", {}, "Channels"), boxes.map((b) => h("label", { for: b.id }, b, b.value))),
    field("subject", "Email subject", subject),
    field("text", "Email text", text),
    field("html", "Email HTML", html),
    field("sms", "SMS text", sms),
    field("in-app", "In-app body", inApp),
    h("button", { type: "submit" }, "Send now"));
  const idempotencyKey = crypto.randomUUID();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = {};
    for (const [name, el] of [["subject", subject], ["text", text], ["html", html], ["sms", sms]]) {
      if (el.value) content[name] = el.value;
    }
    if (inApp.value) content.in_app = { body: inApp.value };
    const body = {
      to: { [kind.value]: to.value.trim() },
      channels: boxes.filter((b) => b.checked).map((b) => b.value),
      content,
    };
    try {
      const accepted = await api("/v1/notifications", { method: "POST", body, idempotencyKey });
      say(`Accepted ${accepted.id}.`);
      location.hash = `#/notifications/${accepted.id}`;
    } catch (error) {
      failed(error);
    }
  });
  page("Send a notification", form);
}

async function groupsPage(groupId) {
  const input = h("input", { id: "group-id", name: "group-id", required: true, value: groupId || "" });
  const form = h("form", { class: "inline" }, h("label", { for: "group-id" }, "Group id", input), h("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/groups/${encodeURIComponent(input.value.trim())}`;
  });
  page(groupId ? `Group ${groupId}` : "Groups", form);
  const main = document.getElementById("main");
  const mine = generation;
  if (!groupId) {
    // No list of all groups in the API: offer the groups recent sends went to.
    const recent = await api("/v1/notifications?limit=100");
    if (!current(mine)) return;
    const ids = [...new Set(recent.items.map((n) => n.to.group_id).filter(Boolean))];
    main.append(h("h2", {}, "Groups of recent sends"),
      ids.length ? h("ul", {}, ids.map((g) => h("li", {}, h("a", { href: `#/groups/${encodeURIComponent(g)}` }, g))))
        : h("p", { class: "muted" }, "No recent send went to a group."));
    return;
  }
  const group = await api(`/v1/groups/${path(groupId)}`);
  if (!current(mine)) return;
  const members = h("tbody", {});
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let cursor = null;
  const load = async () => {
    const query = new URLSearchParams({ limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const result = await api(`/v1/groups/${path(groupId)}/members?${query}`);
    members.append(...result.items.map((m) => h("tr", {}, h("td", {}, m.user_id || m))));
    cursor = result.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load().catch(failed));
  main.append(
    h("dl", {}, h("dt", {}, "Name"), h("dd", {}, group.name || ""), h("dt", {}, "Members"), h("dd", {}, String(group.member_count ?? ""))),
    h("table", {}, h("caption", {}, "Members"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"))), members),
    more);
  await load();
}

async function suppressionsPage() {
  const rows = h("tbody", {});
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let cursor = null;
  const load = async () => {
    const query = new URLSearchParams({ limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const result = await api(`/v1/suppressions?${query}`);
    rows.append(...result.items.map((s) => {
      const remove = h("button", { type: "button", "aria-label": `Remove ${s.address}` }, "Remove");
      remove.addEventListener("click", async () => {
        if (!confirm(`Send to ${s.address} again?`)) return;
        try {
          await api(`/v1/suppressions/${path(s.address)}`, { method: "DELETE" });
          remove.closest("tr").remove();
          say(`${s.address} removed from the suppression list.`);
        } catch (error) {
          failed(error);
        }
      });
      return h("tr", {}, h("td", {}, s.address), h("td", {}, s.channel), h("td", {}, s.reason), h("td", {}, when(s.created_at)), h("td", {}, remove));
    }));
    cursor = result.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load().catch(failed));
  page("Suppressions",
    h("p", {}, "Addresses every send skips, after a bounce, a complaint, an opt-out or by hand."),
    h("table", {}, h("caption", {}, "Suppressed addresses"),
      h("thead", {}, h("tr", {}, ["Address", "Channel", "Reason", "Since", ""].map((t) => h("th", { scope: "col" }, t)))), rows),
    more);
  await load();
}

async function outboxPage() {
  page("Outbox", h("p", {}, "What this notifyd wrote instead of sending, newest first."));
  const main = document.getElementById("main");
  const mine = generation;
  const [emails, sms] = await Promise.all([api("/v1/outbox/emails?limit=100"), api("/v1/outbox/sms?limit=100")]);
  if (!current(mine)) return;
  main.append(
    table("Emails", ["Written", "To", "Subject"], emails.items.map((e) => h("tr", {},
      h("td", {}, when(e.written_at)), h("td", {}, e.to || ""),
      h("td", {}, h("a", { href: `#/outbox/${encodeURIComponent(e.id)}` }, e.subject || "(no subject)"))))),
    table("SMS", ["At", "To", "Text"], sms.items.map((s) => h("tr", {},
      h("td", {}, when(s.at)), h("td", {}, s.to), h("td", {}, h("pre", {}, s.body))))));
}

async function outboxEmailPage(id) {
  const mine = generation;
  const email = await api(`/v1/outbox/emails/${path(id)}`);
  if (!current(mine)) return;
  page(email.subject || "(no subject)", h("p", {}, h("a", { href: "#/outbox" }, "Back to the outbox")), ...emailView(email));
}

// ---- routing ------------------------------------------------------------------------------

async function route() {
  stopRefresh();
  if (!sessionStorage.getItem(KEY)) {
    signIn();
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", false);
    if (link.getAttribute("href") === `#/${parts[0] || "notifications"}`) link.setAttribute("aria-current", "page");
  }
  say("");
  try {
    switch (parts[0]) {
      case "send": sendPage(); break;
      case "groups": await groupsPage(parts[1]); break;
      case "suppressions": await suppressionsPage(); break;
      case "outbox": await (parts[1] ? outboxEmailPage(parts[1]) : outboxPage()); break;
      case "notifications":
        if (parts.length >= 4) await messagePage(parts[1], parts[2], parts[3]);
        else if (parts[1]) await notificationPage(parts[1]);
        else await notificationsPage();
        break;
      default: await notificationsPage();
    }
  } catch (error) {
    failed(error);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.hash = "";
    signIn("Signed out.");
  });
  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(KEY)) {
    try {
      await showNav();
    } catch (error) {
      failed(error);
      return;
    }
  }
  route();
});
