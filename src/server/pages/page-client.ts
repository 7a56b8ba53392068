/**
 * Browser JavaScript shared by the overlay and the watch page. `PageParams` reads what every
 * page takes from its URL (the stream id, the token, numeric options). For rolling captions
 * (the overlay's `?style=rolling`, the watch page): a `RollingCaptions` object fed with a stream's token and caption events keeps
 * a window of lines, by the very rule the subtitle files use (`rollText`, `separator` and
 * `normalise` of src/sinks/segmenter.ts, embedded here as their compiled source).
 *
 *   var r = new RollingCaptions(42, 2);
 *   r.token(ev.frame, ev.text);     // a token event: its words join the window at once
 *   r.caption(ev.frame, ev.text);   // the frame's caption: adds what its tokens did not bring
 *   r.lines                         // the lines on screen
 *   r.fresh                         // how many of the last words belong to the newest frame that said something
 */
import { normalise, rollText, separator } from '../../sinks/segmenter.js';

const RULES = [normalise, separator, rollText].map((f) => f.toString()).join('\n');

const ROLLING = `
function RollingCaptions(width, maxLines) {
  this.width = width;
  this.maxLines = maxLines;
  this.lines = [];
  this.fresh = 0;
  this.frame = null;
  this.frameText = "";
  this.lastText = "";
}
RollingCaptions.prototype.token = function (frame, raw) {
  raw = String(raw || "");
  var joiner;
  if (frame !== this.frame) {
    var prev = normalise(this.frameText);
    if (prev !== "") this.lastText = prev;
    this.frame = frame;
    this.frameText = "";
    joiner = null; // (fresh still counts the last words said, until new ones come)
  } else {
    joiner = /^\\s/.test(raw) || /\\s$/.test(this.frameText) ? " " : "";
  }
  this.frameText += raw;
  var text = normalise(raw);
  if (text === "") return;
  // A frame's first words join the text on screen as its caption (trimmed) would in the files.
  if (joiner === null || normalise(this.frameText) === text) joiner = this.lastText === "" ? " " : separator(this.lastText, text, text);
  this.lines = rollText(this.lines, text, joiner, this.width, this.maxLines);
  this.fresh = normalise(this.frameText).split(" ").length;
};
RollingCaptions.prototype.caption = function (frame, raw) {
  raw = String(raw || "");
  var all = normalise(raw);
  if (frame !== this.frame) { this.token(frame, raw); return; }
  var seen = normalise(this.frameText);
  var at = raw.indexOf(seen);
  if (all.length > seen.length && all.indexOf(seen) === 0 && at >= 0) this.token(frame, raw.slice(at + seen.length));
};
function PageParams() {
  var parts = location.pathname.split("/");
  this.q = new URLSearchParams(location.search);
  this.stream = decodeURIComponent(parts[parts.length - 1] || "");
  this.token = this.q.get("token") || "";
}
PageParams.prototype.num = function (name, def, min, max) {
  var v = Number(this.q.get(name));
  return this.q.has(name) && isFinite(v) ? Math.min(max, Math.max(min, v)) : def;
};
RollingCaptions.prototype.clear = function () {
  this.lines = [];
  this.fresh = 0;
  this.frame = null;
  this.frameText = "";
  this.lastText = "";
};
`;

/** The rule functions, RollingCaptions and PageParams, as a script body (no wrapper: they are globals of the page's script). */
export const PAGE_CLIENT_JS = `${RULES}\n${ROLLING}`;
