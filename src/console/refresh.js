// Keeps a console page's figures fresh without reloading it. Every `data-refresh` seconds it
// fetches the same URL and copies what changed into the page's live regions (`[data-live]`
// with an id: the pause banner and `<main>`), node by node: a text that changed is replaced in
// place, a row that came is inserted, a row that went is removed, and an unchanged form is left
// as it is. What a person is doing is never touched: the navigation (the Find field) is in no
// region; a form control is never written; a region where a field has focus, a box is ticked
// or a field was changed waits (the status line says so); a node holding the focus is never
// removed. Without JavaScript the page has a Refresh link instead.
//
// On every page (also one that does not refresh) it first gives each table cell its column's
// header text (`data-label`), which the stylesheet shows beside the value on a narrow screen,
// where a table becomes one card per row.
(function () {
  "use strict";
  var body = document.body;

  // The cells of every table under `root` whose first row is all headers, labelled by column.
  function label(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table"), function (table) {
      var rows = table.rows;
      if (!rows.length || rows[0].querySelector(":scope > td")) return;
      var names = Array.prototype.map.call(rows[0].cells, function (c) {
        return c.textContent.trim().replace(/\s+/g, " ");
      });
      for (var r = 1; r < rows.length; r++) {
        var column = 0;
        Array.prototype.forEach.call(rows[r].cells, function (cell) {
          var name = cell.colSpan === 1 ? names[column] : "";
          if (name && cell.getAttribute("data-label") !== name) cell.setAttribute("data-label", name);
          column += cell.colSpan;
        });
      }
    });
  }
  label(document);

  var seconds = Number(body.getAttribute("data-refresh"));
  if (!seconds || !window.fetch || !window.DOMParser) return;
  var when = document.getElementById("live-when");
  var CONTROLS = "input, select, textarea";
  // Fields a person types into or picks from: while one has focus, its region waits.
  var TYPING =
    "textarea, select, input:not([type=checkbox]):not([type=radio]):not([type=submit])" +
    ":not([type=button]):not([type=reset]):not([type=hidden])";
  var inFlight = false;
  var stopped = false;

  function say(text) {
    if (when) when.textContent = text;
  }

  function controls(el) {
    var list = Array.prototype.slice.call(el.querySelectorAll(CONTROLS));
    if (el.matches(CONTROLS)) list.push(el);
    return list;
  }

  // A control whose state a person changed from what the page was sent with.
  function changed(c) {
    if (c.type === "hidden") return false;
    if (c.type === "checkbox" || c.type === "radio") return c.checked !== c.defaultChecked;
    if (c.tagName === "SELECT") {
      return Array.prototype.some.call(c.options, function (o) {
        return o.selected !== o.defaultSelected;
      });
    }
    return c.value !== c.defaultValue;
  }

  function holdsFocus(el) {
    var a = document.activeElement;
    return !!a && a !== body && el.contains(a);
  }

  // A person is working in this region: a field has focus, a box is ticked, a field changed.
  function inUse(region) {
    if (holdsFocus(region) && document.activeElement.matches(TYPING)) return true;
    return controls(region).some(changed);
  }

  function same(a, b) {
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) return false;
    if (a.nodeType !== 1) return true;
    return a.id === b.id && a.getAttribute("name") === b.getAttribute("name");
  }

  // Where, at or after `from`, `cur`'s children hold an element with `next`'s id; -1 if none.
  function keyedAt(cur, from, next) {
    if (next.nodeType !== 1 || !next.id) return -1;
    for (var k = from; k < cur.childNodes.length; k++) {
      if (cur.childNodes[k].id === next.id) return k;
    }
    return -1;
  }

  // A node that must stay where it is: it holds the focus or a field someone changed.
  function kept(node) {
    if (node.nodeType !== 1) return false;
    return holdsFocus(node) || controls(node).some(changed);
  }

  function syncAttributes(cur, next) {
    var i, name;
    for (i = cur.attributes.length - 1; i >= 0; i--) {
      name = cur.attributes[i].name;
      if (name !== "open" && name !== "data-label" && !next.hasAttribute(name)) {
        cur.removeAttribute(name);
      }
    }
    for (i = 0; i < next.attributes.length; i++) {
      name = next.attributes[i].name;
      if (name !== "open" && cur.getAttribute(name) !== next.attributes[i].value) {
        cur.setAttribute(name, next.attributes[i].value);
      }
    }
  }

  // Makes `cur` look like `next`, touching only what differs: children matched in order (by
  // id where they have one) are updated in place, new ones inserted, gone ones removed unless
  // they hold the focus or a changed field.
  function morph(cur, next) {
    if (cur.matches(CONTROLS) || cur.hasAttribute("data-static")) return;
    syncAttributes(cur, next);
    var b = next.childNodes;
    var i = 0;
    for (var j = 0; j < b.length; j++) {
      var here = cur.childNodes[i];
      var k = here && !same(here, b[j]) ? keyedAt(cur, i + 1, b[j]) : -1;
      // Skip over what went away before the element that is still here.
      while (k > i) {
        if (kept(cur.childNodes[i])) i++;
        else cur.removeChild(cur.childNodes[i]);
        k = keyedAt(cur, i, b[j]);
      }
      here = cur.childNodes[i];
      if (here && same(here, b[j])) {
        if (here.nodeType === 1) morph(here, b[j]);
        else if (here.nodeValue !== b[j].nodeValue) here.nodeValue = b[j].nodeValue;
      } else {
        cur.insertBefore(document.importNode(b[j], true), here || null);
      }
      i++;
    }
    while (cur.childNodes.length > i) {
      var last = cur.childNodes[cur.childNodes.length - 1];
      if (kept(last)) break;
      cur.removeChild(last);
    }
  }

  function regions() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-live][id]"), function (r) {
      return !r.parentElement.closest("[data-live]");
    });
  }

  function clock() {
    return new Date().toISOString().slice(11, 19) + " UTC";
  }

  function apply(text) {
    var doc = new DOMParser().parseFromString(text, "text/html");
    var held = false;
    regions().forEach(function (cur) {
      var next = doc.getElementById(cur.id);
      if (!next || !next.hasAttribute("data-live")) return;
      if (inUse(cur)) {
        held = true;
        return;
      }
      morph(cur, next);
    });
    label(document);
    if (doc.title && doc.title !== document.title) document.title = doc.title;
    say(
      held
        ? "Not updated since " + lastUpdate + ": paused while you work on this page (a field in use or a box ticked)."
        : "Updated " + (lastUpdate = clock()) + ", every " + seconds + " s."
    );
  }

  var lastUpdate = clock();

  function tick() {
    if (stopped || inFlight || document.hidden) return;
    inFlight = true;
    fetch(location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    })
      .then(function (r) {
        if (new URL(r.url).pathname === "/console/login") {
          stopped = true;
          say("Your session has ended: reload the page to log in again.");
          return null;
        }
        if (!r.ok) {
          say("Not updated at " + clock() + ": the console answered " + r.status + "; trying again.");
          return null;
        }
        return r.text();
      })
      .then(function (text) {
        if (text !== null) apply(text);
      })
      .catch(function () {
        say("Not updated at " + clock() + ": the console did not answer; trying again.");
      })
      .then(function () {
        inFlight = false;
      });
  }

  say("Updated " + lastUpdate + ", every " + seconds + " s.");
  setInterval(tick, seconds * 1000);
  // A tab in the background asks nothing; back in front, it catches up at once.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) tick();
  });
})();
