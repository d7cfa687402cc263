// Desktop notifications (the Notification API) for a private message or a
// mention that arrives while the tab is hidden. The browser is asked for
// permission only when the person presses the button for it (a user
// gesture), never at page load; once granted, the button switches them
// off and on again, remembered in localStorage.

const PREF = 'chat.notifications';

export class Notifier {
  /**
   * @param {(key: string) => void} onOpen opens a conversation when its
   *   notification is clicked
   */
  constructor(onOpen, win = globalThis) {
    this.onOpen = onOpen;
    this.win = win;
    this.shown = new Map(); // conversation key -> the Notification on screen
  }

  /** 'unsupported', 'default' (not asked yet), 'denied', 'on' or 'off'. */
  get state() {
    const N = this.win.Notification;
    if (typeof N !== 'function') return 'unsupported';
    if (N.permission === 'granted') return this.pref() === 'off' ? 'off' : 'on';
    return N.permission === 'denied' ? 'denied' : 'default';
  }

  /**
   * What the button does: asks for permission the first time, then turns
   * notifications off and on. Call it from a click (a user gesture).
   * Resolves to the new state.
   */
  async toggle() {
    const state = this.state;
    if (state === 'default') {
      this.setPref('on');
      await this.win.Notification.requestPermission();
    } else if (state === 'on') {
      this.setPref('off');
      this.closeAll();
    } else if (state === 'off') {
      this.setPref('on');
    }
    return this.state;
  }

  /**
   * Shows a notification for a message in conversation key, if the tab is
   * hidden and notifications are on. One per conversation at a time: a
   * newer one replaces it (the same tag).
   */
  message(key, title, body) {
    if (this.state !== 'on' || this.win.document.visibilityState !== 'hidden') return;
    const n = new this.win.Notification(title, { body: clip(body, 180), tag: key });
    this.shown.set(key, n);
    n.onclick = () => {
      this.win.focus();
      this.onOpen(key);
      n.close();
    };
    n.onclose = () => {
      if (this.shown.get(key) === n) this.shown.delete(key);
    };
  }

  /** Closes what is on screen for key (the person opened it here). */
  seen(key) {
    const n = this.shown.get(key);
    if (n) n.close();
  }

  closeAll() {
    for (const n of this.shown.values()) n.close();
    this.shown.clear();
  }

  pref() {
    try {
      return this.win.localStorage.getItem(PREF);
    } catch {
      return null; // storage switched off: notifications stay on once granted
    }
  }

  setPref(v) {
    try {
      this.win.localStorage.setItem(PREF, v);
    } catch {
      // not remembered; fine for this page
    }
  }
}

function clip(s, n) {
  const chars = [...s];
  return chars.length > n ? chars.slice(0, n - 1).join('') + '…' : s;
}
