// Objects shown as YAML, the way `sub get -o yaml` and the manifests read. Enough of YAML for JSON data:
// strings are quoted when they would read as something else.
const PLAIN = /^[A-Za-z0-9_./@:+-][A-Za-z0-9_./@:+ -]*$/;
const SPECIAL = /^(true|false|null|yes|no|on|off|~|-?\d[\d._eE+-]*)$/i;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") {
    return PLAIN.test(value) && !SPECIAL.test(value) && !value.endsWith(" ") && !value.includes(": ") ? value : JSON.stringify(value);
  }
  return String(value);
}

export function toYaml(value, indent = "") {
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return value.map((item) => {
      const body = toYaml(item, `${indent}  `);
      return `${indent}- ${typeof item === "object" && item !== null ? body.trimStart() : body}`;
    }).join("\n");
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return "{}";
    return entries.map(([k, v]) => {
      if (v && typeof v === "object" && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
        return `${indent}${k}:\n${toYaml(v, Array.isArray(v) ? indent : `${indent}  `)}`;
      }
      return `${indent}${k}: ${v && typeof v === "object" ? toYaml(v) : scalar(v)}`;
    }).join("\n");
  }
  return scalar(value);
}
