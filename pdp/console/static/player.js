// A terminal player for asciicast v2 recordings (https://docs.asciinema.org/manual/asciicast/v2/).
// It interprets a small safe subset — line feed, carriage return, backspace, tab, cursor
// home and erase (CSI H, J, K); colours and other CSI / OSC sequences are dropped — and
// shows every other control character as an inert escape such as \x07. Output is put in
// the page as text nodes only, never as markup. A cleared screen stays above, marked, and
// what was typed is shown apart, echoed or not: a recorded `stty -echo` or `clear` hides
// nothing from the auditor. Nor does an OSC string: the screen draws none of it (a window
// title, a link's target), and one never ended drew nothing of what followed, the rest of
// the recording (`printf '\e]0;'; cat /etc/shadow`); each is listed apart, inert, whole.
// That screen is a choice ("Draw as a terminal"): by default every byte is shown as text,
// each control character (ESC starting every sequence, CR, BS, BEL) as an inert escape and
// a line break only for a line feed, so nothing recorded erases or overwrites what the
// auditor reads (`cat secret; printf '\r\e[2K'`, cursor up and erase, CR and overwrite).
"use strict";
(function () {
  var MAX_IDLE = 2.0;   // a longer pause plays as this long (asciinema's idle_time_limit)
  var MAX_LINES = 5000;
  var MAX_TRIES = 20;   // asks for a recording the PDP is too busy to make now (429)

  // what rendering.inert escapes: controls, line separators, format characters (bidi,
  // zero-width, tags), the default-ignorable ones, spaces but U+0020, surrogates, marks that
  // overlay or enclose: nothing recorded may draw nothing or look like other text
  var INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Zs}\p{Me}\p{Default_Ignorable_Code_Point}\u0334-\u0338\u20d0-\u20ff]/u;

  function escaped(code) {
    var h = code.toString(16);
    if (code < 0x100) return "\\x" + ("0" + h).slice(-2);
    return code < 0x10000 ? "\\u" + ("000" + h).slice(-4) : "\\U" + ("0000000" + h).slice(-8);
  }

  // maxLines: lines kept, the oldest dropped beyond (and said so at the top); typed input
  // keeps every line, so no flood of Enter presses pushes a command out of sight
  function Screen(maxLines) {
    this.lines = [[]]; this.row = 0; this.col = 0; this.state = ""; this.seq = "";
    this.maxLines = maxLines || MAX_LINES; this.dropped = 0;
    this.osc = ""; this.unseen = [];  // OSC strings sent: the one under way, those ended
  }
  Screen.prototype.put = function (ch, ctl) {
    var line = this.lines[this.row];
    while (line.length < this.col) line.push({ch: " "});
    line[this.col] = {ch: ch, ctl: !!ctl};
    this.col += 1;
  };
  // text shown as an escape (a sequence the player does not interpret): what it holds that
  // could draw nothing is escaped in turn
  Screen.prototype.inert = function (text) {
    for (var i = 0; i < text.length; i++) {
      var point = text.codePointAt(i), ch = String.fromCodePoint(point);
      if (point > 0xffff) i += 1;
      var shown = point !== 0x20 && INVISIBLE.test(ch) ? escaped(point) : ch;
      for (var j = 0; j < shown.length; j++) this.put(shown[j], true);
    }
  };
  Screen.prototype.newline = function () {
    this.row += 1; this.col = 0;
    while (this.lines.length <= this.row) this.lines.push([]);
    if (this.lines.length > this.maxLines) { this.lines.shift(); this.row -= 1; this.dropped += 1; }
  };
  Screen.prototype.csi = function (seq) {
    var final = seq[seq.length - 1], params = seq.slice(0, -1);
    if (final === "K") { this.lines[this.row].length = Math.min(this.lines[this.row].length, this.col); }
    else if (final === "J" && (params === "2" || params === "3")) { this.cleared(); }
    else if (final === "H" && (params === "" || params === "1;1")) { this.lines = this.lines.slice(0); this.row = Math.max(0, this.lines.length - 1); this.col = 0; }
    // every other CSI sequence (colours, cursor moves) is dropped
  };
  // the screen cleared: what it showed stays above (as a terminal's scrollback would),
  // then a mark, then the fresh screen
  Screen.prototype.cleared = function () {
    var empty = !this.lines[this.lines.length - 1].length;
    if (this.lines.length === 1 && empty) return;
    if (this.clearedAt === this.lines.length && empty) return;  // CSI 2 J then CSI 3 J
    this.row = this.lines.length - 1; this.col = this.lines[this.row].length;
    if (!empty) this.newline();
    this.inert("[screen cleared]"); this.newline();
    this.clearedAt = this.lines.length;
  };
  // what the keyboard sent: Enter starts a line, everything else not printable shown inert
  Screen.prototype.typed = function (data) {
    for (var i = 0; i < data.length; i++) {
      var point = data.codePointAt(i), ch = String.fromCodePoint(point);
      if (point > 0xffff) i += 1;
      if (ch === "\r" || ch === "\n") this.newline();
      else if (point !== 0x20 && INVISIBLE.test(ch)) this.inert(ch);
      else this.put(ch);
    }
  };
  // every byte as text (the default view): a line break for LF (CR LF is one), every
  // other control character inert; nothing moves the cursor back or erases
  Screen.prototype.literal = function (data) {
    for (var i = 0; i < data.length; i++) {
      var point = data.codePointAt(i), ch = String.fromCodePoint(point);
      if (point > 0xffff) i += 1;
      if (this.cr) { this.cr = false; if (ch !== "\n") this.inert("\r"); }
      if (ch === "\n") { this.newline(); continue; }
      if (ch === "\r") { this.cr = true; continue; }
      if (point !== 0x20 && INVISIBLE.test(ch)) { this.inert(ch); continue; }
      this.put(ch);
    }
  };
  Screen.prototype.write = function (data) {
    if (this.asText) { this.literal(data); return; }
    for (var i = 0; i < data.length; i++) {
      var c = data[i], code = data.charCodeAt(i);
      if (this.state === "esc") {
        if (c === "[") { this.state = "csi"; this.seq = ""; continue; }
        if (c === "]") { this.state = "osc"; continue; }
        this.state = ""; this.inert("\\x1b" + c); continue;
      }
      if (this.state === "csi") {
        if (this.seq.length > 32) { this.state = ""; this.inert("\\x1b[" + this.seq); continue; }
        this.seq += c;
        if (code >= 0x40 && code <= 0x7e) { this.state = ""; this.csi(this.seq); }
        continue;
      }
      if (this.state === "osc") {
        if (c === "\x07") { this.state = ""; this.oscEnded("\x07"); }
        else if (c === "\x1b") { this.state = "osc-esc"; }
        else this.osc += c;
        continue;
      }
      if (this.state === "osc-esc") { this.state = ""; this.oscEnded("\x1b" + c); continue; }
      if (c === "\x1b") { this.state = "esc"; continue; }
      if (c === "\n") { this.newline(); continue; }
      if (c === "\r") { this.col = 0; continue; }
      if (c === "\b") { this.col = Math.max(0, this.col - 1); continue; }
      if (c === "\t") { do { this.put(" "); } while (this.col % 8); continue; }
      var point = data.codePointAt(i), ch = String.fromCodePoint(point);
      if (point > 0xffff) i += 1;  // a character outside the BMP is two code units
      if (point !== 0x20 && INVISIBLE.test(ch)) { this.inert(ch); continue; }
      this.put(ch);
    }
  };
  // an OSC string ended (by `end`; "" when the recording ended inside it): kept whole, to
  // be shown apart from the screen
  Screen.prototype.oscEnded = function (end) {
    this.unseen.push("\x1b]" + this.osc + end); this.osc = "";
  };
  Screen.prototype.render = function (pre) {
    var frag = document.createDocumentFragment();
    if (this.dropped) {
      var note = document.createElement("span"); note.className = "ctl";
      note.textContent = "[" + this.dropped + " earlier lines not shown here: download the asciicast]";
      frag.appendChild(note); frag.appendChild(document.createTextNode("\n"));
    }
    this.lines.forEach(function (line, n) {
      var run = "", runCtl = false;
      function flush() {
        if (!run) return;
        if (runCtl) { var s = document.createElement("span"); s.className = "ctl"; s.textContent = run; frag.appendChild(s); }
        else frag.appendChild(document.createTextNode(run));
        run = "";
      }
      line.forEach(function (cell) {
        if (!!cell.ctl !== runCtl) { flush(); runCtl = !!cell.ctl; }
        run += cell.ch;
      });
      flush();
      if (n < this.lines.length - 1) frag.appendChild(document.createTextNode("\n"));
    }, this);
    if (this.cr) {  // a CR the next frame may follow with LF: shown meanwhile, kept pending
      var cr = document.createElement("span"); cr.className = "ctl"; cr.textContent = "\\r";
      frag.appendChild(cr);
    }
    pre.replaceChildren(frag);
    pre.scrollTop = pre.scrollHeight;
  };

  function parse(text) {
    var lines = text.split("\n").filter(function (l) { return l.trim(); });
    var frames = [], typed = [], t = 0, previous = 0;
    lines.slice(1).forEach(function (l) {
      var e; try { e = JSON.parse(l); } catch (err) { return; }
      if (!Array.isArray(e) || typeof e[2] !== "string") return;
      if (e[1] === "i") { typed.push(e[2]); return; }
      if (e[1] !== "o") return;
      var at = Number(e[0]) || 0;
      t += Math.min(Math.max(at - previous, 0), MAX_IDLE);
      previous = at;
      frames.push({t: t, data: e[2]});
    });
    return {frames: frames, typed: typed.join("")};
  }

  function Player(section) {
    this.section = section;
    this.pre = section.querySelector(".screen");
    this.button = section.querySelector(".play");
    this.speed = section.querySelector(".speed");
    this.position = section.querySelector(".position");
    this.clock = section.querySelector(".clock");
    this.draw = section.querySelector(".draw");
    this.frames = []; this.at = 0; this.next = 0; this.timer = null; this.screen = this.fresh();
    var self = this;
    this.load(0);
    if (this.draw) this.draw.addEventListener("change", function () { self.seek(self.at); });
    this.button.addEventListener("click", function () { self.timer ? self.pause() : self.play(); });
    this.position.addEventListener("input", function () {
      self.pause(); self.seek(self.duration() * self.position.value / 1000);
    });
  }
  // the recording, fetched: a refusal to make it now (429: the PDP makes two of one
  // person's session pages at once, and a page of many channels asks for all of them at
  // once) is asked again; any other failure is said on every pane, never shown as a
  // recording with no output and no input
  Player.prototype.load = function (attempt) {
    var self = this, section = this.section;
    fetch(section.dataset.cast, {credentials: "same-origin"})
      .then(function (r) {
        if (r.status === 429 && attempt < MAX_TRIES) {
          setTimeout(function () { self.load(attempt + 1); }, 500 * (attempt + 1));
          return null;
        }
        var type = r.headers.get("Content-Type") || "";
        if (!r.ok || type.indexOf("application/x-asciicast") !== 0) {
          throw new Error("HTTP " + r.status + (r.ok ? ", not a recording" : ""));
        }
        return r.text();
      })
      .then(function (text) {
        if (text === null) return;
        var cast = parse(text);
        self.frames = cast.frames; self.seek(self.duration());
        var unseen = section.querySelector(".unseen");
        if (unseen) {
          var whole = new Screen(), list = new Screen(Infinity);
          cast.frames.forEach(function (f) { whole.write(f.data); });
          if (whole.state === "osc" || whole.state === "osc-esc") whole.oscEnded(" [never ended]");
          whole.unseen.forEach(function (text) { list.inert(text); list.newline(); });
          if (!whole.unseen.length) list.inert("(none)");
          list.render(unseen);
        }
        var typed = section.querySelector(".typed");
        if (typed) {
          var keys = new Screen(Infinity);
          if (cast.typed) keys.typed(cast.typed); else keys.inert("(no input recorded)");
          keys.render(typed);
        }
      })
      .catch(function (err) { self.failed(err && err.message ? err.message : String(err)); });
  };
  Player.prototype.failed = function (why) {
    this.frames = []; this.button.disabled = true;
    var panes = [this.pre, this.section.querySelector(".typed"), this.section.querySelector(".unseen")];
    panes.forEach(function (pane) {
      if (!pane) return;
      var note = new Screen(Infinity);
      note.inert("[this recording could not be loaded (" + why + "): reload the page]");
      note.render(pane);
    });
  };
  // the screen of the view chosen: every byte as text unless "Draw as a terminal" is on
  Player.prototype.fresh = function () {
    var screen = new Screen();
    screen.asText = !(this.draw && this.draw.checked);
    return screen;
  };
  Player.prototype.duration = function () { return this.frames.length ? this.frames[this.frames.length - 1].t : 0; };
  Player.prototype.seek = function (t) {
    this.screen = this.fresh(); this.next = 0; this.at = t;
    while (this.next < this.frames.length && this.frames[this.next].t <= t) this.screen.write(this.frames[this.next++].data);
    this.show();
  };
  Player.prototype.show = function () {
    this.screen.render(this.pre);
    var d = this.duration();
    this.position.value = d ? Math.round(1000 * this.at / d) : 1000;
    this.clock.textContent = this.at.toFixed(1) + "s / " + d.toFixed(1) + "s";
  };
  Player.prototype.play = function () {
    if (this.next >= this.frames.length) this.seek(0);
    this.button.textContent = "Pause";
    this.step();
  };
  Player.prototype.pause = function () {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null; this.button.textContent = "Play";
  };
  Player.prototype.step = function () {
    var self = this;
    if (this.next >= this.frames.length) { this.pause(); return; }
    var frame = this.frames[this.next];
    var wait = Math.max(0, frame.t - this.at) / (parseFloat(this.speed.value) || 1);
    this.timer = setTimeout(function () {
      self.at = frame.t; self.screen.write(frame.data); self.next += 1; self.show(); self.step();
    }, wait * 1000);
  };

  document.querySelectorAll(".player[data-cast]").forEach(function (s) { new Player(s); });
})();
