"""The HTML page of the browser view (:mod:`esan.runtime.io.live_view`): no framework, no external files."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - live saliency</title>
<style>
  body {{ margin: 0; background: #161616; color: #e8e8e8; font: 15px/1.4 system-ui, sans-serif; }}
  header {{ padding: 8px 14px; display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }}
  header h1 {{ font-size: 17px; margin: 0; }}
  #state {{ color: #8fd18f; }} #state.off {{ color: #f0a050; }}
  main {{ padding: 0 14px; }}
  #live {{ display: block; width: 100%; height: calc(100vh - 110px); min-height: 240px; object-fit: contain; }}
  ul {{ list-style: none; padding: 0; margin: 8px 0; font-family: ui-monospace, monospace; font-size: 14px; }}
  a {{ color: #9cc8ff; }}
</style></head>
<body>
<header><h1>{title}</h1><span id="state">connecting...</span></header>
<main>
  <img id="live" src="/mosaic.mjpg" alt="live saliency overlay of every stream">
  <ul id="streams"></ul>
</main>
<script>
const state = document.getElementById("state"), list = document.getElementById("streams");
function show(text, ok) {{ state.textContent = text; state.className = ok ? "" : "off"; }}
async function poll() {{
  try {{
    const r = await fetch("/status.json", {{cache: "no-store"}});
    const s = await r.json();
    const n = s.streams.length;
    show(n ? `live: ${{n}} stream${{n > 1 ? "s" : ""}}` : "waiting for the first map...", true);
    list.replaceChildren(...s.streams.map(st => {{
      const li = document.createElement("li"), a = document.createElement("a");
      a.href = `/stream/${{encodeURIComponent(st.id)}}.mjpg`; a.textContent = `stream ${{st.id}}`;
      li.append(a, ` ${{st.ended ? "ended" : st.status}}`);
      return li;
    }}));
    setTimeout(poll, 1000);
  }} catch (e) {{
    show("the stream has ended (server stopped)", false);
  }}
}}
poll();
</script>
</body></html>
"""


def page_html(title: str) -> str:
    """The live page; ``title`` (e.g. the source's name) is HTML-escaped."""
    return _PAGE.format(title=html.escape(title))
