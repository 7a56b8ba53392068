/**
 * The watch page, /watch/<stream>?token=VIEWER_TOKEN: the stream's video (its HLS, played by
 * hls.js served from /assets, or natively by Safari) with the captions drawn over it as they
 * stream from the WebSocket feed (a rolling two-line window, the newest frame's words
 * highlighted), a live plot of caption lag per frame, the stream's state and dropped frames.
 * Static like the overlay: the stream id comes from the path and the options from the query,
 * nothing is templated into the HTML, and its Content-Security-Policy allows scripts and
 * styles from the daemon only.
 *
 * Query options: token; captions=ws (default: the WebSocket feed, token by token, ahead of the
 * picture by the HLS delay) | hls (the HLS WebVTT rendition, in step with the picture) | off;
 * chars (longest caption line, default 42); lines (default 2).
 */
import { pageHead } from './html.js';
import { PAGE_CLIENT_JS } from './page-client.js';

export const WATCH_HTML = `${pageHead('casa-live watch', '<link rel="stylesheet" href="/assets/watch.css">\n')}
</head>
<body data-state="starting">
<header><a href="/" id="home">casa-live</a> <span id="name"></span> <span id="state" class="badge">starting</span> <span id="drops"></span></header>
<main>
  <div id="player">
    <video id="video" muted autoplay playsinline controls></video>
    <div id="captions"><div id="box"></div></div>
    <div id="novideo" hidden>No video for this stream (its <code>hls.enabled</code> is off). Captions only.</div>
  </div>
  <section id="lag">
    <canvas id="plot" width="640" height="180" aria-label="caption lag per frame"></canvas>
    <div id="legend"><span class="key commit"></span>caption committed <span class="key realtime"></span>real time <span id="latency"></span></div>
  </section>
</main>
<script src="/assets/hls.min.js"></script>
<script src="/assets/watch.js"></script>
</body>
</html>
`;

export const WATCH_CSS = `
html, body { margin: 0; background: #111; color: #eee; font: 15px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
header { padding: 8px 14px; display: flex; gap: 12px; align-items: center; background: #1c1c1c; }
header a { color: #8cf; text-decoration: none; font-weight: 600; }
#name { font-weight: 600; }
.badge { padding: 1px 8px; border-radius: 9px; background: #444; font-size: 13px; }
body[data-state="live"] .badge { background: #1b6e2a; }
body[data-state="reconnecting"] .badge, body[data-state="connecting"] .badge { background: #8a6d00; }
body[data-state="error"] .badge, body[data-state="ended"] .badge { background: #8a1f1f; }
#drops { color: #aaa; font-size: 13px; }
main { max-width: 1100px; margin: 0 auto; padding: 12px; }
#player { position: relative; background: #000; aspect-ratio: 16 / 9; }
#video { width: 100%; height: 100%; display: block; }
#captions { position: absolute; left: 0; right: 0; bottom: 8%; text-align: center; pointer-events: none; }
#box { display: inline-block; max-width: 90%; background: rgba(0, 0, 0, 0.62); border-radius: 6px; padding: 4px 12px; font-size: clamp(16px, 3.2vw, 34px); font-weight: 600; line-height: 1.3; }
#box:empty { display: none; }
#box .line { display: block; white-space: pre; }
#box .w.fresh { color: #ffe14d; }
#novideo { position: absolute; top: 40%; width: 100%; text-align: center; color: #aaa; }
#lag { margin-top: 12px; }
#plot { width: 100%; height: 180px; background: #181818; border-radius: 6px; }
#legend { font-size: 13px; color: #bbb; margin-top: 4px; }
.key { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin: 0 6px 0 12px; }
.key.commit { background: #ffb347; }
.key.realtime { background: repeating-linear-gradient(90deg, #6c9 0 6px, transparent 6px 10px); }
#latency { margin-left: 16px; color: #eee; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 6px 14px; text-align: left; border-bottom: 1px solid #333; }
a { color: #8cf; }
.hint { color: #aaa; font-size: 13px; }
`;

const WATCH_SCRIPT = `
(function () {
  "use strict";
  var page = new PageParams();
  var stream = page.stream, token = page.token;
  var mode = page.q.get("captions") || "ws";
  var roll = new RollingCaptions(Math.round(page.num("chars", 42, 8, 200)), Math.round(page.num("lines", 2, 1, 6)));
  var video = document.getElementById("video");
  var box = document.getElementById("box");
  var stateEl = document.getElementById("state");
  var dropsEl = document.getElementById("drops");
  var latencyEl = document.getElementById("latency");
  var canvas = document.getElementById("plot");
  var points = [];          // { pts, commit } in stream seconds, the last minute
  var lastSeq = null;
  var backoff = 500;
  var watch = (window.casaWatch = { hls: null, video: video, captions: 0, shown: [] });
  document.getElementById("name").textContent = stream;
  var withToken = function (u) { return token ? u + (u.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token) : u; };
  document.getElementById("home").href = withToken("/");

  function setState(s, detail) {
    document.body.setAttribute("data-state", s);
    stateEl.textContent = s + (detail ? " (" + detail + ")" : "");
  }

  // ---- video ---------------------------------------------------------------------------
  function startVideo() {
    var src = withToken("/hls/" + encodeURIComponent(stream) + "/master.m3u8");
    if (window.Hls && window.Hls.isSupported()) {
      var hls = new window.Hls({ enableWorker: false, lowLatencyMode: true, liveSyncDurationCount: 3, renderTextTracksNatively: true });
      // The WebVTT rendition is shown only with captions=hls (else the feed's captions are drawn).
      hls.subtitleDisplay = mode === "hls";
      watch.hls = hls;
      hls.on(window.Hls.Events.ERROR, function (_e, data) {
        if (!data.fatal) return;
        if (data.response && data.response.code === 404) { noVideo(); hls.destroy(); setTimeout(startVideo, 10000); return; }
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else setTimeout(function () { hls.loadSource(src); }, 3000);
      });
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () { document.getElementById("novideo").hidden = true; video.play().catch(function () {}); });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
      video.addEventListener("error", noVideo);
    } else noVideo();
  }
  function noVideo() { document.getElementById("novideo").hidden = false; }

  // ---- captions ------------------------------------------------------------------------
  function render() {
    var remaining = roll.fresh;    // the newest frame's words, counted from the end
    var nodes = [];
    for (var i = roll.lines.length - 1; i >= 0; i--) {
      var words = roll.lines[i].split(" ");
      var line = document.createElement("span");
      line.className = "line";
      for (var j = 0; j < words.length; j++) {
        var w = document.createElement("span");
        w.className = "w" + (j >= words.length - remaining ? " fresh" : "");
        w.textContent = words[j];
        if (j > 0) line.appendChild(document.createTextNode(" "));
        line.appendChild(w);
      }
      remaining -= words.length;
      nodes.unshift(line);
    }
    box.replaceChildren.apply(box, mode === "ws" ? nodes : []);
  }

  function onEvent(ev) {
    if (ev.stream !== stream || typeof ev.seq !== "number") return;
    if (lastSeq !== null && ev.seq <= lastSeq) return;
    lastSeq = ev.seq;
    if (ev.type === "token") { roll.token(ev.frame, ev.text); render(); }
    else if (ev.type === "caption") {
      roll.caption(ev.frame, ev.text);
      render();
      watch.captions++;
      watch.shown.push({ seq: ev.seq, text: String(ev.text || ""), at: Date.now(), lines: roll.lines.slice() });
      if (watch.shown.length > 200) watch.shown.shift();
      addPoint(ev);
    } else if (ev.type === "status") {
      setState(ev.state, ev.state === "live" ? "" : ev.reason || "");
      dropsEl.textContent = "dropped frames: " + (ev.droppedFrames || 0) + (ev.lagMs ? " · lag " + ev.lagMs + " ms" : "");
    }
  }

  // ---- lag plot: when each frame's caption was committed, against the frame's own time ----
  function addPoint(ev) {
    var latency = Math.max(0, Number(ev.latencyMs) || 0);
    points.push({ pts: Number(ev.start), commit: Number(ev.start) + latency / 1000 });
    var newest = points[points.length - 1].pts;
    while (points.length && (points[0].pts < newest - 60 || points[0].pts > newest)) points.shift();
    latencyEl.textContent = "latest latency " + latency + " ms";
    draw();
  }

  function draw() {
    var c = canvas.getContext("2d");
    var W = canvas.width, H = canvas.height, pad = 28;
    c.clearRect(0, 0, W, H);
    if (points.length === 0) return;
    var x0 = points[0].pts, x1 = Math.max(points[points.length - 1].pts, x0 + 1);
    var y0 = x0, y1 = x1;
    points.forEach(function (p) { y1 = Math.max(y1, p.commit); });
    var X = function (t) { return pad + ((t - x0) / (x1 - x0)) * (W - 2 * pad); };
    var Y = function (t) { return H - pad - ((t - y0) / (y1 - y0)) * (H - 2 * pad); };
    c.strokeStyle = "#444"; c.lineWidth = 1;
    c.strokeRect(pad, pad, W - 2 * pad, H - 2 * pad);
    c.fillStyle = "#999"; c.font = "11px sans-serif";
    c.fillText("frame time (s) →", W / 2 - 40, H - 8);
    c.fillText("↑ caption committed (s)", 4, pad - 10);
    c.fillText(x0.toFixed(1), pad, H - 8);
    c.fillText(x1.toFixed(1), W - pad - 24, H - 8);
    c.strokeStyle = "#ffb347"; c.fillStyle = "#ffb347"; c.lineWidth = 3;
    c.beginPath();
    points.forEach(function (p, i) { if (i === 0) c.moveTo(X(p.pts), Y(p.commit)); else c.lineTo(X(p.pts), Y(p.commit)); });
    c.stroke();
    points.forEach(function (p) { c.fillRect(X(p.pts) - 2, Y(p.commit) - 2, 4, 4); });
    // Real time on top, dashed: a caption committed with no delay would sit on it.
    c.strokeStyle = "#6c9"; c.lineWidth = 1.5; c.setLineDash([6, 4]);
    c.beginPath(); c.moveTo(X(x0), Y(x0)); c.lineTo(X(x1), Y(x1)); c.stroke();
    c.setLineDash([]);
    canvas.setAttribute("data-points", String(points.length));
  }

  // ---- the feed: hello → subscribe (resume by seq) → events; reconnect with backoff -------
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + withToken("/v1/ws");
    var sock;
    try { sock = new WebSocket(url); } catch (e) { return retry(); }
    sock.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.type === "hello") {
        var sub = { type: "subscribe", streams: [stream] };
        if (lastSeq === null) sub.backfill = 1; else { sub.resume = {}; sub.resume[stream] = lastSeq; }
        sock.send(JSON.stringify(sub));
      } else if (ev.type === "subscribed") backoff = 500;
      else if (ev.type === "error") {
        if (String(ev.reason).indexOf("unknown stream") === 0) setState("error", ev.reason);
        if (String(ev.reason).indexOf("resume seq") === 0) { lastSeq = null; roll.clear(); render(); }
      } else onEvent(ev);
    };
    sock.onclose = function () { setState("reconnecting", "feed"); retry(); };
  }
  function retry() {
    var delay = backoff * (0.5 + Math.random() / 2);
    backoff = Math.min(30000, backoff * 2);
    setTimeout(connect, delay);
  }

  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(stream)) { setState("error", "bad stream id in URL"); return; }
  if (mode !== "off") connect();
  startVideo();
})();
`;

/** The watch page's script: the rolling-caption rules, then the page. */
export const WATCH_JS = `${PAGE_CLIENT_JS}\n${WATCH_SCRIPT}`;

/** Scripts, styles, the feed and the video from the daemon only; the video element plays MSE blob: URLs (hls.js gives its text tracks a data: URL). */
export const WATCH_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; media-src 'self' blob: data:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";
