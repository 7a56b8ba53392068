/**
 * The caption overlay page served at /overlay/<stream>: for OBS browser sources and web
 * pages. Self-contained (no external assets), transparent background, the last N captions
 * large and outlined. The page is static: it reads the stream id from its path and its
 * options from the query string, so nothing user-supplied is ever templated into HTML.
 *
 * Query options:
 *   token     the access token (browser sources cannot set headers)
 *   lines     caption lines shown (default 2, 1-20)
 *   size      font size in px (default 42)
 *   color     text colour (default #ffffff)
 *   outline   outline/shadow colour (default #000000)
 *   bg        background behind the text box (default transparent)
 *   font      font family (default a system sans-serif stack)
 *   align     left | center | right (default center)
 *   position  bottom | top (default bottom)
 *   partial   1 to show the caption being written, token by token (default 1)
 *   fade      seconds after which a caption disappears; 0 = never (default 0)
 *   debug     1 to show the connection state in a corner
 *
 * Reconnects with exponential backoff (0.5 s doubling to 30 s, with jitter) and resumes
 * from the last seq it received, so captions committed while it was away are shown once.
 */
export const OVERLAY_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>casa-live captions</title>
<style>
  :root {
    --size: 42px; --color: #ffffff; --outline: #000000; --bg: transparent;
    --font: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif;
    --align: center;
  }
  html, body { margin: 0; padding: 0; background: transparent; overflow: hidden; height: 100%; }
  body { display: flex; flex-direction: column; justify-content: flex-end; }
  body.top { justify-content: flex-start; }
  #captions {
    box-sizing: border-box; width: 100%; padding: 0.4em 5vw;
    font-family: var(--font); font-size: var(--size); font-weight: 600; line-height: 1.25;
    color: var(--color); text-align: var(--align);
    text-shadow: 0 0 0.12em var(--outline), 0 0 0.12em var(--outline), 0.05em 0.05em 0.1em var(--outline);
    -webkit-text-stroke: 0.03em var(--outline); paint-order: stroke fill;
  }
  #captions .box { display: inline-block; max-width: 100%; background: var(--bg); border-radius: 0.2em; padding: 0 0.3em; }
  #captions .line { display: block; overflow-wrap: anywhere; transition: opacity 0.4s; }
  #captions .line.partial { opacity: 0.85; }
  #captions .line.fading { opacity: 0; }
  #state { position: fixed; top: 4px; right: 6px; font: 12px monospace; color: #0f0; background: rgba(0,0,0,0.6); padding: 2px 6px; display: none; }
  body.debug #state { display: block; }
</style>
</head>
<body>
<div id="state">starting</div>
<div id="captions"><div class="box" id="box"></div></div>
<script>
(function () {
  "use strict";
  var q = new URLSearchParams(location.search);
  var parts = location.pathname.split("/");
  var stream = decodeURIComponent(parts[parts.length - 1] || "");
  var token = q.get("token") || "";
  function num(name, def, min, max) {
    var v = Number(q.get(name));
    return q.has(name) && isFinite(v) ? Math.min(max, Math.max(min, v)) : def;
  }
  var maxLines = Math.round(num("lines", 2, 1, 20));
  var fadeMs = num("fade", 0, 0, 3600) * 1000;
  var showPartial = q.get("partial") !== "0";
  var rootStyle = document.documentElement.style;
  if (q.has("size")) rootStyle.setProperty("--size", num("size", 42, 8, 400) + "px");
  var cssVars = { color: "--color", outline: "--outline", bg: "--bg", font: "--font" };
  Object.keys(cssVars).forEach(function (k) {
    var v = q.get(k);
    if (v && /^[#(),.%\\w\\s"'-]{1,100}$/.test(v)) rootStyle.setProperty(cssVars[k], v);
  });
  var align = q.get("align");
  if (align === "left" || align === "right" || align === "center") rootStyle.setProperty("--align", align);
  if (q.get("position") === "top") document.body.classList.add("top");
  if (q.get("debug") === "1") document.body.classList.add("debug");

  var box = document.getElementById("box");
  var stateEl = document.getElementById("state");
  var lines = [];          // committed captions: { seq, frame, text, at }
  var partial = null;      // { frame, text } being written
  var lastSeq = null;      // last seq received for this stream (resume point)
  var ws = null;
  var backoff = 500;
  var reconnectTimer = null;
  var pingTimer = null;
  var pongDeadline = null;

  var state = { name: "starting", detail: "" };

  function setState(s, detail) {
    state = { name: s, detail: detail || "" };
    document.body.setAttribute("data-state", s);
    showState();
  }

  // The debug badge: the state, why, and the last seq received (kept current on every event).
  function showState() {
    stateEl.textContent = state.name + (state.detail ? ": " + state.detail : "") + (lastSeq !== null ? " #" + lastSeq : "");
  }

  function render() {
    var now = Date.now();
    var shown = lines.slice(-maxLines);
    var nodes = [];
    shown.forEach(function (l) {
      var d = document.createElement("span");
      d.className = "line" + (fadeMs > 0 && now - l.at > fadeMs ? " fading" : "");
      d.textContent = l.text;
      d.setAttribute("data-seq", String(l.seq));
      nodes.push(d);
    });
    if (showPartial && partial && partial.text.trim() !== "") {
      var p = document.createElement("span");
      p.className = "line partial";
      p.textContent = partial.text.trim();
      nodes.push(p);
      if (nodes.length > maxLines) nodes.splice(0, nodes.length - maxLines);
    }
    box.replaceChildren.apply(box, nodes);
    box.style.display = nodes.length ? "inline-block" : "none";
    document.body.setAttribute("data-last-seq", lastSeq === null ? "" : String(lastSeq));
  }

  function onEvent(ev) {
    if (ev.stream !== stream || typeof ev.seq !== "number") return;
    if (lastSeq !== null && ev.seq <= lastSeq) return; // already shown
    lastSeq = ev.seq;
    showState();
    if (ev.type === "token") {
      if (!partial || partial.frame !== ev.frame) partial = { frame: ev.frame, text: "" };
      partial.text += ev.text;
    } else if (ev.type === "caption") {
      if (partial && partial.frame === ev.frame) partial = null;
      var text = String(ev.text || "").trim();
      if (text) lines.push({ seq: ev.seq, frame: ev.frame, text: text, at: Date.now() });
      if (lines.length > 50) lines.splice(0, lines.length - 50);
    } else if (ev.type === "status") {
      if (ev.state !== "live") partial = null;
      setState(ev.state === "live" ? "live" : "stream-" + ev.state, ev.reason || "");
    }
    render();
  }

  function scheduleReconnect(minDelay) {
    if (reconnectTimer) return;
    var delay = Math.max(minDelay || 0, backoff * (0.5 + Math.random() * 0.5));
    backoff = Math.min(30000, backoff * 2);
    setState("reconnecting", "in " + (delay / 1000).toFixed(1) + "s");
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/ws" +
      (token ? "?token=" + encodeURIComponent(token) : "");
    setState("connecting");
    var sock;
    try { sock = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
    ws = sock;
    var retryAfter = 0;
    var opened = false;
    sock.onopen = function () { opened = true; };
    sock.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.type === "hello") {
        var sub = { type: "subscribe", streams: [stream] };
        if (lastSeq === null) sub.backfill = maxLines;
        else { sub.resume = {}; sub.resume[stream] = lastSeq; }
        sock.send(JSON.stringify(sub));
      } else if (ev.type === "subscribed") {
        backoff = 500;
        setState("live");
      } else if (ev.type === "pong") {
        pongDeadline = null;
      } else if (ev.type === "error") {
        var reason = String(ev.reason || "");
        if (reason.indexOf("unknown stream") === 0) {
          setState("error", reason);
          retryAfter = 10000;
          sock.close();
        } else if (reason.indexOf("resume seq") === 0) {
          lastSeq = null; // the server's log was reset: start over
          lines = []; partial = null; render();
        }
      } else {
        onEvent(ev);
      }
    };
    sock.onclose = function (e) {
      if (ws === sock) ws = null;
      partial = null;
      pongDeadline = null;
      render();
      if (e.code === 1008) retryAfter = Math.max(retryAfter, 30000);
      if (opened) { scheduleReconnect(retryAfter); return; }
      // Refused before it opened: the browser hides the HTTP status of a WebSocket upgrade, so
      // ask the API with the same token whether the token is the reason.
      checkToken().then(function (unauthorized) {
        if (unauthorized) {
          scheduleReconnect(30000);
          setState("unauthorized", "check the token in the URL");
        } else {
          scheduleReconnect(retryAfter);
        }
      });
    };
    sock.onerror = function () { /* onclose follows */ };
  }

  // Resolves true when the server refuses this page's token (HTTP 401).
  function checkToken() {
    var url = "/v1/streams/" + encodeURIComponent(stream) + (token ? "?token=" + encodeURIComponent(token) : "");
    return fetch(url, { cache: "no-store" }).then(function (r) { return r.status === 401; }, function () { return false; });
  }

  // Half-open connections: ping every 15 s, reconnect if no pong within 10 s.
  pingTimer = setInterval(function () {
    if (!ws || ws.readyState !== 1) return;
    if (pongDeadline !== null && Date.now() > pongDeadline) { ws.close(); return; }
    if (pongDeadline === null) pongDeadline = Date.now() + 10000;
    try { ws.send('{"type":"ping"}'); } catch (e) { /* closing */ }
  }, 15000);
  if (fadeMs > 0) setInterval(render, 1000);

  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(stream)) { setState("error", "bad stream id in URL"); return; }
  render();
  connect();
})();
</script>
</body>
</html>
`;

/** Content-Security-Policy for the overlay: inline only, WebSocket to this origin only. */
export const OVERLAY_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";
