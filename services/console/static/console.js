// Live parts of a page: an element with data-live="URL" has its content replaced by what URL answers,
// every data-every milliseconds (2000 unless given). Our own few lines: no library, no build step.
"use strict";
for (const part of document.querySelectorAll("[data-live]")) {
  const every = Number(part.dataset.every || 2000);
  const refresh = async () => {
    try {
      const reply = await fetch(part.dataset.live, { credentials: "same-origin" });
      if (reply.ok) {
        part.innerHTML = await reply.text();
      }
    } catch (error) {
      // the platform restarting, the network away: the next round tries again
    }
    setTimeout(refresh, every);
  };
  setTimeout(refresh, every);
}
