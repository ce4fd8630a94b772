// The approvals inbox, live: the server says "changed" over server-sent events; the
// list is fetched again (filtered for this viewer by the server) and merged card by card,
// so a reason being typed in an unchanged card is kept.
"use strict";
(function () {
  var inbox = document.getElementById("inbox");
  var live = document.getElementById("live");
  if (!inbox || !window.EventSource) return;

  function key(card) { return card.dataset.id + ":" + card.dataset.state; }

  function merge(html) {
    var fresh = document.createElement("template");
    fresh.innerHTML = html;  // the server escaped every value; CSP runs no inline script
    var kept = {};
    inbox.querySelectorAll("article.request").forEach(function (card) {
      var typed = card.querySelector("textarea");
      if (typed && typed.value) kept[key(card)] = card;
    });
    var focusedId = document.activeElement && document.activeElement.id;
    fresh.content.querySelectorAll("article.request").forEach(function (card) {
      var old = kept[key(card)];
      if (old) card.replaceWith(old);
    });
    inbox.replaceChildren(fresh.content);
    if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
  }

  function refresh() {
    fetch(inbox.dataset.fragment, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        merge(html);
        live.textContent = "Updated " + new Date().toLocaleTimeString();
      })
      .catch(function () { live.textContent = "Could not refresh; reload the page."; });
  }

  var stream = new EventSource(inbox.dataset.stream);
  stream.addEventListener("changed", refresh);
  stream.addEventListener("signedout", function () {
    stream.close();
    live.textContent = "Your sign-in has ended; sign in again.";
  });
})();
