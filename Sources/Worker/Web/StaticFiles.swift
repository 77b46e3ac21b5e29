/// The page's own script and style, served from `/static/` (nothing is fetched elsewhere).
enum StaticFiles {
    /// Subscribes to `/events`; on each change fetches the page's fragment again and
    /// replaces `<main>` (the server escaped every value in it). No framework.
    static let script = #"""
        "use strict";
        (function () {
          var main = document.querySelector("main");
          var live = document.getElementById("live");
          if (!main || !window.EventSource) return;
          var source = main.getAttribute("data-fragment");
          var busy = false, again = false, refreshes = 0;
          function refresh() {
            if (busy) { again = true; return; }
            busy = true;
            fetch(source, { cache: "no-store", headers: { "Accept": "text/html" } })
              .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
              .then(function (html) {
                var open = {};
                main.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
                main.innerHTML = html;
                main.querySelectorAll("details[id]").forEach(function (d) { if (d.id in open) d.open = open[d.id]; });
                refreshes += 1;
                document.body.setAttribute("data-refreshes", String(refreshes));
              })
              .catch(function (e) { live.textContent = "refresh failed: " + e.message; })
              .finally(function () { busy = false; if (again) { again = false; refresh(); } });
          }
          var events = new EventSource("/events");
          events.addEventListener("change", refresh);
          events.onopen = function () { live.textContent = "live"; live.className = "live on"; refresh(); };
          events.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
        })();
        """#

    static let style = #"""
        :root { color-scheme: light dark; --line: #8884; --ok: #2a7d2a; --bad: #b3261e; --busy: #a66a00; }
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; }
        header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 1px solid var(--line); }
        header h1 { font-size: 1.3rem; margin: .6rem 0; } header h1 a { color: inherit; text-decoration: none; }
        .live { font-size: .85rem; opacity: .8; } .live.on::before { content: "● "; color: var(--ok); }
        h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; vertical-align: top; padding: .25rem .5rem; border-bottom: 1px solid var(--line); }
        th { font-weight: 600; font-size: .85rem; }
        .state { font-weight: 600; } .state.ready { color: var(--ok); }
        .state.failed, .state.teardown_failed { color: var(--bad); }
        .state.requested, .state.provisioning, .state.tearing_down, .state.running, .state.queued \#
        { color: var(--busy); }
        ul.nodes { margin: 0; padding: 0; list-style: none; font-family: ui-monospace, monospace; font-size: .85rem; }
        td:first-child { white-space: nowrap; }
        .role { opacity: .7; } .empty { opacity: .7; } .stamp { opacity: .6; font-size: .8rem; }
        dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; } \#
        dt { font-weight: 600; } dd { margin: 0; }
        pre.log { max-height: 30rem; overflow: auto; padding: .5rem; border: 1px solid var(--line); \#
        white-space: pre-wrap; }
        """#
}
