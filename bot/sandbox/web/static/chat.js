// The sandbox chat page. No build step, no framework: it draws the state the sandbox pushes
// (/_sandbox/stream) and acts through the sandbox's event sender, as a person in the portal.
// Every string from the state goes in as text (textContent); the one exception is a
// message's `html`, which the sandbox rendered from BB-codes after escaping everything.
"use strict";

const view = { state: null, me: null, chat: "bot" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// Put `items` into `container` as nodes, keeping the node of an item that has not changed
// (same key, same signature): a redraw then never replaces what a person is about to click.
const drawnFrom = new WeakMap(); // node -> the signature of what it was drawn from

function reconcile(container, items, key, signature, build) {
  const old = new Map([...container.children].map((node) => [node.dataset.key, node]));
  const nodes = items.map((item) => {
    const sig = JSON.stringify(signature(item));
    const kept = old.get(String(key(item)));
    if (kept && drawnFrom.get(kept) === sig) return kept;
    const node = build(item);
    node.dataset.key = String(key(item));
    drawnFrom.set(node, sig);
    return node;
  });
  const same = nodes.length === container.children.length && nodes.every((n, i) => container.children[i] === n);
  if (!same) container.replaceChildren(...nodes);
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]).join("").toUpperCase();
}

function stars(vote) {
  return vote ? "★".repeat(vote) + "☆".repeat(5 - vote) : "—";
}

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!answer.ok) console.warn("sandbox refused", path, answer.status);
}

// The chats the current person sees: the private chat with the bot, their group chats, and
// the open-line chats of the lines they work on.
function chatsOf(state, me) {
  const list = [];
  if (state.bot) {
    const privateChat = state.chats.find(
      (c) => c.type === "P" && c.members.length === 2 && c.members.includes(me) && c.members.includes(state.bot.id)
    );
    list.push({ key: "bot", title: state.bot.name, kind: "bot", about: "private chat with the bot", chat: privateChat || null });
  }
  for (const chat of state.chats) {
    if (chat.type === "C" && chat.members.includes(me)) {
      list.push({ key: chat.dialog, title: chat.title, kind: "group", about: "group chat", chat });
    } else if (chat.type === "L" && chat.staff.includes(me)) {
      // Where the answer goes, or a newcomer waits here for one that came elsewhere.
      const about = `open line “${chat.line}”, session ${chat.session}: the bot answers a /rate here in your private chat with it, never to the customer`;
      list.push({ key: chat.dialog, title: chat.title, kind: "line", about, chat });
    }
  }
  for (const entry of list) entry.messages = messagesIn(state, entry.chat);
  // The same person's Telegram account, in the groups it shares with the bot.
  const tg = state.telegram;
  const account = tg.accounts[String(me)];
  for (const chat of tg.chats) {
    if (account === undefined || !chat.members.includes(account)) continue;
    list.push({
      key: `tg${chat.id}`, title: `${chat.title} · Telegram`, kind: "telegram", about: `Telegram ${chat.type} with @${tg.bot.username}`,
      telegram: chat, account, messages: tg.messages.filter((m) => m.chat_id === chat.id),
    });
  }
  return list;
}

function messagesIn(state, chat) {
  return chat ? state.messages.filter((m) => m.chat_id === chat.id) : [];
}

// Who the page acts as, kept in a cookie the sandbox portal reads too: its /oauth/authorize/
// page takes the person the page is playing as the logged-in Bitrix24 user.
function actAs(userId) {
  view.me = userId;
  document.cookie = `sandbox_user=${encodeURIComponent(String(userId))}; path=/; SameSite=Lax`;
}

function remembered(people) {
  const value = document.cookie.split("; ").find((c) => c.startsWith("sandbox_user="));
  const id = value ? Number(decodeURIComponent(value.slice("sandbox_user=".length))) : NaN;
  return people.some((p) => p.id === id) ? id : people[0].id;
}

function drawPeople(state) {
  const select = document.getElementById("me");
  if (view.me === null && state.people.length) actAs(remembered(state.people));
  const signature = JSON.stringify(state.people);
  if (select.dataset.drawn === signature) return; // redrawing would close an open list
  select.dataset.drawn = signature;
  const options = state.people.map((p) =>
    el("option", { value: String(p.id), selected: p.id === view.me }, `${p.name} (${p.id}) — ${p.role}`)
  );
  select.replaceChildren(...options);
}

function drawChats(entries) {
  const lastText = (entry) => {
    const last = entry.messages.at(-1);
    return last ? last.text : entry.about;
  };
  reconcile(
    document.getElementById("chats"),
    entries,
    (entry) => entry.key,
    (entry) => [entry.title, lastText(entry), entry.key === view.chat],
    (entry) => el(
      "li",
      { class: entry.key === view.chat ? "active" : "", "data-chat": entry.key, onclick: () => choose(entry.key) },
      el("span", { class: `avatar ${entry.kind}` }, initials(entry.title)),
      el("span", {}, el("div", { class: "title" }, entry.title), el("div", { class: "sub" }, lastText(entry)))
    )
  );
}

const messageKey = (m) => m.id;
const messageSignature = (m) => [m.html, m.keyboard, m.system, m.to_customer, m.author_id === view.me];

// A link a button may open: an http(s) address (a path resolves against this page), never a
// javascript:, data: or tg: one, which is shown but opens nothing.
function safeHref(link) {
  if (typeof link !== "string") return null;
  try {
    const url = new URL(link, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

// A link button: a real link in a new tab that tells the opened page nothing of this one.
function linkButton(text, link, attrs) {
  const href = safeHref(link);
  if (href === null) {
    return el("span", { ...attrs, class: "link-button inert", title: "not an http(s) link: not opened" }, text);
  }
  return el("a", { ...attrs, class: "link-button", href, target: "_blank", rel: "noopener noreferrer" }, text);
}

// [color]/[size] come as data attributes (the page's policy refuses inline styles); set
// through the DOM, a style is allowed. The sandbox checked both values against a pattern.
function styleBbCodes(body) {
  for (const span of body.querySelectorAll("span.bb-color")) span.style.color = span.dataset.color;
  for (const span of body.querySelectorAll("span.bb-size")) span.style.fontSize = `${span.dataset.size}px`;
}

function drawMessage(message) {
  const state = view.state;
  const isBot = state.bot && message.author_id === state.bot.id;
  const classes = ["message"];
  if (message.system) classes.push("system");
  if (message.author_id === view.me) classes.push("mine");
  if (isBot) classes.push("bot");
  const body = el("div", { class: "body" });
  body.innerHTML = message.html; // rendered by the sandbox: escaped first, then BB-codes
  styleBbCodes(body);
  const node = el("div", { class: classes.join(" "), "data-id": String(message.id) },
    el("div", { class: "author" }, message.author), body);
  if (message.keyboard.length) {
    const keys = el("div", { class: "keyboard" });
    for (const button of message.keyboard) {
      if (button.newline) {
        keys.append(el("span", { class: "row-break" }));
        continue;
      }
      if (button.link !== null) {
        keys.append(linkButton(button.text, button.link, { "data-button": String(button.index) }));
        continue;
      }
      keys.append(el("button", {
        type: "button",
        "data-button": String(button.index),
        onclick: () => post("/_sandbox/events/click", { user_id: view.me, message_id: message.id, button: button.index }),
      }, button.text));
    }
    node.append(keys);
  }
  if (message.to_customer) node.append(el("div", { class: "flag" }, "sent to the customer"));
  return node;
}

function drawDialog(entry) {
  const feed = document.getElementById("feed");
  const atBottom = feed.scrollHeight - feed.scrollTop - feed.clientHeight < 40;
  document.getElementById("chat-title").textContent = entry ? entry.title : "No chat yet";
  document.getElementById("chat-about").textContent = entry
    ? entry.about
    : "the bot is not registered yet: is the service running?";
  if (entry && entry.kind === "telegram") {
    reconcile(feed, entry.messages, telegramKey, (m) => [m, m.sender_id === entry.account], (m) => drawTelegramMessage(m, entry));
  } else {
    reconcile(feed, entry ? entry.messages : [], messageKey, messageSignature, drawMessage);
  }
  if (atBottom) feed.scrollTop = feed.scrollHeight;
  for (const id of ["text", "send"]) document.getElementById(id).disabled = !entry;
}

// A message in the fake Telegram: plain text (Telegram parsed the markup away), inline buttons.
const telegramKey = (m) => `tg:${m.chat_id}:${m.message_id}`;

function drawTelegramMessage(message, entry) {
  const tg = view.state.telegram;
  const classes = ["message", "telegram"];
  if (message.sender_id === entry.account) classes.push("mine");
  if (message.sender_id === tg.bot.id) classes.push("bot");
  const node = el("div", { class: classes.join(" "), "data-id": telegramKey(message) },
    el("div", { class: "author" }, message.author), el("div", { class: "body plain" }, message.text));
  for (const row of message.buttons) {
    const keys = el("div", { class: "keyboard" });
    for (const button of row) {
      if (button.url !== null) {
        keys.append(linkButton(button.text, button.url, {}));
        continue;
      }
      keys.append(el("button", {
        type: "button",
        "data-data": button.data,
        onclick: () => post("/_sandbox/telegram/press", {
          user_id: entry.account, chat_id: message.chat_id, message_id: message.message_id, data: button.data,
        }),
      }, button.text));
    }
    node.append(keys);
  }
  if (message.edited) node.append(el("div", { class: "flag muted" }, "edited"));
  return node;
}

// An open-line chat's other side: only what the connector forwarded, and what the customer wrote.
function drawCustomer(entry) {
  const panel = document.getElementById("customer");
  const chat = entry && entry.kind === "line" ? entry.chat : null;
  panel.hidden = !chat;
  if (!chat) return;
  document.getElementById("customer-name").textContent = `(${chat.title})`;
  const seen = messagesIn(view.state, chat).filter((m) => m.to_customer || m.author_id === chat.customer);
  const customerFeed = document.getElementById("customer-feed");
  if (seen.length) {
    reconcile(customerFeed, seen, messageKey, messageSignature, drawMessage);
  } else if (!customerFeed.querySelector(":scope > .empty")) {
    customerFeed.replaceChildren(el("div", { class: "empty" }, "Nothing from this chat has reached the customer."));
  }
}

function drawSessions(entry) {
  const current = entry && entry.chat ? entry.chat.session : null;
  reconcile(
    document.getElementById("sessions"),
    view.state.sessions,
    (s) => s.id,
    (s) => [s, s.id === current],
    (s) => el("tr", { class: s.id === current ? "current" : "", "data-session": String(s.id) },
      el("td", {}, String(s.id)), el("td", {}, s.line), el("td", {}, s.operator),
      el("td", { class: "vote", title: String(s.vote_head) }, stars(s.vote_head)),
      el("td", { class: "comment" }, s.comment_head))
  );
}

// The calls to list, newest first. A batch is recorded after the calls made inside it; with
// polls hidden, a batch that held nothing but polls goes too.
function shownCalls(calls, hidePolls) {
  const isPoll = (c) => c.method === "imbot.v2.event.get";
  const shown = [];
  let inner = [];
  for (const call of calls) {
    if (call.batch_of) {
      inner.push(call);
      continue;
    }
    const polls = inner.length > 0 && inner.every(isPoll);
    if (!(hidePolls && (isPoll(call) || polls))) {
      shown.push(...inner.filter((c) => !(hidePolls && isPoll(c))), call);
    }
    inner = [];
  }
  return shown.reverse();
}

function drawCalls() {
  const { calls, bucket } = view.state;
  const shown = shownCalls(calls, document.getElementById("hide-polls").checked);
  const rows = shown.map((c) =>
    el("tr", { "data-method": c.method },
      el("td", {}, String(c.n)),
      el("td", { class: c.batch_of ? "inner" : "" }, c.method),
      el("td", { class: c.error ? "error" : "" }, c.error ? `${c.status} ${c.error}` : String(c.status)),
      el("td", {}, c.level === null ? "" : `${c.level}/${bucket.capacity}`))
  );
  document.getElementById("calls").replaceChildren(...rows);
  document.getElementById("bucket-fill").style.width = `${Math.min(100, (100 * bucket.level) / bucket.capacity)}%`;
  document.getElementById("bucket-text").textContent =
    `bucket ${bucket.level}/${bucket.capacity}, drains ${bucket.rate}/s, refused ${bucket.refused}`;
}

function draw() {
  const state = view.state;
  if (!state) return;
  drawPeople(state);
  const entries = chatsOf(state, view.me);
  let entry = entries.find((e) => e.key === view.chat);
  if (!entry && entries.length) {
    entry = entries[0];
    view.chat = entry.key;
  }
  drawChats(entries);
  drawDialog(entry);
  drawCustomer(entry);
  drawSessions(entry);
  drawCalls();
}

function choose(key) {
  view.chat = key;
  draw();
  document.getElementById("feed").scrollTop = 1e9;
}

async function send(text) {
  const state = view.state;
  if (!state || !text.trim()) return;
  const entry = chatsOf(state, view.me).find((e) => e.key === view.chat);
  if (!entry) return;
  if (entry.kind === "telegram") {
    await post("/_sandbox/telegram/type", { user_id: entry.account, chat_id: entry.telegram.id, text });
  } else {
    const to = entry.key === "bot" ? state.bot.id : entry.key;
    await post("/_sandbox/events/message", { author_id: view.me, to, text });
  }
}

function connect() {
  const live = document.getElementById("live");
  const stream = new EventSource("/_sandbox/stream");
  stream.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  stream.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  stream.onmessage = (event) => {
    view.state = JSON.parse(event.data);
    draw();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("me").addEventListener("change", (event) => {
    actAs(Number(event.target.value));
    view.chat = "bot";
    draw();
  });
  document.getElementById("hide-polls").addEventListener("change", drawCalls);
  document.getElementById("compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    const text = input.value;
    input.value = "";
    await send(text);
  });
  // [send=…] posts its command as the reader; [put=…] puts it into the input.
  document.getElementById("feed").addEventListener("click", (event) => {
    const link = event.target.closest("a.bb-send, a.bb-put");
    if (!link) return;
    event.preventDefault();
    if (link.dataset.send !== undefined) send(link.dataset.send);
    else document.getElementById("text").value = link.dataset.put;
  });
  connect();
});
