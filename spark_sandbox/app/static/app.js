// Spark web UI: live prices over the WebSocket, and a record of CSP violations.
// This listener must live in a same-origin script file: an inline one is blocked by the very
// policy it watches.
"use strict";

window.sparkCspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.sparkCspViolations.push({
    blockedURI: event.blockedURI,
    effectiveDirective: event.effectiveDirective,
    disposition: event.disposition,
  });
  const counter = document.getElementById("violation-count");
  if (counter) counter.textContent = String(window.sparkCspViolations.length);
});

function showIsolation() {
  const label = document.getElementById("isolation");
  if (label) label.textContent = window.crossOriginIsolated ? "cross-origin isolated" : "not isolated";
}

function showTick(tick) {
  const body = document.querySelector("#prices tbody");
  if (!body) return;
  let row = document.getElementById("price-" + tick.symbol);
  if (!row) {
    row = document.createElement("tr");
    row.id = "price-" + tick.symbol;
    for (let i = 0; i < 3; i += 1) row.appendChild(document.createElement("td"));
    body.appendChild(row);
  }
  // Prices stay strings end to end: money is never parsed into a float for display.
  row.cells[0].textContent = tick.symbol;
  row.cells[1].textContent = String(tick.price);
  row.cells[2].textContent = new Date(tick.ts).toISOString().slice(11, 19);
}

function connectPrices(attempt) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/ws/prices");
  socket.onopen = () => { attempt = 0; };
  socket.onmessage = (message) => showTick(JSON.parse(message.data));
  socket.onclose = () => {
    // Capped exponential backoff with full jitter, so a server restart is not stampeded.
    const delay = Math.random() * Math.min(10000, 250 * 2 ** attempt);
    setTimeout(() => connectPrices(Math.min(attempt + 1, 10)), delay);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  showIsolation();
  connectPrices(0);
});
