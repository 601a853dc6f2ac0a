/* Switchboard web chat widget (webchat.v1, browser side). No framework, no build step, no
 * external resources. Embed it with one tag on a page whose origin is in
 * channels.webchat.allowed_origins:
 *
 *   <script src="https://chat.example.com/widget/widget.js" defer></script>
 *
 * Optional attributes on that tag: data-router (API base, default: where the script came
 * from), data-title (panel title), data-open="true" (panel open on load).
 *
 * Flow: POST /v1/webchat/session -> token + consent notice + bot disclosure, shown before the
 * first message -> the visitor accepts -> POST /v1/webchat/consent -> token with consent ->
 * GET /v1/webchat/stream (SSE: the bot's and agents' replies, live) and POST
 * /v1/webchat/messages (text, or a button tap as a postback). The token, the last event id and
 * the chat history are kept in localStorage for this router, so a reload continues the same
 * conversation and replays what was missed; "Delete history" clears them. */
(function () {
  'use strict';

  var script = document.currentScript;
  if (!script) return;
  var base = (script.getAttribute('data-router') || new URL(script.src, document.baseURI).origin)
    .replace(/\/+$/, '');
  var title = script.getAttribute('data-title') || 'Customer service';
  var startOpen = script.getAttribute('data-open') === 'true';
  var STORE_KEY = 'switchboard.webchat.v1:' + base;
  var MAX_HISTORY = 200;
  var MAX_TEXT_BYTES = 8192;

  /* ---- state kept in localStorage ---- */

  function load() {
    try {
      var s = JSON.parse(window.localStorage.getItem(STORE_KEY) || 'null');
      if (s && typeof s === 'object') {
        s.history = Array.isArray(s.history) ? s.history : [];
        return s;
      }
    } catch (e) { /* unreadable or blocked storage: start fresh */ }
    return { token: null, expiresAt: 0, consent: false, lastEventId: '', history: [] };
  }
  var state = load();

  function save() {
    if (state.history.length > MAX_HISTORY) state.history = state.history.slice(-MAX_HISTORY);
    try { window.localStorage.setItem(STORE_KEY, JSON.stringify(state)); } catch (e) { /* full */ }
  }

  /* ---- DOM ---- */

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  if (!document.querySelector('link[data-switchboard-widget]')) {
    var css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = base + '/widget/widget.css';
    css.setAttribute('data-switchboard-widget', '');
    document.head.appendChild(css);
  }

  var uid = 'sbw' + Math.floor(Math.random() * 1e9).toString(36);
  var root = el('div', 'sbw');
  var launcher = el('button', 'sbw-launcher', 'Chat with us');
  launcher.type = 'button';
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', uid + '-panel');

  var panel = el('section', 'sbw-panel');
  panel.id = uid + '-panel';
  panel.setAttribute('aria-labelledby', uid + '-title');
  panel.hidden = true;

  var header = el('header', 'sbw-header');
  var h2 = el('h2', 'sbw-title', title);
  h2.id = uid + '-title';
  var forget = el('button', 'sbw-forget', 'Delete history');
  forget.type = 'button';
  forget.title = 'Delete this chat and its history from this device';
  var closeBtn = el('button', 'sbw-close', '\u00d7');
  closeBtn.type = 'button';
  closeBtn.setAttribute('aria-label', 'Close the chat');
  header.appendChild(h2);
  header.appendChild(forget);
  header.appendChild(closeBtn);

  var notice = el('div', 'sbw-notice');
  notice.setAttribute('role', 'region');
  notice.setAttribute('aria-labelledby', uid + '-notice-title');
  var noticeTitle = el('h3', 'sbw-notice-title', 'Before we start');
  noticeTitle.id = uid + '-notice-title';
  var noticeDisclosure = el('p', 'sbw-disclosure');
  var noticeText = el('p', 'sbw-notice-text');
  var noticeActions = el('div', 'sbw-actions');
  var acceptBtn = el('button', 'sbw-accept', 'Accept and start chatting');
  acceptBtn.type = 'button';
  var declineBtn = el('button', 'sbw-decline', 'No thanks');
  declineBtn.type = 'button';
  noticeActions.appendChild(acceptBtn);
  noticeActions.appendChild(declineBtn);
  notice.appendChild(noticeTitle);
  notice.appendChild(noticeDisclosure);
  notice.appendChild(noticeText);
  notice.appendChild(noticeActions);
  notice.hidden = true;

  var banner = el('p', 'sbw-banner');
  banner.hidden = true;

  var log = el('ol', 'sbw-log');
  log.setAttribute('role', 'log');
  log.setAttribute('aria-live', 'polite');
  log.setAttribute('aria-relevant', 'additions');
  log.setAttribute('aria-label', 'Conversation');

  var status = el('p', 'sbw-status');
  status.setAttribute('role', 'status');

  var form = el('form', 'sbw-form');
  var label = el('label', 'sbw-label', 'Your message');
  label.htmlFor = uid + '-input';
  var input = el('textarea', 'sbw-input');
  input.id = uid + '-input';
  input.rows = 2;
  input.required = true;
  input.setAttribute('maxlength', String(MAX_TEXT_BYTES));
  var sendBtn = el('button', 'sbw-send', 'Send');
  sendBtn.type = 'submit';
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(sendBtn);

  panel.appendChild(header);
  panel.appendChild(notice);
  panel.appendChild(banner);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);
  root.appendChild(launcher);
  root.appendChild(panel);
  document.body.appendChild(root);

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
    launcher.textContent = open ? 'Hide chat' : 'Chat with us';
    if (open) {
      if (!notice.hidden) acceptBtn.focus();
      else if (!input.disabled) input.focus();
    }
  }
  launcher.addEventListener('click', function () { setOpen(panel.hidden); });
  closeBtn.addEventListener('click', function () { setOpen(false); launcher.focus(); });
  panel.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { setOpen(false); launcher.focus(); }
  });

  function say(text) { status.textContent = text || ''; }

  function setChatEnabled(on) {
    input.disabled = !on;
    sendBtn.disabled = !on;
  }

  var AUTHORS = {
    visitor: { label: 'You', cls: 'visitor' },
    bot: { label: 'Bot', badge: 'automated', cls: 'bot' },
    agent: { label: 'Support agent', badge: 'a person', cls: 'agent' },
    system: { label: 'Customer service', cls: 'system' }
  };

  /* Renders one history entry; returns its <li>. */
  function renderEntry(m) {
    var a = AUTHORS[m.author] || AUTHORS.system;
    var li = el('li', 'sbw-msg sbw-msg--' + a.cls);
    li.setAttribute('data-id', m.id);
    li.setAttribute('data-author', m.author);
    var who = el('span', 'sbw-author', a.label);
    if (a.badge) {
      who.appendChild(document.createTextNode(' '));
      who.appendChild(el('span', 'sbw-badge', a.badge));
    }
    li.appendChild(who);
    li.appendChild(el('p', 'sbw-text', m.text));
    if (m.buttons && m.buttons.length) {
      var group = el('div', 'sbw-buttons');
      group.setAttribute('role', 'group');
      group.setAttribute('aria-label', 'Suggested replies');
      m.buttons.forEach(function (b) {
        var btn = el('button', 'sbw-choice', b.title || b.id);
        btn.type = 'button';
        btn.disabled = !!m.answered;
        btn.addEventListener('click', function () { choose(m, b); });
        group.appendChild(btn);
      });
      li.appendChild(group);
    }
    if (m.author === 'visitor' && m.state && m.state !== 'sent') {
      var st = el('span', 'sbw-state', m.state === 'failed' ? 'Not sent.' : 'Sending\u2026');
      li.appendChild(st);
      if (m.state === 'failed') {
        var retry = el('button', 'sbw-retry', 'Retry');
        retry.type = 'button';
        retry.addEventListener('click', function () { deliver(m); });
        li.appendChild(retry);
      }
    }
    return li;
  }

  function rerender(m) {
    var old = log.querySelector('li[data-id="' + m.id + '"]');
    var li = renderEntry(m);
    if (old) log.replaceChild(li, old); else log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function renderAll() {
    while (log.firstChild) log.removeChild(log.firstChild);
    state.history.forEach(function (m) { log.appendChild(renderEntry(m)); });
    log.scrollTop = log.scrollHeight;
  }

  function find(id) {
    for (var i = state.history.length - 1; i >= 0; i--)
      if (state.history[i].id === id) return state.history[i];
    return null;
  }

  function add(m) {
    state.history.push(m);
    save();
    rerender(m);
  }

  /* ---- HTTP ---- */

  function api(path, body, withToken) {
    var headers = { 'Content-Type': 'application/json' };
    if (withToken && state.token) headers.Authorization = 'Bearer ' + state.token;
    return fetch(base + path, {
      method: 'POST', headers: headers, body: JSON.stringify(body || {}),
      mode: 'cors', credentials: 'omit', cache: 'no-store'
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        return { status: r.status, body: j };
      });
    });
  }

  var notices = null;

  function takeToken(b) {
    state.token = b.token;
    state.expiresAt = b.expires_at;
    state.consent = !b.consent_required;
    if (b.notice) notices = b.notice;
    if (b.limits && b.limits.max_text_bytes) MAX_TEXT_BYTES = b.limits.max_text_bytes;
    save();
    scheduleRefresh(b.ttl_s);
  }

  function randomId(prefix) {
    var a = new Uint8Array(10);
    window.crypto.getRandomValues(a);
    return prefix + Array.prototype.map.call(a, function (x) {
      return ('0' + x.toString(16)).slice(-2);
    }).join('');
  }

  /* Gets a token: re-issued for the kept one, or a new session (which clears the history of
   * a conversation the router no longer knows). */
  function session() {
    var body = { locale: navigator.language || '' };
    if (!/^[A-Za-z0-9-]{1,16}$/.test(body.locale)) delete body.locale;
    return api('/v1/webchat/session', body, !!state.token).then(function (r) {
      if (r.status === 401 && state.token) {
        state = { token: null, expiresAt: 0, consent: false, lastEventId: '', history: [] };
        save();
        renderAll();
        return session();
      }
      if (r.status !== 200) throw new Error('session ' + r.status);
      takeToken(r.body);
      return r.body;
    });
  }

  var refreshTimer = null;
  function scheduleRefresh(ttl) {
    clearTimeout(refreshTimer);
    var ms = Math.max(10, (ttl || 60) * 0.8) * 1000;
    refreshTimer = setTimeout(function () {
      session().then(function () { if (state.consent) openStream(); })
        .catch(function () { scheduleRefresh(30); });
    }, ms);
  }

  /* ---- live replies ---- */

  var es = null;
  var backoff = 1000;

  function onEvent(e) {
    var ev;
    try { ev = JSON.parse(e.data); } catch (x) { return; }
    if (!ev || !ev.id || !ev.message) return;
    state.lastEventId = e.lastEventId || ev.id;
    if (find(ev.id)) { save(); return; }
    add({
      id: ev.id,
      author: ev.author === 'agent' ? 'agent' : ev.author === 'system' ? 'system' : 'bot',
      text: String(ev.message.text || ''),
      buttons: Array.isArray(ev.message.buttons) ? ev.message.buttons.slice(0, 10) : [],
      at: ev.occurred_at || ''
    });
    backoff = 1000;
  }

  function openStream() {
    if (es) es.close();
    var url = base + '/v1/webchat/stream?token=' + encodeURIComponent(state.token);
    if (state.lastEventId) url += '&last_event_id=' + encodeURIComponent(state.lastEventId);
    es = new EventSource(url);
    es.addEventListener('message', onEvent);
    es.addEventListener('open', function () { say(''); backoff = 1000; });
    es.addEventListener('error', function () {
      if (es.readyState !== EventSource.CLOSED) return; /* the browser reconnects by itself */
      /* Refused (e.g. the token expired): get a fresh token, then reconnect. */
      say('Reconnecting\u2026');
      var wait = backoff;
      backoff = Math.min(backoff * 2, 30000);
      setTimeout(function () {
        session().then(openStream).catch(function () { setTimeout(openStream, wait); });
      }, wait);
    });
  }

  /* ---- sending ---- */

  function deliver(m) {
    m.state = 'sending';
    save();
    rerender(m);
    var body = { id: m.id };
    if (m.postback) body.postback = m.postback; else body.text = m.text;
    var attempt = function (again) {
      return api('/v1/webchat/messages', body, true).then(function (r) {
        if (r.status === 401 && again) return session().then(function () { return attempt(false); });
        if (r.status === 200) { m.state = 'sent'; say(''); return; }
        m.state = 'failed';
        say(r.status === 429 ? 'You are sending messages too fast: wait a moment and retry.'
          : r.status === 413 ? 'That message is too long.'
          : 'Your message could not be sent. Please retry.');
      });
    };
    attempt(true).catch(function () {
      m.state = 'failed';
      say('You seem to be offline. Please retry.');
    }).then(function () { save(); rerender(m); });
  }

  function choose(msg, button) {
    msg.answered = true;
    save();
    rerender(msg);
    var m = {
      id: randomId('b'), author: 'visitor', text: button.title || button.id,
      postback: { payload: button.id, title: button.title || '', in_reply_to: msg.id }
    };
    add(m);
    deliver(m);
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = input.value.replace(/^\s+|\s+$/g, '');
    if (!text) return;
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
      say('That message is too long (at most ' + MAX_TEXT_BYTES + ' bytes).');
      return;
    }
    input.value = '';
    var m = { id: randomId('m'), author: 'visitor', text: text };
    add(m);
    deliver(m);
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      if (typeof form.requestSubmit === 'function') form.requestSubmit(); else sendBtn.click();
    }
  });

  /* ---- consent ---- */

  function showNotice() {
    noticeDisclosure.textContent = notices ? notices.disclosure : '';
    noticeText.textContent = notices ? notices.text : '';
    notice.hidden = false;
    banner.hidden = true;
    setChatEnabled(false);
    if (!panel.hidden) acceptBtn.focus();
  }

  function chatting() {
    notice.hidden = true;
    banner.textContent = notices ? notices.disclosure : 'You are chatting with a bot.';
    banner.hidden = false;
    setChatEnabled(true);
    openStream();
    if (!panel.hidden) input.focus();
  }

  acceptBtn.addEventListener('click', function () {
    acceptBtn.disabled = true;
    api('/v1/webchat/consent', {
      notice_version: notices ? notices.version : '', accepted: true, ai_disclosure_shown: true
    }, true).then(function (r) {
      acceptBtn.disabled = false;
      if (r.status === 409) return session().then(showNotice);
      if (r.status !== 200) { say('The chat is not available right now. Please try again.'); return; }
      takeToken(r.body);
      chatting();
    }).catch(function () {
      acceptBtn.disabled = false;
      say('The chat is not available right now. Please try again.');
    });
  });

  declineBtn.addEventListener('click', function () {
    api('/v1/webchat/consent', { notice_version: notices ? notices.version : '', accepted: false },
      true).catch(function () {});
    say('No problem: nothing was recorded. You can start the chat whenever you like.');
  });

  forget.addEventListener('click', function () {
    if (es) es.close();
    clearTimeout(refreshTimer);
    try { window.localStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ }
    state = load();
    renderAll();
    say('The chat history was deleted from this device.');
    start();
  });

  /* ---- start ---- */

  function start() {
    setChatEnabled(false);
    session().then(function () {
      if (state.consent) chatting(); else showNotice();
    }).catch(function () {
      say('The chat is not available right now.');
      setTimeout(start, 10000);
    });
  }

  renderAll();
  setOpen(startOpen);
  start();
})();
