// The live feed: a WebSocket to /api/v1/live that reconnects by itself, with backoff.
// While it is down the page says so plainly (body.offline and the link badge).

const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];
// The edge pushes the board at least every 5 s; silence this long is a dead link
// (a cable pulled or Wi-Fi gone sends no close), so the socket is dropped and redialled.
const SILENCE_MS = 12000;

export function connectLive(query, onMessage) {
  let attempt = 0;
  let socket = null;
  let silence = null;

  function heard() {
    clearTimeout(silence);
    silence = setTimeout(() => socket && socket.close(), SILENCE_MS);
  }
  const badge = document.getElementById("link");

  function show(up, text) {
    document.body.classList.toggle("offline", !up);
    if (badge) {
      badge.className = `link ${up ? "up" : "down"}`;
      badge.textContent = text;
    }
  }

  function open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/live${query || ""}`);
    socket.onopen = () => {
      attempt = 0;
      heard();
      show(true, "● LIVE");
    };
    socket.onmessage = (event) => {
      heard();
      show(true, "● LIVE");
      onMessage(JSON.parse(event.data));
    };
    socket.onclose = () => {
      clearTimeout(silence);
      show(false, "LINK LOST");
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt += 1;
      setTimeout(open, wait);
    };
    socket.onerror = () => socket.close();
  }

  show(false, "connecting…");
  open();
}
