/*
 * docs_page.c - GET /docs: a documentation page that works offline. Three small static files
 * served by the intake itself (the page, its script, its style sheet); the script fetches
 * /openapi.json from the same origin and renders it. Nothing is loaded from anywhere else, so
 * the page's Content-Security-Policy allows 'self' for script, style and fetch and nothing
 * more (no inline code, no fonts, no frames).
 */
#include "intake.h"
#include "openapi.h"

#include <string.h>

static const char PAGE[] =
    "<!DOCTYPE html>\n"
    "<html lang='en'><head><meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    "<title>Calseta API</title>\n"
    "<link rel='stylesheet' href='/docs/docs.css'>\n"
    "<script src='/docs/docs.js' defer></script>\n"
    "</head><body>\n"
    "<header><h1 id='title'>Calseta API</h1><p id='desc'></p>\n"
    "<p><a href='/openapi.json'>openapi.json</a></p>\n"
    "<input id='filter' type='search' placeholder='Filter by path, summary or scope'></header>\n"
    "<nav id='toc'></nav><main id='ops'><p>Loading /openapi.json&hellip;</p></main>\n"
    "</body></html>\n";

static const char SCRIPT[] =
    "'use strict';\n"
    "function el(tag, cls, text) {\n"
    "  const e = document.createElement(tag);\n"
    "  if (cls) e.className = cls;\n"
    "  if (text !== undefined) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "function refName(s) { return s && s.$ref ? s.$ref.split('/').pop() : null; }\n"
    "function schemaText(s) {\n"
    "  if (!s) return '';\n"
    "  const n = refName(s);\n"
    "  if (n) return n;\n"
    "  if (s.type === 'array' && s.items) return schemaText(s.items) + '[]';\n"
    "  if (s.properties && s.properties.data) {\n"
    "    return '{data: ' + schemaText(s.properties.data) + ', meta}';\n"
    "  }\n"
    "  return Array.isArray(s.type) ? s.type.join(' | ') : (s.type || 'object');\n"
    "}\n"
    "function schemaLink(s) {\n"
    "  const t = schemaText(s);\n"
    "  const span = el('code', null, t);\n"
    "  return span;\n"
    "}\n"
    "function renderOp(path, method, op, doc) {\n"
    "  const sec = el('section', 'op');\n"
    "  sec.dataset.search = (path + ' ' + (op.summary || '') + ' ' +\n"
    "                        (op['x-required-scope'] || '')).toLowerCase();\n"
    "  const h = el('h3');\n"
    "  h.append(el('span', 'method ' + method, method.toUpperCase()), ' ', el('code', null, path));\n"
    "  sec.append(h, el('p', 'summary', op.summary || ''), el('p', 'scope', op.description || ''));\n"
    "  if (op.parameters && op.parameters.length) {\n"
    "    const t = el('table');\n"
    "    t.append(el('caption', null, 'Parameters'));\n"
    "    for (const p of op.parameters) {\n"
    "      const tr = el('tr');\n"
    "      tr.append(el('td', null, p.name), el('td', null, p.in),\n"
    "                el('td', null, schemaText(p.schema) + (p.schema.format ? ' (' + p.schema.format + ')' : '')),\n"
    "                el('td', null, p.required ? 'required' : ''));\n"
    "      t.append(tr);\n"
    "    }\n"
    "    sec.append(t);\n"
    "  }\n"
    "  if (op.requestBody) {\n"
    "    const s = op.requestBody.content['application/json'].schema;\n"
    "    const p = el('p', null, 'Body: ');\n"
    "    p.append(schemaLink(s));\n"
    "    sec.append(p);\n"
    "  }\n"
    "  const ul = el('ul', 'responses');\n"
    "  for (const [code, r0] of Object.entries(op.responses)) {\n"
    "    const r = r0.$ref ? doc.components.responses[refName(r0)] : r0;\n"
    "    const li = el('li', null, code + ' ' + (r.description || ''));\n"
    "    const c = r.content && (r.content['application/json'] || Object.values(r.content)[0]);\n"
    "    if (c && c.schema) { li.append(' '); li.append(schemaLink(c.schema)); }\n"
    "    ul.append(li);\n"
    "  }\n"
    "  sec.append(ul);\n"
    "  return sec;\n"
    "}\n"
    "function render(doc) {\n"
    "  document.getElementById('title').textContent = doc.info.title + ' ' + doc.info.version;\n"
    "  document.getElementById('desc').textContent = doc.info.description || '';\n"
    "  const ops = document.getElementById('ops');\n"
    "  const toc = document.getElementById('toc');\n"
    "  ops.replaceChildren();\n"
    "  const byTag = new Map();\n"
    "  for (const t of doc.tags || []) byTag.set(t.name, []);\n"
    "  for (const [path, item] of Object.entries(doc.paths)) {\n"
    "    for (const [method, op] of Object.entries(item)) {\n"
    "      const tag = (op.tags && op.tags[0]) || 'Other';\n"
    "      if (!byTag.has(tag)) byTag.set(tag, []);\n"
    "      byTag.get(tag).push(renderOp(path, method, op, doc));\n"
    "    }\n"
    "  }\n"
    "  for (const [tag, list] of byTag) {\n"
    "    const id = 'tag-' + tag.replace(/[^A-Za-z0-9]+/g, '-');\n"
    "    const a = el('a', null, tag + ' (' + list.length + ')');\n"
    "    a.href = '#' + id;\n"
    "    toc.append(a);\n"
    "    const h = el('h2', null, tag);\n"
    "    h.id = id;\n"
    "    ops.append(h, ...list);\n"
    "  }\n"
    "  const schemas = el('section', 'schemas');\n"
    "  schemas.append(el('h2', null, 'Schemas'));\n"
    "  for (const [name, s] of Object.entries(doc.components.schemas || {})) {\n"
    "    const d = el('details');\n"
    "    d.append(el('summary', null, name), el('pre', null, JSON.stringify(s, null, 2)));\n"
    "    schemas.append(d);\n"
    "  }\n"
    "  ops.append(schemas);\n"
    "}\n"
    "document.addEventListener('DOMContentLoaded', () => {\n"
    "  fetch('/openapi.json').then(r => r.json()).then(render).catch(e => {\n"
    "    document.getElementById('ops').textContent = 'Cannot load /openapi.json: ' + e;\n"
    "  });\n"
    "  document.getElementById('filter').addEventListener('input', ev => {\n"
    "    const q = ev.target.value.toLowerCase();\n"
    "    for (const s of document.querySelectorAll('section.op')) {\n"
    "      s.hidden = q !== '' && !s.dataset.search.includes(q);\n"
    "    }\n"
    "  });\n"
    "});\n";

static const char STYLE[] =
    "body { font-family: system-ui, sans-serif; margin: 0; display: grid;\n"
    "       grid-template-columns: 16rem 1fr; grid-template-rows: auto 1fr; }\n"
    "header { grid-column: 1 / 3; padding: 1rem 2rem; background: #1d2433; color: #fff; }\n"
    "header a { color: #9cc3ff; }\n"
    "#filter { width: 24rem; padding: .3rem; }\n"
    "nav { padding: 1rem; border-right: 1px solid #ddd; }\n"
    "nav a { display: block; padding: .2rem 0; color: #1d2433; }\n"
    "main { padding: 1rem 2rem; max-width: 70rem; }\n"
    "section.op { border: 1px solid #ddd; border-radius: 4px; padding: .5rem 1rem; margin: .7rem 0; }\n"
    "h3 { margin: .2rem 0; font-size: 1rem; }\n"
    ".method { display: inline-block; min-width: 4rem; text-align: center; color: #fff;\n"
    "          border-radius: 3px; padding: 0 .3rem; }\n"
    ".get { background: #2f7d32; } .post { background: #1f5fbf; } .patch { background: #a86b00; }\n"
    ".put { background: #6a3fb5; } .delete { background: #b3261e; }\n"
    ".scope { color: #555; font-size: .9rem; }\n"
    "table { border-collapse: collapse; font-size: .9rem; }\n"
    "td { border: 1px solid #eee; padding: .1rem .5rem; }\n"
    "caption { text-align: left; font-weight: bold; }\n"
    "pre { background: #f6f8fa; padding: .5rem; overflow: auto; }\n";

void route_docs(struct reqctx *rc)
{
    reply_body(rc, 200, "text/html; charset=utf-8", PAGE, sizeof PAGE - 1);
}

void route_docs_js(struct reqctx *rc)
{
    reply_body(rc, 200, "text/javascript; charset=utf-8", SCRIPT, sizeof SCRIPT - 1);
}

void route_docs_css(struct reqctx *rc)
{
    reply_body(rc, 200, "text/css; charset=utf-8", STYLE, sizeof STYLE - 1);
}
