/**
 * @module views/dom
 * Building DOM nodes safely: text is only ever inserted as text nodes
 * (`textContent`, `append(string)`), never parsed as HTML, so a message like
 * `<img src=x onerror=alert(1)>` shows as those characters.
 */

/**
 * Create an element.
 *
 * `attributes` maps names to values: `class`; `dataset` (an object);
 * event listeners as functions under `onclick`, `onchange`, ...; anything
 * else with `setAttribute` (`true` as an empty value; `false`, `null` and
 * `undefined` leave it out). Inline `style` and string `on...` attributes
 * are refused: the Content-Security-Policy forbids them anyway.
 * Children are nodes or strings (as text); arrays are flattened and
 * `null`/`false` children skipped.
 * @param {string} tag
 * @param {object} [attributes]
 * @param {...(Node|string|number|null|false|Array)} children
 * @returns {HTMLElement}
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
      node.addEventListener(name.slice(2), value);
    } else if (name === 'style') {
      throw new TypeError('inline styles are not allowed');
    } else if (name === 'class') {
      node.className = value;
    } else if (name === 'dataset') {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * Replace every child of `parent` with `children`.
 * @param {Element} parent
 * @param {...(Node|string|null|false|Array)} children
 */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren(
    ...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false),
  );
}

/**
 * The element with `id` (which must exist: the page's own markup).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no element #${id}`);
  return node;
}
