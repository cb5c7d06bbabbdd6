// A form generated from an endpoint's request schema (JSON Schema, as services
// publish it): one field per property, nested objects as fieldsets, and a JSON
// box for anything a field cannot hold.

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// `schema` with a $ref into the root's $defs followed (once per level).
export function resolve(schema, root) {
  let s = schema || {};
  for (let depth = 0; depth < 8 && typeof s.$ref === "string"; depth++) {
    const name = s.$ref.replace(/^#\/(\$defs|definitions)\//, "");
    const defs = root.$defs || root.definitions || {};
    if (!(name in defs)) break;
    s = defs[name];
  }
  return s;
}

// The schema of an optional value without its null branch (`x: int | None`).
function nonNull(schema, root) {
  const s = resolve(schema, root);
  const options = s.anyOf || s.oneOf;
  if (!Array.isArray(options)) return {schema: s, nullable: false};
  const rest = options.filter((o) => resolve(o, root).type !== "null");
  if (rest.length === 1) return {schema: resolve(rest[0], root), nullable: true};
  return {schema: s, nullable: false};
}

function typeOf(s) {
  if (Array.isArray(s.enum)) return "enum";
  if (Array.isArray(s.type)) return s.type.find((t) => t !== "null") || "json";
  return s.type || (s.properties ? "object" : "json");
}

// A field for one value; returns {element, get(): [present, value], set(value)}.
function field(path, schema, root, required) {
  const {schema: s, nullable} = nonNull(schema, root);
  const type = typeOf(s);
  const id = `field-${path}`;
  if (type === "object" && s.properties) {
    const inner = object(path, s, root);
    const box = el("fieldset", {"data-field": path}, el("legend", {text: path.split(".").pop()}), inner.element);
    return {element: box, get: () => [true, inner.get()], set: (v) => inner.set(v || {})};
  }
  let input;
  if (type === "boolean") {
    input = el("input", {type: "checkbox", id, "data-field": path});
    return {
      element: input,
      get: () => [true, input.checked],
      set: (v) => { input.checked = Boolean(v); },
    };
  }
  if (type === "enum") {
    input = el("select", {id, "data-field": path});
    if (!required || nullable) input.append(el("option", {value: "", text: "—"}));
    s.enum.forEach((v, i) => input.append(el("option", {value: String(i), text: JSON.stringify(v)})));
    return {
      element: input,
      get: () => (input.value === "" ? [false, null] : [true, s.enum[Number(input.value)]]),
      set: (v) => { const i = s.enum.findIndex((e) => JSON.stringify(e) === JSON.stringify(v)); input.value = i < 0 ? "" : String(i); },
    };
  }
  if (type === "integer" || type === "number") {
    input = el("input", {type: "number", id, "data-field": path, step: type === "integer" ? "1" : "any"});
    if (s.minimum !== undefined) input.min = s.minimum;
    if (s.maximum !== undefined) input.max = s.maximum;
    return {
      element: input,
      get: () => (input.value === "" ? [required && !nullable, required && !nullable ? 0 : null] : [true, Number(input.value)]),
      set: (v) => { input.value = v === null || v === undefined ? "" : String(v); },
    };
  }
  if (type === "string") {
    input = el("input", {type: "text", id, "data-field": path});
    if (s.format) input.placeholder = s.format;
    return {
      element: input,
      get: () => (input.value === "" && !required ? [false, null] : [true, input.value]),
      set: (v) => { input.value = v === null || v === undefined ? "" : String(v); },
    };
  }
  // Arrays, maps and anything else: JSON of its own.
  input = el("textarea", {id, "data-field": path, rows: "2", class: "json-field", spellcheck: "false",
                          placeholder: type === "array" ? "[ … ] as JSON" : "JSON"});
  return {
    element: input,
    get: () => {
      if (!input.value.trim()) return [required, type === "array" ? [] : type === "object" ? {} : null];
      try { return [true, JSON.parse(input.value)]; }
      catch (err) { throw new Error(`${path}: ${err.message}`); }
    },
    set: (v) => { input.value = v === undefined ? "" : JSON.stringify(v); },
  };
}

function object(prefix, schema, root) {
  const required = new Set(schema.required || []);
  const fields = {};
  const element = el("div", {class: "fields"});
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    const f = field(path, prop, root, required.has(name));
    fields[name] = f;
    // A field starts at the property's default, when it has one.
    if (prop && "default" in prop) f.set(prop.default);
    const s = resolve(prop, root);
    const label = el("label", {for: `field-${path}`, class: "field-name"}, name);
    if (required.has(name)) label.append(el("span", {class: "required", text: " *"}));
    const help = s.description || s.title || "";
    const type = typeOf(nonNull(prop, root).schema);
    element.append(el("div", {class: "field"}, label, f.element,
                      el("span", {class: "muted field-type", text: help || type})));
  }
  return {
    element,
    get: () => {
      const out = {};
      for (const [name, f] of Object.entries(fields)) {
        const [present, value] = f.get();
        if (present) out[name] = value;
      }
      return out;
    },
    set: (value) => { for (const [name, f] of Object.entries(fields)) f.set(value ? value[name] : undefined); },
  };
}

// The form for `schema`; null when the schema has no properties to make fields of.
export function schemaForm(schema) {
  const root = schema || {};
  const s = resolve(root, root);
  if (typeOf(s) !== "object" || !s.properties || !Object.keys(s.properties).length) return null;
  const form = object("", s, root);
  return {element: form.element, value: form.get, set: form.set};
}
