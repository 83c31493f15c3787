/**
 * @module state/users
 * What this page knows of the other users. Pure: no DOM, no network.
 *
 * The server says who is online (`whoelse`) and which accounts are not
 * (`users` with `onlinetype: false`), and announces logins and logouts.
 * Busy is learnt from auto-replies; hidden from messages of a user who is
 * not listed online (a hidden user is left out of lists and presence).
 */

/**
 * @typedef {object} UserInfo
 * @property {string} name
 * @property {boolean} online
 * @property {boolean} busy learnt from an auto-reply (until the user's next presence or message)
 * @property {string} [autoReply]
 * @property {boolean} hidden online, but left out of the lists
 * @property {boolean} guest
 * @property {boolean} blocked blocked by this user
 * @property {{host: string, p2p_port: (number|null), since: number}|null} details from `active`
 * @property {boolean} detailsLoaded whether `active` was asked for this user
 */

/** The other users, by name. */
export class UserDirectory {
  constructor() {
    /** @type {Map<string, UserInfo>} */
    this.users = new Map();
  }

  /**
   * The entry of `name`, created (offline) if new.
   * @param {string} name
   * @returns {UserInfo}
   */
  get(name) {
    let user = this.users.get(name);
    if (!user) {
      user = {
        name, online: false, busy: false, hidden: false, guest: false, blocked: false,
        details: null, detailsLoaded: false,
      };
      this.users.set(name, user);
    }
    return user;
  }

  /**
   * A `userlist` reply: `onlinetype` true lists every other visible online
   * user (so the others are not online), false the accounts not online.
   * @param {{users: string[], onlinetype: boolean, guests?: string[]}} list
   * @param {string} me this user's own name (left out)
   */
  applyList(list, me) {
    const names = new Set(list.users.filter((name) => name !== me));
    const guests = new Set(list.guests ?? []);
    if (list.onlinetype) {
      for (const user of this.users.values()) {
        if (!names.has(user.name) && user.online && !user.hidden) user.online = false;
      }
    }
    for (const name of names) {
      const user = this.get(name);
      user.online = Boolean(list.onlinetype);
      if (list.onlinetype) user.hidden = false;
      if (guests.has(name)) user.guest = true;
    }
  }

  /**
   * A presence notice: `name` logged in (`online`) or out.
   * @param {string} name
   * @param {boolean} online
   */
  presence(name, online) {
    const user = this.get(name);
    user.online = online;
    user.hidden = false;
    user.busy = false;
    user.details = null;
    user.detailsLoaded = false;
  }

  /**
   * A live message (not one kept while offline) came from `name`: the user
   * is online; hidden if the lists said otherwise.
   * @param {string} name
   */
  sawOnline(name) {
    const user = this.get(name);
    if (!user.online) {
      user.online = true;
      user.hidden = true;
    }
  }

  /**
   * `name` answered with an auto-reply: busy.
   * @param {string} name
   * @param {string} [text]
   */
  markBusy(name, text) {
    const user = this.get(name);
    user.busy = true;
    if (text !== undefined) user.autoReply = text;
  }

  /**
   * An `active` reply: the details of every listed user.
   * @param {Array<{user: string, host: string, p2p_port: (number|null), since: number}>} entries
   */
  applyActive(entries) {
    const byName = new Map(entries.map((entry) => [entry.user, entry]));
    for (const user of this.users.values()) {
      const entry = byName.get(user.name);
      user.detailsLoaded = true;
      user.details = entry ? { host: entry.host, p2p_port: entry.p2p_port, since: entry.since } : null;
      if (entry) user.online = true;
    }
  }

  /**
   * The users to list: online first, then by name.
   * @returns {UserInfo[]}
   */
  sorted() {
    return [...this.users.values()].sort(
      (a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name),
    );
  }

  /** Forget everyone (another user logged in on this page). */
  clear() {
    this.users.clear();
  }
}

/**
 * A user's state in words: `online`, `offline`, `busy`, `hidden`, `guest`, `blocked`.
 * @param {UserInfo} user
 * @returns {string[]}
 */
export function stateWords(user) {
  const words = [user.online ? 'online' : 'offline'];
  if (user.busy) words.push('busy');
  if (user.hidden) words.push('hidden');
  if (user.guest) words.push('guest');
  if (user.blocked) words.push('blocked');
  return words;
}
