/**
 * @module emitter
 * A tiny publish/subscribe helper shared by the socket and the store.
 */

/** Calls the listeners of named topics. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }

  /**
   * Call `listener` whenever `topic` is emitted.
   * @param {string} topic
   * @param {Function} listener called with the emitted arguments
   * @returns {() => void} a function that removes the listener
   */
  on(topic, listener) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(listener);
    return () => this.listeners.get(topic).delete(listener);
  }

  /**
   * Call every listener of `topic` with `args`; a listener that throws does
   * not stop the others (the error is reported on the console).
   * @param {string} topic
   * @param {...*} args
   */
  emit(topic, ...args) {
    for (const listener of this.listeners.get(topic) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`listener of ${topic} failed`, error);
      }
    }
  }
}
