// callqa review workstation: plain JavaScript, no libraries, nothing fetched from elsewhere.
"use strict";

(function () {
  const REVIEWER_KEY = "callqa.reviewer";

  function reviewerName() {
    if (document.body.dataset.user) return document.body.dataset.user;  // accounts: the signed-in user
    const top = document.getElementById("reviewer-name");
    return (top && top.value.trim()) || localStorage.getItem(REVIEWER_KEY) || "";
  }

  function setupReviewer() {
    const top = document.getElementById("reviewer-name");
    const saved = localStorage.getItem(REVIEWER_KEY) || "";
    if (top) {
      top.value = saved;
      top.addEventListener("input", () => {
        localStorage.setItem(REVIEWER_KEY, top.value.trim());
        document.querySelectorAll("input[data-remember=reviewer]").forEach((i) => { i.value = top.value.trim(); });
      });
    }
    document.querySelectorAll("input[data-remember=reviewer]").forEach((i) => {
      if (!i.value) i.value = saved;
      i.addEventListener("change", () => {
        localStorage.setItem(REVIEWER_KEY, i.value.trim());
        if (top) top.value = i.value.trim();
      });
    });
  }

  // POST JSON to the app; resolves to {ok, status, data}. Network failures come back as status 0.
  async function postJSON(url, payload) {
    try {
      const resp = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify(payload),
      });
      let data = {};
      try { data = await resp.json(); } catch (e) { data = {error: resp.statusText}; }
      return {ok: resp.ok, status: resp.status, data};
    } catch (e) {
      return {ok: false, status: 0, data: {error: "the workstation did not answer (" + e.message + ")"}};
    }
  }

  function showStatus(el, text, ok) {
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("err", !ok);
    el.classList.toggle("ok", !!ok);
  }

  // Forms with data-api post their named fields as JSON. On failure the form keeps what was typed.
  function setupForms() {
    document.querySelectorAll("form[data-api]").forEach((form) => {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const payload = {};
        new FormData(form).forEach((v, k) => { payload[k] = String(v); });
        if ("comment" in payload && payload.comment === "") delete payload.comment;
        const status = form.querySelector(".form-status");
        const button = form.querySelector("button[type=submit]");
        if (button) button.disabled = true;
        showStatus(status, "saving…", true);
        const res = await postJSON(form.dataset.api, payload);
        if (button) button.disabled = false;
        if (res.ok) {
          showStatus(status, "saved", true);
          if (form.hasAttribute("data-next")) { location.href = res.data.next || "/"; return; }
          if (form.hasAttribute("data-reload")) {
            sessionStorage.setItem("callqa.scroll", String(window.scrollY));
            location.reload();
          }
        } else {
          const retry = res.status === 503 ? " (your input is still here: submit again)" : "";
          showStatus(status, "not saved: " + (res.data.error || res.status) + retry, false);
        }
      });
    });
    const y = sessionStorage.getItem("callqa.scroll");
    if (y !== null) { sessionStorage.removeItem("callqa.scroll"); window.scrollTo(0, Number(y)); }
  }

  // Evidence and transcript times play the whole call from that moment.
  function setupSeek() {
    const audio = document.getElementById("call-audio");
    if (!audio) return;
    document.querySelectorAll("[data-seek]").forEach((btn) => {
      btn.addEventListener("click", () => {
        const t = Number(btn.dataset.seek);
        const go = () => {
          audio.currentTime = t;
          const p = audio.play();
          if (p && p.catch) p.catch((e) => { if (e.name !== "AbortError") console.warn("audio:", e.message); });
        };
        if (audio.readyState >= 1) go(); else { audio.addEventListener("loadedmetadata", go, {once: true}); audio.load(); }
        if (btn.dataset.segment !== undefined) {
          const seg = document.getElementById("seg-" + btn.dataset.segment);
          if (seg) seg.scrollIntoView({block: "center"});
        }
      });
    });
    const segs = [...document.querySelectorAll("li.seg")].map((li) => ({
      li, start: Number(li.querySelector("[data-seek]").dataset.seek),
    }));
    audio.addEventListener("timeupdate", () => {
      let cur = null;
      for (const s of segs) { if (s.start <= audio.currentTime + 0.05) cur = s; }
      segs.forEach((s) => s.li.classList.toggle("playing", s === cur));
    });
  }

  function setupLogout() {
    const btn = document.getElementById("logout");
    if (!btn) return;
    btn.addEventListener("click", async () => {
      await postJSON("/api/logout", {});
      location.href = "/login";
    });
  }

  function setupAutosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach((sel) => {
      sel.addEventListener("change", () => sel.form.submit());
    });
  }

  // Review queue: j/k move, p/f record pass/fail for the selected verdict, Enter opens the call.
  function setupQueue() {
    const table = document.getElementById("queue");
    if (!table) return;
    const rows = [...table.querySelectorAll("tr.q-row")];
    const status = document.getElementById("queue-status");
    let at = rows.length ? 0 : -1;
    const select = (i) => {
      if (!rows.length) return;
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach((r, n) => r.classList.toggle("selected", n === at));
      rows[at].scrollIntoView({block: "nearest"});
    };
    rows.forEach((r, n) => r.addEventListener("click", () => select(n)));
    select(0);
    async function review(verdict) {
      const row = rows[at];
      if (!row) return;
      const reviewer = reviewerName();
      if (!reviewer) { showStatus(status, "type your name in the Reviewer box at the top first", false); return; }
      const res = await postJSON("/api/reviews", {call: row.dataset.call, item: row.dataset.item, verdict, reviewer});
      const cell = row.querySelector(".q-result");
      if (res.ok) {
        cell.textContent = verdict + " ✓";
        cell.className = "q-result v-" + verdict;
        row.dataset.reviewed = verdict;
        showStatus(status, `saved ${verdict} for ${row.dataset.call} / ${row.dataset.item}`, true);
        select(at + 1);
      } else {
        showStatus(status, "not saved: " + (res.data.error || res.status), false);
      }
    }
    document.addEventListener("keydown", (ev) => {
      const tag = (ev.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === "j") { select(at + 1); ev.preventDefault(); }
      else if (ev.key === "k") { select(at - 1); ev.preventDefault(); }
      else if (ev.key === "p") { review("pass"); ev.preventDefault(); }
      else if (ev.key === "f") { review("fail"); ev.preventDefault(); }
      else if (ev.key === "Enter" && rows[at]) { location.href = rows[at].dataset.href; }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupReviewer();
    setupForms();
    setupSeek();
    setupAutosubmit();
    setupLogout();
    setupQueue();
  });
})();

// Rules bench: run a typed dialogue through the checklist and list the verdicts (nothing is stored).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("dialogue-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = form.querySelector(".form-status");
    status.textContent = "running…";
    const resp = await fetch("/api/rules/test", {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({checklist: form.dataset.checklist, dialogue: form.elements.dialogue.value}),
    });
    const data = await resp.json();
    const body = document.querySelector("#dialogue-result tbody");
    body.replaceChildren();
    if (!resp.ok) { status.textContent = "error: " + data.error; status.className = "form-status err"; return; }
    status.textContent = ""; status.className = "form-status ok";
    for (const v of data.verdicts) {
      const tr = document.createElement("tr");
      tr.dataset.item = v.item_id;
      for (const [text, cls] of [[v.item_id, ""], [v.verdict, "v-" + v.verdict], [v.confidence.toFixed(2), ""],
                                 [v.evidence.join(" / "), "quote"]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  });
});
