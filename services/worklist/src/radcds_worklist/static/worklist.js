// radcds worklist: live updates (Server-Sent Events), keyboard navigation, the overlay toggle.
// No framework and no third-party script: the pages are rendered by the server; this only refreshes and navigates.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const live = (window.radcdsLive = { lastSeq: 0, received: 0, refreshed: 0, connected: false });

  function ago(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return "just now";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h " + (minutes % 60) + " min";
    return Math.floor(hours / 24) + " d";
  }

  function tickAges() {
    document.querySelectorAll("[data-since].waiting, [data-since].since").forEach((el) => {
      if (el.dataset.since) el.textContent = ago(el.dataset.since);
    });
  }

  function connect(since, onEvent) {
    live.lastSeq = Number(since) || 0;
    // The browser resends the last id it saw as Last-Event-ID when it reconnects; the server resumes after it.
    const source = new EventSource("/live?since=" + encodeURIComponent(live.lastSeq));
    source.onopen = () => { live.connected = true; };
    source.onerror = () => { live.connected = false; };
    const handle = (message) => {
      live.lastSeq = Number(message.lastEventId) || live.lastSeq;
      live.received += 1;
      let data = {};
      try { data = JSON.parse(message.data); } catch (e) { data = {}; }
      onEvent(message.type, data);
    };
    ["study", "finding", "report", "critical", "assessment", "lock", "feedback", "alert"].forEach((kind) =>
      source.addEventListener(kind, handle));
    return source;
  }

  // ---- the list ------------------------------------------------------------------------------------------
  function rows() { return Array.from(document.querySelectorAll("#rows tr[data-study]")); }

  function select(index) {
    const all = rows();
    if (!all.length) return;
    const i = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((r) => r.classList.remove("selected"));
    all[i].classList.add("selected");
    all[i].setAttribute("aria-selected", "true");
    all[i].focus({ preventScroll: false });
    sessionStorage.setItem("radcds.selected", all[i].dataset.study);
  }

  function selectedIndex() { return rows().findIndex((r) => r.classList.contains("selected")); }

  let refreshing = null;
  function refreshRows() {
    if (refreshing) { refreshing.again = true; return; }
    const body = document.getElementById("rows");
    refreshing = { again: false };
    fetch("/rows?" + body.dataset.query, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        const keep = sessionStorage.getItem("radcds.selected");
        body.innerHTML = html;
        live.refreshed += 1;
        const count = document.getElementById("count");
        if (count) count.textContent = rows().length + " shown";
        const i = rows().findIndex((r) => r.dataset.study === keep);
        if (i >= 0) rows()[i].classList.add("selected");
        tickAges();
      })
      .catch(() => {})
      .finally(() => {
        const again = refreshing && refreshing.again;
        refreshing = null;
        if (again) refreshRows();
      });
  }

  function initList() {
    const body = document.getElementById("rows");
    body.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-study]");
      if (row && !e.target.closest("a, button, form")) window.location.href = row.dataset.href;
    });
    const keep = sessionStorage.getItem("radcds.selected");
    const i = rows().findIndex((r) => r.dataset.study === keep);
    select(i >= 0 ? i : 0);
    connect(body.dataset.since, () => refreshRows());
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea")) return;
      if (e.key === "j" || e.key === "ArrowDown") { e.preventDefault(); select(selectedIndex() + 1); }
      else if (e.key === "k" || e.key === "ArrowUp") { e.preventDefault(); select(selectedIndex() - 1); }
      else if (e.key === "Enter") {
        const row = rows()[selectedIndex()];
        if (row) window.location.href = row.dataset.href;
      }
    });
  }

  // ---- the study -----------------------------------------------------------------------------------------
  function initStudy() {
    const article = document.querySelector("article.study");
    const study = article.dataset.study;
    const toggle = document.getElementById("toggle-overlay");
    const overlay = document.getElementById("overlay");
    // An <svg> has no "hidden" property (it is not an HTMLElement): set the attribute itself.
    const shown = () => overlay && !overlay.hasAttribute("hidden");
    function setOverlay(on) {
      if (!overlay || !toggle) return;
      if (on) overlay.removeAttribute("hidden"); else overlay.setAttribute("hidden", "");
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      toggle.textContent = on ? "Hide overlay (o)" : "Show overlay (o)";
      sessionStorage.setItem("radcds.overlay", on ? "on" : "off");
    }
    if (toggle) {
      toggle.addEventListener("click", () => setOverlay(!shown()));
      setOverlay(sessionStorage.getItem("radcds.overlay") !== "off");
    }
    // A change to this study (a new finding, report version, assessment, lock) is announced, never forced: the
    // page does not move under the reader's eyes or hands; "Reload" (or r) shows it.
    const changed = document.getElementById("changed");
    document.getElementById("reload").addEventListener("click", () => window.location.replace(window.location.pathname));
    connect(article.dataset.since, (kind, data) => {
      if (data.study_uid !== study) return;
      changed.hidden = false;
      live.changed = (live.changed || 0) + 1;
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea")) return;
      if (e.key === "o") { e.preventDefault(); setOverlay(!shown()); }
      else if (e.key === "a") { const b = document.getElementById("accept"); if (b) { e.preventDefault(); b.click(); } }
      else if (e.key === "m") { const b = document.getElementById("assign"); if (b) { e.preventDefault(); b.click(); } }
      else if (e.key === "r" && !changed.hidden) { e.preventDefault(); window.location.replace(window.location.pathname); }
      else if (e.key === "Escape") { window.location.href = "/"; }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    tickAges();
    setInterval(tickAges, 30000);
    if (page === "worklist") initList();
    else if (page === "study") initStudy();
  });
})();
