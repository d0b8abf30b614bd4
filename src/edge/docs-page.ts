/** The OpenAPI document as a self-contained web page for `GET /api/docs`: no scripts, nothing loaded from elsewhere. */

type Json = Record<string, any>;

const escapeHtml = (text: unknown) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Inline code spans in descriptions, on escaped text. */
const prose = (text: unknown) => escapeHtml(text ?? '').replace(/`([^`]+)`/g, '<code>$1</code>');

/** A compact, readable type for a JSON Schema: `Job`, `string (pattern …)`, `integer 1..1000 | null`. */
function typeOf(schema: Json | undefined): string {
  if (!schema || Object.keys(schema).length === 0) return 'any';
  if (schema.$ref) {
    const id = String(schema.$ref).split('/').pop()!;
    return `<a href="#schema-${escapeHtml(id)}">${escapeHtml(id)}</a>`;
  }
  if (schema.anyOf || schema.oneOf) return (schema.anyOf ?? schema.oneOf).map(typeOf).join(' | ');
  if (schema.enum) return schema.enum.map((v: unknown) => `<code>${escapeHtml(JSON.stringify(v))}</code>`).join(' | ');
  if (schema.const !== undefined) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`;
  if (schema.type === 'array') return `array of ${typeOf(schema.items)}`;
  if (schema.type === 'object' && schema.properties) return 'object';
  const parts = [escapeHtml(Array.isArray(schema.type) ? schema.type.join(' | ') : (schema.type ?? 'any'))];
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (min !== undefined || max !== undefined) parts.push(`${min ?? ''}..${max ?? ''}`);
  if (schema.minLength !== undefined || schema.maxLength !== undefined) parts.push(`length ${schema.minLength ?? 0}..${schema.maxLength ?? ''}`);
  if (schema.pattern) parts.push(`<code>${escapeHtml(schema.pattern)}</code>`);
  if (schema.format) parts.push(`(${escapeHtml(schema.format)})`);
  if (schema.contentMediaType) parts.push(`(${escapeHtml(schema.contentMediaType)})`);
  if (schema.default !== undefined) parts.push(`default <code>${escapeHtml(JSON.stringify(schema.default))}</code>`);
  return parts.join(' ');
}

function propertiesTable(schema: Json, depth = 0): string {
  const variants = schema.oneOf ?? schema.anyOf;
  if (variants && depth < 3) {
    return variants
      .map((v: Json, i: number) => `<p class="variant">variant ${i + 1}: ${typeOf(v)}</p>${v.properties ? propertiesTable(v, depth + 1) : ''}`)
      .join('');
  }
  if (!schema.properties) return `<p>${typeOf(schema)}</p>`;
  const required = new Set<string>(schema.required ?? []);
  const rows = Object.entries(schema.properties as Record<string, Json>).map(([name, prop]) => {
    const nested = prop.type === 'object' && prop.properties && depth < 3 ? propertiesTable(prop, depth + 1) : '';
    const nullableObject = (prop.anyOf ?? []).find((p: Json) => p.type === 'object' && p.properties);
    const nestedNullable = nullableObject && depth < 3 ? `<p class="variant">or null:</p>${propertiesTable(nullableObject, depth + 1)}` : '';
    return `<tr><td><code>${escapeHtml(name)}</code>${required.has(name) ? '' : ' <span class="opt">optional</span>'}</td><td>${typeOf(prop)}${nested}${nestedNullable}</td><td>${prose(prop.description)}</td></tr>`;
  });
  return `<table class="props"><thead><tr><th>field</th><th>type</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

export function renderDocsPage(doc: Json): string {
  const info = doc.info as Json;
  const byTag = new Map<string, string[]>();
  const toc: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(methods as Record<string, Json>)) {
      const anchor = `op-${op.operationId}`;
      const params = (op.parameters ?? []) as Json[];
      const paramRows = params
        .map((p) => `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}${p.required ? '' : ' <span class="opt">optional</span>'}</td><td>${typeOf(p.schema)}</td><td>${prose(p.description)}</td></tr>`)
        .join('');
      const body = op.requestBody
        ? Object.entries(op.requestBody.content as Record<string, Json>)
            .map(([media, content]) => `<h4>request body <code>${escapeHtml(media)}</code></h4>${content.schema ? propertiesTable(content.schema.$ref ? { anyOf: [content.schema] } : content.schema) : `<p>${prose(op.requestBody.description ?? 'raw bytes')}</p>`}`)
            .join('')
        : '';
      const responses = Object.entries(op.responses as Record<string, Json>)
        .map(([status, r]) => {
          const contents = Object.entries((r.content ?? {}) as Record<string, Json>)
            .map(([media, c]) => `<code>${escapeHtml(media)}</code>${c.schema ? ` ${typeOf(c.schema)}` : ''}`)
            .join(', ');
          return `<tr><td class="status s${status[0]}">${escapeHtml(status)}</td><td>${prose(r.description)}</td><td>${contents}</td></tr>`;
        })
        .join('');
      const access = Array.isArray(op.security) && op.security.length === 0 ? '<span class="badge open">no token</span>' : '';
      const html = `<section class="op" id="${escapeHtml(anchor)}">
<h3><span class="method ${escapeHtml(method)}">${escapeHtml(method.toUpperCase())}</span> <code>${escapeHtml(path)}</code> ${access}</h3>
<p>${prose(op.summary)}</p>${op.description ? `<p class="desc">${prose(op.description)}</p>` : ''}
${paramRows ? `<h4>parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>${paramRows}</tbody></table>` : ''}
${body}
<h4>responses</h4><table><thead><tr><th>status</th><th>meaning</th><th>content</th></tr></thead><tbody>${responses}</tbody></table>
</section>`;
      const tag = (op.tags?.[0] as string) ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag)!.push(html);
      toc.push(`<li><a href="#${escapeHtml(anchor)}"><span class="method ${escapeHtml(method)}">${escapeHtml(method.toUpperCase())}</span> ${escapeHtml(path)}</a></li>`);
    }
  }
  const tags = (doc.tags as Json[]).map((t) => t.name as string).filter((t) => byTag.has(t));
  const sections = tags.map((tag) => `<h2 id="tag-${escapeHtml(tag)}">${escapeHtml(tag)}</h2>${byTag.get(tag)!.join('\n')}`).join('\n');
  const schemas = Object.entries(doc.components.schemas as Record<string, Json>)
    .map(([id, schema]) => `<section class="schema" id="schema-${escapeHtml(id)}"><h3>${escapeHtml(id)}</h3>${schema.description ? `<p>${prose(schema.description)}</p>` : ''}${propertiesTable(schema)}</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(info.title)}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:1.2em 2em}header p{margin:.3em 0 0;color:#c9d1e0;max-width:60em}
header a{color:#9cc4ff}header code{background:#2c3547;color:#e8edf5}
main{display:grid;grid-template-columns:22em 1fr;gap:2em;padding:1.5em 2em}
nav ul{list-style:none;padding:0;margin:0;font-size:13px}nav li{margin:.15em 0}nav a{color:#1d2330;text-decoration:none}
nav a:hover{text-decoration:underline}
.op,.schema{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:.3em 1.2em 1em;margin:0 0 1.2em}
h2{text-transform:capitalize;border-bottom:2px solid #dfe3ea;padding-bottom:.2em}
h3{font-size:16px}h4{margin:1em 0 .3em;font-size:13px;text-transform:uppercase;color:#5a6477}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eef0f4;vertical-align:top}
th{color:#5a6477;font-weight:600}code{font:12.5px ui-monospace,monospace;background:#f1f3f7;padding:0 .25em;border-radius:3px}
.method{display:inline-block;min-width:4.2em;text-align:center;font:600 11px ui-monospace,monospace;border-radius:3px;padding:.15em .3em;color:#fff}
.get{background:#2f7d4f}.post{background:#2b5fb4}.put{background:#8a5a00}.patch{background:#7b4bb3}.delete{background:#b33a3a}
.opt{color:#8a93a5;font-size:11px}.badge{font-size:11px;border-radius:3px;padding:.1em .4em}.open{background:#e6f4ea;color:#2f7d4f}
.status{font-weight:600}.s2{color:#2f7d4f}.s4{color:#b36b00}.s5{color:#b33a3a}.desc{color:#3e475a}.variant{margin:.4em 0 .2em;color:#5a6477}
table.props table.props{margin:.3em 0 0 .5em;width:auto}
</style></head>
<body><header><h1>${escapeHtml(info.title)} <small>${escapeHtml(info.version)}</small></h1><p>${prose(info.description)}</p>
<p>OpenAPI ${escapeHtml(doc.openapi)} document: <a href="/api/openapi.json">/api/openapi.json</a></p></header>
<main><nav><h3>Endpoints</h3><ul>${toc.join('')}</ul><h3>Schemas</h3><ul>${Object.keys(doc.components.schemas).map((id) => `<li><a href="#schema-${escapeHtml(id)}">${escapeHtml(id)}</a></li>`).join('')}</ul></nav>
<div>${sections}<h2 id="schemas">schemas</h2>${schemas}</div></main></body></html>
`;
}
