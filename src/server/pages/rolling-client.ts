/**
 * Browser JavaScript for rolling captions, shared by the overlay (`?style=rolling`) and the
 * watch page: a `RollingCaptions` object fed with a stream's token and caption events keeps
 * a window of lines, by the very rule the subtitle files use (`rollText`, `separator` and
 * `normalise` of src/sinks/segmenter.ts, embedded here as their compiled source).
 *
 *   var r = new RollingCaptions(42, 2);
 *   r.token(ev.frame, ev.text);     // a token event: its words join the window at once
 *   r.caption(ev.frame, ev.text);   // the frame's caption: adds what its tokens did not bring
 *   r.lines                         // the lines on screen
 *   r.fresh                         // how many of the last words belong to the newest frame
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
    this.fresh = 0;
    joiner = null;
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
RollingCaptions.prototype.clear = function () {
  this.lines = [];
  this.fresh = 0;
  this.frame = null;
  this.frameText = "";
  this.lastText = "";
};
`;

/** The rule functions and RollingCaptions, as a script body (no wrapper: they are globals of the page's script). */
export const ROLLING_CLIENT_JS = `${RULES}\n${ROLLING}`;
